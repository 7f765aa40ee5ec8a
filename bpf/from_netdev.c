// SPDX-License-Identifier: GPL-2.0
/*
 * from-netdev: tc INGRESS of the node's uplink: packets arriving from the network. Traffic for
 * a local pod is delivered by bpf_redirect_peer straight into the pod (no routing table, no
 * netfilter), IPv4 and IPv6 alike; everything else — the node's own traffic, ARP, NDP — goes to
 * the stack untouched. A reply to a masqueraded pod flow (nat.h; nat6.h for IPv6) gets the
 * pod's address and port back first, then takes the same local delivery; a request to a
 * NodePort or external IP is load-balanced (nodeport.h), to a local backend or SNATed out again
 * to a remote one. In tunnel mode a VXLAN packet for a local pod is decapsulated here and
 * delivered the same way (tunnel.h); the rest of the tunnel traffic takes the pn_vxlan device
 * and from-overlay.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/endpoints.h"
#include "include/eth.h"
#include "include/local_delivery.h"
#include "include/ipv6.h"
#include "include/nat.h"
#include "include/nat6.h"
#include "include/nodeport.h"
#include "include/tunnel.h"

static __always_inline int handle_from_netdev(struct __sk_buff *skb)
{
	skb->cb[PN_CB_SVC_PORT] = 0; /* no translation yet (see common.h) */
	int proto = validate_ethertype(skb);

	/* Never drop on the uplink for L2 we don't understand: the node must stay reachable. */
	if (proto == ETH_P_IPV6) {
		int rev6 = nat6_rev_snat(skb); /* a reply to a masqueraded IPv6 flow (nat6.h) */

		return rev6 < 0 ? rev6 : ipv6_try_local_delivery(skb, true);
	}
	if (proto < 0 || proto != ETH_P_IP)
		return TRACE_TO_STACK;
	/* Tunnel mode: another node's VXLAN packet for a local pod, decapsulated here (tunnel.h). */
	if (tunnel_decap4(skb))
		return ipv4_try_local_delivery(skb, true);
	int rev = nat4_rev_snat(skb);
	int np = 0;

	if (rev < 0)
		return rev;
	if (rev == 0) {
		np = lb4_xlate(skb); /* NodePort / external IP (nodeport.h) */
		if (np < 0)
			return np;
	}
	int ret = ipv4_try_local_delivery(skb, true);

	if (ret != TRACE_TO_STACK || (rev == 0 && np == 0))
		return ret;
	return nodeport_fwd(skb, np);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_from_netdev(skb), METRIC_INGRESS, POINT_FROM_NETDEV);
}
