/* SPDX-License-Identifier: GPL-2.0 */
/*
 * NodePort and external IPs (IPv4, TCP and UDP), in from-netdev as Cilium's nodeport_lb4 in
 * bpf_host.c. The frontends are ordinary pn_lb4_services entries (`pn service` writes
 * nodeIP:nodePort and every externalIP:port beside the ClusterIP, with only the node's own
 * backends when externalTrafficPolicy is Local), so the request takes lb4_xlate like a pod's:
 * a backend is chosen, conntrack entries are written, the destination is rewritten.
 *
 *   backend on this node   local delivery as any packet for a pod; the client's address is kept,
 *                          and the backend's reply is translated back in its from-container
 *   backend on another node   (Cluster only) the source becomes the node IP and a NAT port
 *                          (nat.h), and BPF host routing sends it out of the uplink again (in
 *                          tunnel mode, into pn_vxlan towards the backend's node); the
 *                          reply comes back to that port, nat4_rev_snat restores the client,
 *                          lb4_rev_xlate the frontend, and it is routed out to the client
 *   no backend (Local on a node without one)   DROP_NO_SERVICE, counted
 *
 * Not done: DSR, and telling ClusterIPs from external frontends (a ClusterIP reached from outside
 * is served; Cilium drops it as DROP_IS_CLUSTER_IP).
 */
#ifndef PN_NODEPORT_H
#define PN_NODEPORT_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "fib.h"
#include "lb.h"
#include "nat.h"
#include "tunnel.h"

/* After lb4_xlate (np = 1) or nat4_rev_snat (rev = 1) sent a packet somewhere that is not a
 * local pod: a new request to a remote backend is SNATed to the node, and either way the packet
 * is routed out by BPF (the stack would see the node's own address arrive from outside: a martian). */
static __always_inline int nodeport_fwd(struct __sk_buff *skb, int np)
{
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4)
		return DROP_INVALID;
	if (np == 1) {
		const struct node_config *cfg = nat_config_for(false);

		if (!cfg)
			return TRACE_TO_STACK; /* no SNAT address: the stack routes it, the reply may not come back */
		int ret = nat4_snat_flow(skb, ip4, cfg);

		if (ret < 0)
			return ret;
		ip4 = ipv4_hdr(skb);
		if (!ip4)
			return DROP_INVALID;
	}
	/* Tunnel mode: a backend on another node is reached through pn_vxlan, as a pod's packet is
	 * (the underlay knows no pod CIDR). */
	int encap = ipv4_encap_remote(skb, ip4, false);

	if (encap != TRACE_TO_STACK)
		return encap;
	return pn_fib_redirect_v4(skb, ip4);
}

#endif
