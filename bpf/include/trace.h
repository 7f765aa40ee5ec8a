/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_events + pn_trace_config: the trace and drop events `pn monitor` streams.
 *
 * Every program already ends in pn_verdict() with its outcome, direction and observation point;
 * pn_verdict calls pn_trace() there, so this header is the only place that emits events and no
 * program needs its own trace calls. With no monitor attached the cost is one lookup in a
 * one-slot array (which the verifier inlines to a load) and one branch: `pn monitor` sets the
 * flags, and clears them on exit; a watchdog clears them when the monitor is killed.
 *
 * Why a PERF_EVENT_ARRAY and not a ring buffer: pn reads events through `bpftool map
 * event_pipe`, which only reads perf event arrays (bpftool 7.1), so no native reader is needed.
 *
 * The struct below is part of the kernel ↔ TypeScript contract
 * (src/datapath/bpf/maps/trace.ts, checked against BTF by test/unit/bpf-layout.test.ts), and the
 * OBS_* numbers are parsed from this file by a unit test: keep one `#define NAME VALUE` per line.
 */
#ifndef PN_TRACE_H
#define PN_TRACE_H

#include "common.h"
#include "drop_reasons.h"

/* Observation points of a trace event (Cilium's trace points, by the same names). */
#define OBS_FROM_ENDPOINT 1 /* left a pod: from-container at its lxc */
#define OBS_TO_ENDPOINT 2 /* delivered to a pod: redirected into its netns or to its lxc */
#define OBS_FROM_NETWORK 3 /* arrived on the uplink: from-netdev */
#define OBS_TO_NETWORK 4 /* leaves through the uplink: to-netdev */
#define OBS_FROM_HOST 5 /* the node's stack sent it into pn_host: from-host */
#define OBS_TO_HOST 6 /* entered the node through pn_host: to-host */
#define OBS_TO_STACK 7 /* handed to the node's IP stack (routing or local delivery) */
#define OBS_TO_OVERLAY 8 /* encapsulated into pn_vxlan towards another node */
#define OBS_FROM_OVERLAY 9 /* arrived decapsulated on pn_vxlan: from-overlay */

/* trace_event.xlate: the translation a program made, and what orig_daddr/orig_dport hold. */
#define TRACE_XLATE_SVC 1 /* service DNAT: the frontend the destination was */
#define TRACE_XLATE_SNAT 2 /* masquerade: the source before SNAT */
#define TRACE_XLATE_REV_SNAT 3 /* masquerade reply: the destination before it was translated back */

#define EVENT_TRACE 1
#define EVENT_DROP 2

/* pn_trace_config flags: which events the attached monitor wants. 0 = no monitor. */
#define TRACE_CFG_TRACE 1
#define TRACE_CFG_DROP 2

struct trace_config {
	__u32 flags; /* TRACE_CFG_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_config);
} pn_trace_config PN_MAP;

/* One event; 96 bytes, 8-aligned. Addresses network order, everything else host order. */
struct trace_event {
	__u64 ktime_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 ifindex;       /* the device the program runs on */
	__u32 len;           /* skb->len */
	__u8 type;           /* EVENT_TRACE / EVENT_DROP */
	__u8 obs;            /* OBS_*; a drop carries its program's arrival point */
	__u8 point;          /* POINT_*: which program */
	__u8 reason;         /* TRACE_* outcome, or the magnitude of a DROP_* (as in pn_metrics) */
	__u8 dir;            /* METRIC_INGRESS / METRIC_EGRESS */
	__u8 family;         /* 4, 6, or 0 when not IP (ARP carries sender/target IPv4 as 4) */
	__u8 proto;          /* IPPROTO_* (0 for ARP) */
	__u8 xlate;          /* what orig_* is: TRACE_XLATE_*, 0 = nothing translated */
	__u8 l4[8];          /* first 8 bytes of L4: ports (TCP/UDP), type/code/id/seq (ICMP); ARP: op */
	__u16 ethertype;
	/* Service translation: the frontend (VIP, port) lb4_xlate rewrote the destination from, zero
	 * when nothing was translated (from-container only; set through skb->cb, see common.h). */
	__be16 orig_dport;
	__u32 pad2;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 orig_daddr[16];
	/* Security identities of source and destination as the policy check saw them (policy.h),
	 * 0 when no check ran (non-IPv4, or not on a pod's path). */
	__u32 src_identity;
	__u32 dst_identity;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	/* max_entries unset: libbpf makes it one slot per possible CPU. */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} pn_events PN_MAP;

/* Outcomes that hand the packet to the node's stack (TC_ACT_OK): plain TRACE_TO_STACK and
 * the counted fallbacks of BPF host routing (fib.h). */
static __always_inline bool trace_to_stack(int code)
{
	return code == TRACE_TO_STACK || (code >= TRACE_FIB_NO_ROUTE && code <= TRACE_FIB_UNSUPPORTED);
}

/* The trace point a packet reaches when a program sees it. */
static __always_inline __u8 trace_arrival(__u8 point)
{
	switch (point) {
	case POINT_FROM_CONTAINER:
		return OBS_FROM_ENDPOINT;
	case POINT_FROM_NETDEV:
		return OBS_FROM_NETWORK;
	case POINT_TO_NETDEV:
		return OBS_TO_NETWORK;
	case POINT_FROM_HOST:
		return OBS_FROM_HOST;
	case POINT_FROM_OVERLAY:
		return OBS_FROM_OVERLAY;
	default:
		return OBS_TO_HOST;
	}
}

/* The trace point an outcome sends the packet to, 0 when it just continues on its way (to the
 * wire from to-netdev, to pn_net from from-host): `point` is a constant in every program, so
 * this folds to one or two compares. */
static __always_inline __u8 trace_outcome(__u8 point, int code)
{
	if (code == TRACE_REDIRECT || code == TRACE_REDIRECT_PEER)
		return OBS_TO_ENDPOINT;
	if (code == TRACE_FIB_REDIRECT || code == TRACE_FIB_REDIRECT_NEIGH)
		return OBS_TO_NETWORK;
	if (code == TRACE_ENCAP)
		return OBS_TO_OVERLAY;
	if (code == TRACE_ARP_REPLY || code == TRACE_NDP_REPLY)
		return point == POINT_FROM_HOST ? OBS_TO_HOST : OBS_TO_ENDPOINT;
	if (point == POINT_TO_NETDEV || point == POINT_FROM_HOST)
		return 0;
	return OBS_TO_STACK;
}

/*
 * A pod's packet that from-container encapsulated itself (tunnel.h tunnel_encap4) is already the
 * outer VXLAN packet when its verdict is traced: the event describes the inner one, as for the
 * packets handed to pn_vxlan, so it starts 50 bytes further (outer IPv4, UDP to 8472, the VXLAN
 * header with only the I flag, then the inner Ethernet header). 0 for any other packet.
 */
#define TRACE_VXLAN_OUTER_LEN 50
static __always_inline __u32 trace_encap_offset(struct __sk_buff *skb, int code, __u8 point)
{
	__u8 h[36]; /* outer IPv4 (20), UDP (8), VXLAN (8) */

	if (code != TRACE_ENCAP || point != POINT_FROM_CONTAINER ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, h, sizeof(h)) < 0)
		return 0;
	if (h[0] != 0x45 || h[9] != IPPROTO_UDP || h[22] != (8472 >> 8) || h[23] != (8472 & 0xff) ||
	    h[28] != 0x08 || h[29] || h[30] || h[31])
		return 0;
	return TRACE_VXLAN_OUTER_LEN;
}

/* Fill addresses, protocol and the first L4 bytes of the frame at `base`. bpf_skb_load_bytes
 * rather than direct access: it bounds-checks for us and leaves the program's packet pointers
 * alone. */
static __always_inline void trace_fill(struct __sk_buff *skb, struct trace_event *ev, __u32 base)
{
	struct ethhdr eth;

	if (bpf_skb_load_bytes(skb, base, &eth, sizeof(eth)) < 0)
		return;
	ev->ethertype = bpf_ntohs(eth.h_proto);
	if (ev->ethertype == ETH_P_IP) {
		struct iphdr ip4;

		if (bpf_skb_load_bytes(skb, base + ETH_HLEN, &ip4, sizeof(ip4)) < 0)
			return;
		ev->family = 4;
		ev->proto = ip4.protocol;
		__builtin_memcpy(ev->saddr, &ip4.saddr, 4);
		__builtin_memcpy(ev->daddr, &ip4.daddr, 4);
		__u32 l4off = base + ETH_HLEN + ((__u32)ip4.ihl & 0xf) * 4;

		if (bpf_skb_load_bytes(skb, l4off, ev->l4, sizeof(ev->l4)) < 0)
			__builtin_memset(ev->l4, 0, sizeof(ev->l4));
	} else if (ev->ethertype == ETH_P_ARP) {
		__u8 arp[28]; /* Ethernet/IPv4 ARP: op at 6, sender IP at 14, target IP at 24 */

		if (bpf_skb_load_bytes(skb, base + ETH_HLEN, arp, sizeof(arp)) < 0)
			return;
		ev->family = 4;
		ev->l4[0] = arp[6];
		ev->l4[1] = arp[7];
		__builtin_memcpy(ev->saddr, &arp[14], 4);
		__builtin_memcpy(ev->daddr, &arp[24], 4);
	} else if (ev->ethertype == ETH_P_IPV6) {
		__u8 ip6[40]; /* next header at 6, source at 8, destination at 24 */

		if (bpf_skb_load_bytes(skb, base + ETH_HLEN, ip6, sizeof(ip6)) < 0)
			return;
		ev->family = 6;
		ev->proto = ip6[6];
		__builtin_memcpy(ev->saddr, &ip6[8], 16);
		__builtin_memcpy(ev->daddr, &ip6[24], 16);
		if (bpf_skb_load_bytes(skb, base + ETH_HLEN + 40, ev->l4, sizeof(ev->l4)) < 0)
			__builtin_memset(ev->l4, 0, sizeof(ev->l4));
	}
}

/* Not inlined on purpose: a BPF subprogram (only ever called with the gate open) whose
 * signature puts struct trace_event into the object's BTF, where the layout test finds it; an
 * inlined helper leaves no trace of a stack-only struct in BTF. */
static __attribute__((noinline)) int trace_emit(struct __sk_buff *skb, struct trace_event *ev)
{
	return bpf_perf_event_output(skb, &pn_events, BPF_F_CURRENT_CPU, ev, sizeof(*ev));
}

/* Called by pn_verdict for every packet. Off: one array lookup and a branch. */
static __always_inline void pn_trace(struct __sk_buff *skb, int code, __u8 dir, __u8 point, __u32 len)
{
	__u32 zero = 0;
	struct trace_config *cfg = bpf_map_lookup_elem(&pn_trace_config, &zero);

	if (!cfg || !cfg->flags)
		return;
	__u32 flags = cfg->flags;
	__u32 base = trace_encap_offset(skb, code, point);
	struct trace_event ev = {
		.ktime_ns = bpf_ktime_get_ns(),
		.ifindex = skb->ifindex,
		.len = len - base,
		.point = point,
		.reason = (__u8)(code < 0 ? -code : code),
		.dir = dir,
	};

	trace_fill(skb, &ev, base);
	__u32 svc_port = pn_cb_load(skb, PN_CB_SVC_PORT);
	__u32 magic = svc_port >> 16;
	bool xlate_point = point == POINT_FROM_CONTAINER || point == POINT_FROM_NETDEV || point == POINT_TO_NETDEV;
	bool nat6 = (point == POINT_FROM_NETDEV || point == POINT_TO_NETDEV) &&
		    (magic == PN_CB_SNAT6_MAGIC || magic == PN_CB_RNAT6_MAGIC);

	if (xlate_point && (magic == PN_CB_SVC_MAGIC || magic == PN_CB_SNAT_MAGIC || magic == PN_CB_RNAT_MAGIC)) {
		__u32 vip = pn_cb_load(skb, PN_CB_SVC_ADDR);

		__builtin_memcpy(ev.orig_daddr, &vip, 4);
		ev.orig_dport = (__be16)(svc_port & 0xffff);
		ev.xlate = magic == PN_CB_SVC_MAGIC ? TRACE_XLATE_SVC : magic == PN_CB_SNAT_MAGIC ? TRACE_XLATE_SNAT : TRACE_XLATE_REV_SNAT;
	} else if (nat6) {
		/* IPv6 masquerade: the address is in cb[0] and cb[2..4] (common.h), no identities. */
		__u32 w[4] = {pn_cb_load(skb, PN_CB_SVC_ADDR), pn_cb_load(skb, PN_CB_SRC_ID), pn_cb_load(skb, PN_CB_DST_ID),
			      pn_cb_load(skb, PN_CB_ID_CHECK)};

		__builtin_memcpy(ev.orig_daddr, w, 16);
		ev.orig_dport = (__be16)(svc_port & 0xffff);
		ev.xlate = magic == PN_CB_SNAT6_MAGIC ? TRACE_XLATE_SNAT : TRACE_XLATE_REV_SNAT;
	}
	__u32 src_id = pn_cb_load(skb, PN_CB_SRC_ID);
	__u32 dst_id = pn_cb_load(skb, PN_CB_DST_ID);

	if (!nat6 && pn_cb_load(skb, PN_CB_ID_CHECK) == (PN_CB_ID_MAGIC ^ src_id ^ dst_id)) {
		ev.src_identity = src_id;
		ev.dst_identity = dst_id;
	}
	ev.obs = trace_arrival(point);
	if (flags & TRACE_CFG_TRACE) {
		ev.type = EVENT_TRACE;
		trace_emit(skb, &ev);
	}
	if (code < 0) {
		if (flags & TRACE_CFG_DROP) {
			ev.type = EVENT_DROP;
			trace_emit(skb, &ev);
		}
		return;
	}
	ev.obs = trace_outcome(point, code);
	if (ev.obs && (flags & TRACE_CFG_TRACE)) {
		ev.type = EVENT_TRACE;
		trace_emit(skb, &ev);
	}
}

#endif
