// SPDX-License-Identifier: GPL-2.0
/*
 * to-host: tc INGRESS of pn_host (packets entering the node through the pn_host/pn_net pair).
 * Local pod traffic is delivered in BPF (ingress hook, so bpf_redirect_peer applies); the
 * rest goes to the stack.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/endpoints.h"
#include "include/eth.h"
#include "include/local_delivery.h"
#include "include/ipv6.h"

SEC("tc")
int to_host(struct __sk_buff *skb)
{
	int proto = validate_ethertype(skb);
	int ret = TRACE_TO_STACK;

	if (proto == ETH_P_IP)
		ret = ipv4_try_local_delivery(skb, true);
	else if (proto == ETH_P_IPV6)
		ret = ipv6_try_local_delivery(skb, true);
	return pn_verdict(skb, ret, METRIC_INGRESS, POINT_TO_HOST);
}
