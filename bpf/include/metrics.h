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

/*
 * One slot per (outcome, direction, point) in a per-CPU array: the slot is computed, not hashed,
 * and the kernel inlines a per-CPU array lookup into a few instructions, where the per-CPU hash
 * this used to be cost a hash walk on every packet of every program (about 80 ns a run here;
 * docs/DATAPATH.md). Contract with src/datapath/bpf/maps/metrics.ts (metricsSlot there, and the
 * value struct checked against BTF by a unit test): bits 0..7 the outcome byte (TRACE_* or the
 * magnitude of a DROP_*), bit 8 the direction (METRIC_* - 1), bits 9..11 the point (POINT_*).
 * An all-zero slot is a combination never seen; dumps skip those.
 */
#define METRICS_SLOTS 4096

struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, METRICS_SLOTS);
	__type(key, __u32);
	__type(value, struct metrics_value);
} pn_metrics PN_MAP;

static __always_inline void metrics_count(int code, __u8 dir, __u8 point, __u32 bytes)
{
	__u32 reason = (__u8)(code < 0 ? -code : code);
	__u32 slot = ((__u32)(point & 7) << 9) | ((__u32)((dir - 1) & 1) << 8) | reason;
	struct metrics_value *v = bpf_map_lookup_elem(&pn_metrics, &slot);

	if (!v)
		return;
	/* Per-CPU value: no other CPU writes it, plain increments are safe. */
	v->packets += 1;
	v->bytes += bytes;
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
