// SPDX-License-Identifier: GPL-2.0
/*
 * to-netdev: tc EGRESS of the node's uplink: packets leaving the node, whether the stack routed
 * them or BPF host routing redirected them here. With BPF masquerade on (pn_node_config flag
 * NODE_CFG_MASQ), a local pod's packet to a destination outside pn_nonmasq leaves with the
 * node's IP as its source (nat.h, and nat6.h for IPv6 on a dual-stack node; Cilium:
 * handle_nat_fwd in bpf_host.c's to-netdev).
 * Everything else passes, counted.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/eth.h"
#include "include/nat.h"
#include "include/nat6.h"

static __always_inline int handle_to_netdev(struct __sk_buff *skb)
{
	skb->cb[PN_CB_SVC_PORT] = 0; /* no translation yet (see common.h) */
	int proto = validate_ethertype(skb);
	int ret = 0;

	if (proto == ETH_P_IP)
		ret = nat4_snat(skb);
	else if (proto == ETH_P_IPV6)
		ret = nat6_snat(skb); /* dual-stack node: nat6.h */
	return ret < 0 ? ret : TRACE_TO_STACK;
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_to_netdev(skb), METRIC_EGRESS, POINT_TO_NETDEV);
}
