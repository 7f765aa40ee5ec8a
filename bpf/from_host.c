// SPDX-License-Identifier: GPL-2.0
/*
 * from-host: tc EGRESS of pn_host: what the node's stack routes towards the pod CIDR (the
 * node itself talking to a pod, or anything the stack forwarded). A local pod destination is
 * redirected to its lxc; bpf_redirect_peer is not allowed on egress, so this is a plain
 * bpf_redirect to the lxc's egress, which the veth hands to the pod.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/endpoints.h"
#include "include/eth.h"
#include "include/local_delivery.h"

SEC("tc")
int from_host(struct __sk_buff *skb)
{
	int proto = validate_ethertype(skb);
	int ret = TRACE_TO_STACK;

	if (proto == ETH_P_IP)
		ret = ipv4_try_local_delivery(skb, false);
	return pn_verdict(skb, ret, METRIC_EGRESS, POINT_FROM_HOST);
}
