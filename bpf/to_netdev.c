// SPDX-License-Identifier: GPL-2.0
/*
 * to-netdev: tc EGRESS of the node's uplink: packets leaving the node. A counted pass-through
 * for now; BPF masquerading / NodePort reverse translation would live here (later issues).
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	return pn_verdict(skb, TRACE_TO_STACK, METRIC_EGRESS, POINT_TO_NETDEV);
}
