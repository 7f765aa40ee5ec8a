// SPDX-License-Identifier: GPL-2.0
/*
 * from-overlay: tc INGRESS of pn_vxlan (Cilium's bpf_overlay.c): packets another node sent
 * through the tunnel, already decapsulated by the VXLAN device. The VNI is the sender's
 * identity (tunnel.h): kept in skb->cb[PN_CB_SRC_IDENTITY] for the policy code. A local pod
 * gets the packet by bpf_redirect_peer (service replies translated back first, as from the
 * uplink); the node's own addresses go to the stack, marked PACKET_HOST.
 */
#include "include/common.h"
#include "include/drop_reasons.h"
#include "include/metrics.h"
#include "include/eth.h"
#include "include/local_delivery.h"
#include "include/ipv6.h"
#include "include/tunnel.h"

static __always_inline int handle_from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};

	/* Without metadata the packet did not come through the collect-metadata device. */
	if (bpf_skb_get_tunnel_key(skb, &key, __builtin_offsetof(struct bpf_tunnel_key, local_ipv4), 0) < 0)
		return DROP_INVALID;
	skb->cb[PN_CB_SRC_IDENTITY] = key.tunnel_id;

	int proto = validate_ethertype(skb);
	int ret;

	if (proto == ETH_P_IP)
		ret = ipv4_try_local_delivery(skb, true);
	else if (proto == ETH_P_IPV6)
		ret = ipv6_try_local_delivery(skb, true);
	else
		return proto < 0 ? proto : DROP_UNKNOWN_L3;
	/* For the node itself (a reply to its own traffic through from-host): the inner L2
	 * destination is the sending pod's lxc MAC, not pn_vxlan's, so the stack would take the
	 * frame for PACKET_OTHERHOST and drop it. Mark it as ours, as Cilium's bpf_overlay does. */
	if (ret == TRACE_TO_STACK && bpf_skb_change_type(skb, 0 /* PACKET_HOST */) < 0)
		return DROP_WRITE_ERROR;
	return ret;
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	return pn_verdict(skb, handle_from_overlay(skb), METRIC_INGRESS, POINT_FROM_OVERLAY);
}
