// SPDX-License-Identifier: GPL-2.0
/*
 * to-netdev: tc EGRESS of the node's uplink: packets leaving the node, whether the stack routed
 * them or BPF host routing redirected them here. With BPF masquerade on (pn_node_config flag
 * NODE_CFG_MASQ), a local pod's packet to a destination outside pn_nonmasq leaves with the
 * node's IP as its source (nat.h; Cilium: handle_nat_fwd in bpf_host.c's to-netdev).
 * Everything else passes, counted.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/eth.h"
#include "include/nat.h"

static __always_inline int handle_to_netdev(struct __sk_buff *skb)
{
	skb->cb[PN_CB_SVC_PORT] = 0; /* no translation yet (see common.h) */
	if (validate_ethertype(skb) != ETH_P_IP)
		return TRACE_TO_STACK;
	int ret = nat4_snat(skb);

	return ret < 0 ? ret : TRACE_TO_STACK;
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_to_netdev(skb), METRIC_EGRESS, POINT_TO_NETDEV);
}
