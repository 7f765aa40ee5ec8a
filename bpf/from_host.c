// SPDX-License-Identifier: GPL-2.0
/*
 * from-host: tc EGRESS of pn_host: what the node's stack routes towards the pod CIDR (the
 * node itself talking to a pod, or anything the stack forwarded). A local pod destination is
 * redirected to its lxc; bpf_redirect_peer is not allowed on egress, so this is a plain
 * bpf_redirect to the lxc's egress, which the veth hands to the pod.
 *
 * ARP: the pod-CIDR route points at pn_host with the router IP (a local address) as gateway,
 * so the kernel ARPs on pn_host for the pod IP itself and nothing on pn_net would answer.
 * We answer for local endpoints with pn_host's own MAC and reflect the reply into pn_host's
 * ingress; every later frame to that pod leaves through this hook and gets redirected anyway.
 * IPv6 the same way with NDP (ndp.h): the IPv6 pod-CIDR route is on-link on pn_host.
 * Tunnel mode: other nodes' pod CIDRs are routed into pn_host too; their pods are answered
 * for in ARP the same way, and their packets encapsulated into pn_vxlan (tunnel.h).
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/endpoints.h"
#include "include/eth.h"
#include "include/lxc.h"
#include "include/arp.h"
#include "include/local_delivery.h"
#include "include/ndp.h"
#include "include/tunnel.h"

static __always_inline int arp_for_local_endpoint(struct __sk_buff *skb)
{
	struct arp_frame *f = arp_frame(skb);

	if (!f || f->arp.op != bpf_htons(1))
		return TRACE_TO_STACK;
	struct endpoint_info *ep = lookup_ip4_endpoint(f->arp.tpa);

	if ((!ep || (ep->flags & ENDPOINT_F_HOST)) && !tunnel_arp_target4(f->arp.tpa))
		return TRACE_TO_STACK;
	__u8 mac[6];

	__builtin_memcpy(mac, f->eth.h_source, 6);
	return arp_reply(skb, f, mac, skb->ifindex, BPF_F_INGRESS);
}

SEC("tc")
int from_host(struct __sk_buff *skb)
{
	int proto = validate_ethertype(skb);
	int ret = TRACE_TO_STACK;

	if (proto == ETH_P_IP) {
		ret = ipv4_try_local_delivery(skb, false);
		/* Tunnel mode: a remote pod goes into pn_vxlan (tunnel.h). */
		struct iphdr *ip4 = ret == TRACE_TO_STACK ? ipv4_hdr(skb) : NULL;

		if (ip4)
			ret = ipv4_encap_remote(skb, ip4, false);
	} else if (proto == ETH_P_ARP)
		ret = arp_for_local_endpoint(skb);
	else if (proto == ETH_P_IPV6)
		ret = ipv6_from_host(skb);
	return pn_verdict(skb, ret, METRIC_EGRESS, POINT_FROM_HOST);
}
