// SPDX-License-Identifier: GPL-2.0
/*
 * from-netdev: tc INGRESS of the node's uplink: packets arriving from the network. Traffic for
 * a local pod is delivered by bpf_redirect_peer straight into the pod (no routing table, no
 * netfilter), IPv4 and IPv6 alike; everything else — the node's own traffic, ARP, NDP — goes to
 * the stack untouched.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/endpoints.h"
#include "include/eth.h"
#include "include/local_delivery.h"
#include "include/ipv6.h"

static __always_inline int handle_from_netdev(struct __sk_buff *skb)
{
	int proto = validate_ethertype(skb);

	/* Never drop on the uplink for L2 we don't understand: the node must stay reachable. */
	if (proto == ETH_P_IPV6)
		return ipv6_try_local_delivery(skb, true);
	if (proto < 0 || proto != ETH_P_IP)
		return TRACE_TO_STACK;
	return ipv4_try_local_delivery(skb, true);
}

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_from_netdev(skb), METRIC_INGRESS, POINT_FROM_NETDEV);
}
