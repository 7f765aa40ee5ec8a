/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Local delivery: the packet's destination is a pod on this node, so BPF does the routing hop
 * itself (TTL-1, MACs as if routed by the lxc) and hands the packet straight to the pod's
 * veth, skipping the node's routing table, netfilter and neighbour subsystem.
 */
#ifndef PN_LOCAL_DELIVERY_H
#define PN_LOCAL_DELIVERY_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "eth.h"
#include "l3.h"
#include "lb.h"
#include "policy.h"

/* Ingress policy (policy.h) runs first: every path into a local pod comes through here, from
 * the same node (from-container, from-host, to-host) or from another one (from-netdev).
 *
 * `peer`: bpf_redirect_peer (kernel ≥ 5.10) moves the skb to the ingress of the lxc's peer,
 * i.e. eth0 inside the pod, without a second pass through the veth xmit/backlog queue. It is
 * only valid from tc *ingress* and only when the peer lives in another netns; from an egress
 * hook (from-host) we use plain bpf_redirect to the lxc egress, which the veth then delivers. */
static __always_inline int ipv4_local_delivery(struct __sk_buff *skb, struct iphdr *ip4,
					       const struct endpoint_info *ep, bool peer)
{
	int ret = policy_ingress4(skb, ep->endpoint_id, ip4);

	if (ret < 0)
		return ret;
	ret = ipv4_dec_ttl(skb, ip4);
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

/* Deliver to a local pod if the IPv4 destination is one; TRACE_TO_STACK otherwise (including
 * the node's own addresses, flagged ENDPOINT_F_HOST). A service reply from a backend on another
 * node arrives here (from-netdev) and is translated back to the VIP first. */
static __always_inline int ipv4_try_local_delivery(struct __sk_buff *skb, bool peer)
{
	pn_cb_clear_ids(skb);
	int ret = lb4_rev_xlate(skb);

	if (ret < 0)
		return ret;
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4)
		return DROP_INVALID;
	struct endpoint_info *ep = lookup_ip4_endpoint(ip4->daddr);

	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return TRACE_TO_STACK;
	return ipv4_local_delivery(skb, ip4, ep, peer);
}

#endif
