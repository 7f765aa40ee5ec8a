/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF host routing (Cilium's name; kernel >= 5.10): a packet a pod sends to a non-local
 * destination is routed here instead of by the node's stack. bpf_fib_lookup asks the node's
 * routing table (and neighbour table) for the next hop, and the packet goes straight to the
 * uplink's egress — by bpf_redirect with the MACs the lookup found, or by bpf_redirect_neigh
 * when the neighbour is not resolved yet (the kernel resolves it, queueing the packet). The
 * host stack's forwarding path (netfilter FORWARD/POSTROUTING, the second routing decision)
 * is skipped.
 *
 * Whenever this path cannot answer, the packet is handed to the stack with a counted
 * TRACE_FIB_* reason (trace_to_stack() in trace.h), never dropped: the stack then routes it, fragments
 * it or sends the ICMP error, as it did before host routing existed.
 *
 * Entry points return a TRACE_FIB_REDIRECT* outcome (the redirect has been requested), a
 * TRACE_FIB_* fallback (the caller returns it as is; pn_verdict turns it into TC_ACT_OK), or a
 * negative DROP_* when rewriting the packet failed. The family-independent parts
 * (fib_fallback_reason, fib_check_egress, fib_redirect) are shared by the IPv4 entry and an
 * IPv6 one: an IPv6 entry fills struct bpf_fib_lookup with AF_INET6, decrements the hop limit
 * and calls the same three.
 */
#ifndef PN_FIB_H
#define PN_FIB_H

#include "common.h"
#include "drop_reasons.h"
#include "eth.h"
#include "l3.h"
#include "node_config.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* A bpf_fib_lookup result other than SUCCESS / NO_NEIGH → why the stack gets the packet. */
static __always_inline int fib_fallback_reason(long ret)
{
	switch (ret) {
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return TRACE_FIB_NO_ROUTE;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return TRACE_FIB_NOT_FWDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return TRACE_FIB_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return TRACE_FIB_FRAG_NEEDED;
	default: /* UNSUPP_LWT, NO_SRC_ADDR, a negative helper error */
		return TRACE_FIB_UNSUPPORTED;
	}
}

/* After a SUCCESS or NO_NEIGH lookup: 0 when the packet may be redirected, a fallback otherwise.
 * Only the uplink is a target: a route through pn_host or a pod's lxc is the stack's business.
 * A NO_NEIGH lookup does not check the MTU (the kernel does that on SUCCESS only), so it is
 * checked here against the uplink's; GSO packets are segmented to fit later. */
static __always_inline int fib_check_egress(struct __sk_buff *skb, const struct bpf_fib_lookup *p, long ret,
					    const struct node_config *cfg)
{
	if (!cfg || !cfg->uplink_ifindex || p->ifindex != cfg->uplink_ifindex)
		return TRACE_FIB_NOT_UPLINK;
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH) {
		if (p->family != AF_INET && p->family != AF_INET6)
			return TRACE_FIB_NO_NEIGH;
		if (!skb->gso_size && cfg->uplink_mtu && skb->len > cfg->uplink_mtu + ETH_HLEN)
			return TRACE_FIB_FRAG_NEEDED;
	}
	return 0;
}

/* Send the (already TTL/hop-limit decremented) packet to the uplink. */
static __always_inline int fib_redirect(struct __sk_buff *skb, const struct bpf_fib_lookup *p, long ret)
{
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		int err = eth_store_macs(skb, p->smac, p->dmac);

		if (err < 0)
			return err;
		if (bpf_redirect(p->ifindex, 0) != TC_ACT_REDIRECT)
			return DROP_REDIRECT_FAILED;
		return TRACE_FIB_REDIRECT;
	}
	/* NO_NEIGH: the lookup still returned the next hop (family and address; an IPv4 route may
	 * have an IPv6 gateway), which bpf_redirect_neigh resolves and fills in the MACs for. */
	struct bpf_redir_neigh nh = {.nh_family = p->family};

	if (p->family == AF_INET)
		nh.ipv4_nh = p->ipv4_dst;
	else
		__builtin_memcpy(nh.ipv6_nh, p->ipv6_dst, sizeof(nh.ipv6_nh));
	if (bpf_redirect_neigh(p->ifindex, &nh, sizeof(nh), 0) != TC_ACT_REDIRECT)
		return DROP_REDIRECT_FAILED;
	return TRACE_FIB_REDIRECT_NEIGH;
}

/* IPv4 entry, from a tc ingress hook (skb->ingress_ifindex is the device the packet came in
 * on, as the stack's forwarding lookup would see it). `ip4` is a checked header of skb. */
static __always_inline int pn_fib_redirect_v4(struct __sk_buff *skb, struct iphdr *ip4)
{
	const struct node_config *cfg = node_config();

	if (!cfg || !cfg->uplink_ifindex)
		return TRACE_FIB_NOT_UPLINK;
	/* The stack sends ICMP time exceeded; BPF does not, so leave expiring packets to it. */
	if (ip4->ttl <= 1)
		return TRACE_FIB_TTL;

	/* tot_len stays 0: the kernel then checks the skb itself against the egress MTU, which is
	 * right for GSO packets (their tot_len is the whole super-packet). */
	struct bpf_fib_lookup p = {
		.family = AF_INET,
		.tos = ip4->tos,
		.l4_protocol = ip4->protocol,
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = ip4->saddr,
		.ipv4_dst = ip4->daddr,
	};
	long ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);

	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return fib_fallback_reason(ret);
	int verdict = fib_check_egress(skb, &p, ret, cfg);

	if (verdict)
		return verdict;
	verdict = ipv4_dec_ttl(skb, ip4);
	if (verdict < 0)
		return verdict;
	return fib_redirect(skb, &p, ret);
}

#endif
