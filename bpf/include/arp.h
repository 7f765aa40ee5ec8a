/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ARP responder for pods. A pod's only neighbour is its router IP (default route via it), but
 * like Cilium we answer every request except for the pod's own address: after a node restart
 * a pod may still have an old gateway configured, and any answer routes it through the lxc.
 */
#ifndef PN_ARP_H
#define PN_ARP_H

#include "common.h"
#include "drop_reasons.h"
#include "lxc.h"

struct arp_eth_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

struct arp_frame {
	struct ethhdr eth;
	struct arp_eth_ipv4 arp;
} __attribute__((packed));

#define ARP_FRAME_LEN sizeof(struct arp_frame) /* 42 */

/* The ARP frame after bounds checks, or NULL when it is not Ethernet/IPv4 ARP. */
static __always_inline struct arp_frame *arp_frame(struct __sk_buff *skb)
{
	if (pn_ensure_linear(skb, ARP_FRAME_LEN) < 0)
		return NULL;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct arp_frame *f = data;

	if ((void *)(f + 1) > data_end)
		return NULL;
	if (f->arp.hrd != bpf_htons(1) || f->arp.pro != bpf_htons(ETH_P_IP) ||
	    f->arp.hln != 6 || f->arp.pln != 4)
		return NULL;
	return f;
}

/* Turn the request into its reply ("tpa is at `mac`") and redirect it to `ifindex` with
 * `flags` (0 = that device's egress, BPF_F_INGRESS = as if received on it). */
static __always_inline int arp_reply(struct __sk_buff *skb, const struct arp_frame *f, const __u8 *mac,
				     __u32 ifindex, __u64 flags)
{
	struct arp_frame r;

	__builtin_memcpy(r.eth.h_dest, f->eth.h_source, 6);
	__builtin_memcpy(r.eth.h_source, mac, 6);
	r.eth.h_proto = bpf_htons(ETH_P_ARP);
	r.arp.hrd = bpf_htons(1);
	r.arp.pro = bpf_htons(ETH_P_IP);
	r.arp.hln = 6;
	r.arp.pln = 4;
	r.arp.op = bpf_htons(2);
	__builtin_memcpy(r.arp.sha, mac, 6);
	r.arp.spa = f->arp.tpa;
	__builtin_memcpy(r.arp.tha, f->arp.sha, 6);
	r.arp.tpa = f->arp.spa;
	/* f points into the packet: everything needed was copied into r before the store. */
	if (bpf_skb_store_bytes(skb, 0, &r, sizeof(r), 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_redirect(ifindex, flags) != TC_ACT_REDIRECT)
		return DROP_REDIRECT_FAILED;
	return TRACE_ARP_REPLY;
}

/* from-container: answer the pod with the lxc MAC, out of the same lxc (back into the pod);
 * TRACE_TO_STACK for ARP we do not answer (replies, requests for the pod's own IP). */
static __always_inline int arp_respond(struct __sk_buff *skb, const struct lxc_info *lxc)
{
	struct arp_frame *f = arp_frame(skb);

	if (!f)
		return DROP_INVALID;
	/* Anti-spoofing for ARP too: a pod may only claim its own IP (0.0.0.0 = DAD probe). */
	if (f->arp.spa != lxc->ip4 && f->arp.spa != 0)
		return DROP_INVALID_SOURCE;
	if (f->arp.op != bpf_htons(1) || f->arp.tpa == lxc->ip4)
		return TRACE_TO_STACK;
	return arp_reply(skb, f, lxc->mac, skb->ifindex, 0);
}

#endif
