/* SPDX-License-Identifier: GPL-2.0 */
/* IPv4 header parsing and the TTL decrement of a BPF "routing" hop. */
#ifndef PN_L3_H
#define PN_L3_H

#include "common.h"
#include "drop_reasons.h"

#define IPV4_TTL_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, ttl))
#define IPV4_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))

/* The IPv4 header after a bounds check, or NULL. Callers re-fetch it after any helper that may
 * change the packet (store_bytes, csum_replace): the verifier invalidates packet pointers then. */
static __always_inline struct iphdr *ipv4_hdr(struct __sk_buff *skb)
{
	if (pn_ensure_linear(skb, ETH_HLEN + sizeof(struct iphdr)) < 0)
		return NULL;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip4 = data + ETH_HLEN;

	if ((void *)(ip4 + 1) > data_end)
		return NULL;
	if (ip4->version != 4 || ip4->ihl < 5)
		return NULL;
	return ip4;
}

/* Forwarding is a routing hop, so TTL goes down by one like the kernel's ip_forward would;
 * the header checksum is patched incrementally over the 16-bit (ttl, protocol) word. */
static __always_inline int ipv4_dec_ttl(struct __sk_buff *skb, struct iphdr *ip4)
{
	__u8 ttl = ip4->ttl;
	__u16 old_word = *(__u16 *)&ip4->ttl;

	if (ttl <= 1)
		return DROP_TTL_EXCEEDED;
	ttl--;
	__u16 new_word = old_word;
	*(__u8 *)&new_word = ttl; /* ttl is the first byte of the word in memory order */
	if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_word, new_word, 2) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, IPV4_TTL_OFF, &ttl, 1, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

#endif
