/* SPDX-License-Identifier: GPL-2.0 */
/* Ethernet: ethertype validation and MAC rewrites. */
#ifndef PN_ETH_H
#define PN_ETH_H

#include "common.h"
#include "drop_reasons.h"

/* The ethertype in host order, or a negative DROP_*: a frame too short for an Ethernet header
 * is invalid; a length field (< 0x0600, 802.3 without Ethernet II type) is an L2 we don't speak. */
static __always_inline int validate_ethertype(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return DROP_INVALID;
	__u16 proto = bpf_ntohs(eth->h_proto);
	if (proto < ETH_P_802_3_MIN_PN)
		return DROP_UNSUPPORTED_L2;
	return proto;
}

/* clang 14 turns __builtin_memcmp into a libc call BPF cannot link; compare by hand. */
static __always_inline bool mac_equal(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline int eth_store_daddr(struct __sk_buff *skb, const __u8 *mac)
{
	if (bpf_skb_store_bytes(skb, 0, mac, ETH_ALEN_PN, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

static __always_inline int eth_store_macs(struct __sk_buff *skb, const __u8 *smac, const __u8 *dmac)
{
	__u8 macs[12];

	__builtin_memcpy(macs, dmac, 6);
	__builtin_memcpy(macs + 6, smac, 6);
	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

#endif
