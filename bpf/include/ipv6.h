/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv6: header parsing, the hop-limit decrement of a BPF routing hop, pn_endpoints lookups by an
 * IPv6 address, local delivery, the IPv6 entry of BPF host routing (fib.h) and from-container's
 * IPv6 path. The counterpart of l3.h, local_delivery.h, pn_fib_redirect_v4 and from-container's
 * IPv4 handler; programs call these from one hook each.
 * IPv6 has no header checksum, so a hop is one byte store. Services (lb4) are IPv4 only: IPv6
 * packets are never translated.
 */
#ifndef PN_IPV6_H
#define PN_IPV6_H

#include <linux/ipv6.h>
#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "eth.h"
#include "lxc.h"
#include "fib.h"
#include "trace.h"

#ifndef ETH_P_IPV6
#define ETH_P_IPV6 0x86DD
#endif

#define IPV6_HOPLIMIT_OFF (ETH_HLEN + __builtin_offsetof(struct ipv6hdr, hop_limit))

/* The IPv6 header after a bounds check, or NULL. Re-fetch after any helper that may change the packet. */
static __always_inline struct ipv6hdr *ipv6_hdr(struct __sk_buff *skb)
{
	if (pn_ensure_linear(skb, ETH_HLEN + sizeof(struct ipv6hdr)) < 0)
		return NULL;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > data_end)
		return NULL;
	if (ip6->version != 6)
		return NULL;
	return ip6;
}

static __always_inline bool ipv6_equal(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline bool ipv6_is_zero(const void *a)
{
	const __u32 *x = a;

	return (x[0] | x[1] | x[2] | x[3]) == 0;
}

/* fe80::/10: never routed, so a pod may use its own link-local address freely (NDP, MLD). */
static __always_inline bool ipv6_is_link_local(const void *a)
{
	const __u8 *b = a;

	return b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
}

static __always_inline bool ipv6_is_multicast(const void *a)
{
	return ((const __u8 *)a)[0] == 0xff;
}

static __always_inline struct endpoint_info *lookup_ip6_endpoint(const void *addr)
{
	struct endpoint_key key = {.family = ENDPOINT_KEY_IPV6};

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&pn_endpoints, &key);
}

/* A routing hop: hop limit down by one (the kernel's ip6_forward would do the same). */
static __always_inline int ipv6_dec_hoplimit(struct __sk_buff *skb, struct ipv6hdr *ip6)
{
	__u8 hl = ip6->hop_limit;

	if (hl <= 1)
		return DROP_TTL_EXCEEDED;
	hl--;
	if (bpf_skb_store_bytes(skb, IPV6_HOPLIMIT_OFF, &hl, 1, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* As ipv4_local_delivery: redirect_peer from ingress hooks, plain redirect from egress ones. */
static __always_inline int ipv6_local_delivery(struct __sk_buff *skb, struct ipv6hdr *ip6,
					       const struct endpoint_info *ep, bool peer)
{
	int ret = ipv6_dec_hoplimit(skb, ip6);

	if (ret < 0)
		return ret;
	ret = eth_store_macs(skb, ep->node_mac, ep->mac);
	if (ret < 0)
		return ret;
	if (peer) {
		if (bpf_redirect_peer(ep->ifindex, 0) != TC_ACT_REDIRECT)
			return DROP_REDIRECT_FAILED;
		return TRACE_REDIRECT_PEER;
	}
	if (bpf_redirect(ep->ifindex, 0) != TC_ACT_REDIRECT)
		return DROP_REDIRECT_FAILED;
	return TRACE_REDIRECT;
}

/* BPF host routing for IPv6 (fib.h's shared parts; see pn_fib_redirect_v4 for the rules): the
 * FIB lookup names the next hop, the hop limit goes down by one, and the packet leaves by the
 * uplink with bpf_redirect (neighbour known) or bpf_redirect_neigh; anything else returns a
 * TRACE_FIB_* fallback and the caller hands the packet to the stack. */
static __always_inline int pn_fib_redirect_v6(struct __sk_buff *skb, struct ipv6hdr *ip6)
{
	const struct node_config *cfg = node_config();

	if (!cfg || !cfg->uplink_ifindex)
		return TRACE_FIB_NOT_UPLINK;
	/* The stack sends ICMPv6 time exceeded; BPF does not. */
	if (ip6->hop_limit <= 1)
		return TRACE_FIB_TTL;

	struct bpf_fib_lookup p = {
		.family = AF_INET6,
		.l4_protocol = ip6->nexthdr,
		.ifindex = skb->ingress_ifindex,
	};

	/* Traffic class and flow label: the first word minus the version nibble. */
	p.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0FFFFFFF);
	__builtin_memcpy(p.ipv6_src, &ip6->saddr, 16);
	__builtin_memcpy(p.ipv6_dst, &ip6->daddr, 16);
	long ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);

	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_fallback_reason(ret);
	int verdict = fib_check_egress(skb, &p, ret, cfg);

	if (verdict)
		return verdict;
	verdict = ipv6_dec_hoplimit(skb, ip6);
	if (verdict < 0)
		return verdict;
	return fib_redirect(skb, &p, ret);
}

/* Deliver to a local pod if the IPv6 destination is one; TRACE_TO_STACK otherwise (the node's
 * own addresses, link-local and multicast destinations, anything not a local pod). */
static __always_inline int ipv6_try_local_delivery(struct __sk_buff *skb, bool peer)
{
	struct ipv6hdr *ip6 = ipv6_hdr(skb);

	if (!ip6)
		return DROP_INVALID;
	if (ipv6_is_multicast(&ip6->daddr) || ipv6_is_link_local(&ip6->daddr))
		return TRACE_TO_STACK;
	struct endpoint_info *ep = lookup_ip6_endpoint(&ip6->daddr);

	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return TRACE_TO_STACK;
	return ipv6_local_delivery(skb, ip6, ep, peer);
}

/*
 * from-container, IPv6 not answered by the NDP responder. Anti-spoofing: the source must be the
 * pod's address; a link-local or unspecified source (neighbour discovery, MLD, DAD) may only go
 * to a link-local or multicast destination, and goes to the stack (it is never routed).
 */
static __always_inline int ipv6_from_lxc(struct __sk_buff *skb, const struct lxc_info *lxc)
{
	struct ipv6hdr *ip6 = ipv6_hdr(skb);

	if (!ip6)
		return DROP_INVALID;
	if (!ipv6_equal(&ip6->saddr, lxc->ip6) || ipv6_is_zero(lxc->ip6)) {
		if ((ipv6_is_link_local(&ip6->saddr) || ipv6_is_zero(&ip6->saddr)) &&
		    (ipv6_is_link_local(&ip6->daddr) || ipv6_is_multicast(&ip6->daddr)))
			return TRACE_TO_STACK;
		return DROP_INVALID_SOURCE6;
	}
	if (ipv6_is_multicast(&ip6->daddr) || ipv6_is_link_local(&ip6->daddr))
		return TRACE_TO_STACK;

	struct endpoint_info *ep = lookup_ip6_endpoint(&ip6->daddr);

	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return ipv6_local_delivery(skb, ip6, ep, true);

	/* Not for this node: BPF host routing; what it cannot route goes to the stack below with
	 * the counted reason. The node's own addresses go to the stack uncounted. */
	int ret = TRACE_TO_STACK;

	if (!ep) {
		ret = pn_fib_redirect_v6(skb, ip6);
		if (!trace_to_stack(ret))
			return ret;
	}

	/* To the stack as routed traffic, L2 destination = the lxc MAC (see the IPv4 path). */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return DROP_INVALID;
	if (!mac_equal(eth->h_dest, lxc->mac)) {
		int err = eth_store_daddr(skb, lxc->mac);

		if (err < 0)
			return err;
	}
	return ret;
}

#endif
