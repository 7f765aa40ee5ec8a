// SPDX-License-Identifier: GPL-2.0
/*
 * from-container: tc INGRESS of the pod's host-side veth (lxc…), i.e. packets LEAVING the pod.
 * Attached per pod from the one pinned program; which pod it serves is found at run time from
 * skb->ifindex in pn_lxc.
 *
 *   ARP   → answered here (ARP responder), never reaches the node
 *   IPv4  → anti-spoofing → service reply? source back to VIP:port (lb4_rev_xlate)
 *                         : to a service? DNAT to a backend (lb4_xlate)
 *         → egress policy (policy.h): the destination's identity from pn_ipcache
 *         → local pod? redirect_peer into it
 *         : the node itself? to the stack, L2 dst = lxc MAC
 *         : another node's pod in tunnel mode? encapsulate into pn_vxlan (tunnel.h)
 *         : elsewhere: BPF host routing (fib.h) — bpf_fib_lookup, then bpf_redirect(_neigh)
 *           to the uplink; what it cannot route goes to the stack with a counted reason
 *   IPv6  → NDP for the router answered here (ndp.h); anti-spoofing → local pod? redirect_peer
 *           : elsewhere: BPF host routing (fib.h, ipv6.h), else to the stack (L2 dst = lxc MAC)
 *   other → dropped with a reason
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/lxc.h"
#include "include/endpoints.h"
#include "include/ipcache.h"
#include "include/eth.h"
#include "include/l3.h"
#include "include/arp.h"
#include "include/lb.h"
#include "include/local_delivery.h"
#include "include/ndp.h"
#include "include/fib.h"
#include "include/policy.h"
#include "include/tunnel.h"

static __always_inline int handle_ipv4_from_lxc(struct __sk_buff *skb, const struct lxc_info *lxc)
{
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4)
		return DROP_INVALID;
	if (ip4->saddr != lxc->ip4)
		return DROP_INVALID_SOURCE;
	struct pol_egress pol; /* the policy state, and the flow as the pod sent it */

	policy_egress_begin(skb, lxc->endpoint_id, ip4, &pol);

	/* A backend on this node answering a service client: its reply leaves through its own lxc
	 * and is delivered locally below, so the reverse translation happens here. A packet is a
	 * reply or a request, never both: skip the service lookup after a translated reply. */
	int ret = lb4_rev_xlate(skb);

	if (ret == 0)
		ret = lb4_xlate(skb);
	if (ret < 0)
		return ret;
	/* Either may rewrite the packet: fetch the header again. */
	ip4 = ipv4_hdr(skb);
	if (!ip4)
		return DROP_INVALID;
	ret = policy_egress4(skb, lxc->endpoint_id, &pol, ip4);
	if (ret < 0)
		return ret;

	struct endpoint_info *ep = lookup_ip4_endpoint(ip4->daddr);

	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return ipv4_local_delivery(skb, ip4, ep, true);

	/* Not for this node: BPF host routing sends it to the uplink (fib.h); when it cannot, the
	 * packet goes to the stack below, counted with the reason. The node's own addresses
	 * (ENDPOINT_F_HOST) go to the stack uncounted, as before. */
	/* Tunnel mode: a pod on another node goes into pn_vxlan (tunnel.h). */
	if (!ep && (ret = ipv4_encap_remote(skb, ip4, true)) != TRACE_TO_STACK)
		return ret;
	ret = TRACE_TO_STACK;
	if (!ep) {
		ret = pn_fib_redirect_v4(skb, ip4);
		if (!trace_to_stack(ret))
			return ret;
	}

	/* To the stack as routed traffic: the L2 destination must be a MAC of this device or the
	 * stack would treat it as PACKET_OTHERHOST and drop it. The ARP responder makes pods use
	 * the lxc MAC already; rewrite only when a stale neighbour entry says otherwise. */
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

static __always_inline int handle_from_container(struct __sk_buff *skb)
{
	skb->cb[PN_CB_SVC_PORT] = 0; /* no service translation yet (see common.h) */
	pn_cb_clear_ids(skb);
	int proto = validate_ethertype(skb);

	if (proto < 0)
		return proto;

	const struct lxc_info *lxc = lookup_lxc(skb->ifindex);

	if (!lxc)
		return DROP_NO_LXC_INFO;

	switch (proto) {
	case ETH_P_IP:
		return handle_ipv4_from_lxc(skb, lxc);
	case ETH_P_ARP:
		return arp_respond(skb, lxc);
	case ETH_P_IPV6:
		return ipv6_from_container(skb, lxc);
	default:
		return DROP_UNKNOWN_L3;
	}
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_from_container(skb), METRIC_EGRESS, POINT_FROM_CONTAINER);
}

char LICENSE[] SEC("license") = "GPL";
