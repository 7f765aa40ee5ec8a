/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_metrics: packets and bytes per (outcome, direction, observation point), per CPU so the
 * hot path never contends on a shared counter. Owned here together with the helper that turns
 * a helper's return code into a TC verdict.
 */
#ifndef PN_METRICS_H
#define PN_METRICS_H

#include "common.h"
#include "drop_reasons.h"
#include "trace.h"

/* Contract with src/datapath/bpf/codecs.ts (checked against BTF by a unit test). */
struct metrics_key {
	__u8 reason; /* TRACE_* outcome, or -DROP_* */
	__u8 dir;    /* METRIC_INGRESS / METRIC_EGRESS */
	__u8 point;  /* POINT_* */
	__u8 pad;
};

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
} pn_metrics PN_MAP;

static __always_inline void metrics_count(int code, __u8 dir, __u8 point, __u32 bytes)
{
	struct metrics_key key = {
		.reason = (__u8)(code < 0 ? -code : code),
		.dir = dir,
		.point = point,
	};
	struct metrics_value *v = bpf_map_lookup_elem(&pn_metrics, &key);

	if (v) {
		/* Per-CPU value: no other CPU writes it, plain increments are safe. */
		v->packets += 1;
		v->bytes += bytes;
		return;
	}
	struct metrics_value init = {.packets = 1, .bytes = bytes};
	bpf_map_update_elem(&pn_metrics, &key, &init, BPF_NOEXIST);
}

/* The single place where an outcome becomes a verdict: negative → count + drop; to-stack
 * outcomes (TRACE_TO_STACK and host routing's fallbacks) → TC_ACT_OK; redirects
 * have already been requested by the helper, so we return TC_ACT_REDIRECT for them. */
static __always_inline int pn_verdict(struct __sk_buff *skb, int code, __u8 dir, __u8 point)
{
	__u32 len = skb->len;

	metrics_count(code, dir, point, len);
	pn_trace(skb, code, dir, point, len); /* events for `pn monitor`; gated off by default */
	if (code < 0)
		return TC_ACT_SHOT;
	if (trace_to_stack(code))
		return TC_ACT_OK;
	return TC_ACT_REDIRECT;
}

#endif
