/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared basics for every pn program: kernel types, helper prototypes, constants and the
 * observation points / directions used as metric keys. Programs are compiled once per node
 * (never per pod), so nothing here may depend on a particular endpoint.
 */
#ifndef PN_COMMON_H
#define PN_COMMON_H

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Maps are defined in headers included by several translation units; `bpftool gen object`
 * links those units into one object and merges the __weak definitions into one map, so all
 * five programs share one pn_endpoints (one pin, one set of entries). */
#define PN_MAP __attribute__((section(".maps"), weak))

#define ETH_ALEN_PN 6
#define ETH_P_802_3_MIN_PN 0x0600

/* Observation points (metrics key `point`), one per program. */
#define POINT_FROM_CONTAINER 1
#define POINT_FROM_NETDEV 2
#define POINT_TO_NETDEV 3
#define POINT_TO_HOST 4
#define POINT_FROM_HOST 5
#define POINT_FROM_OVERLAY 6

/* skb->cb words pn uses within one run of a program (tc programs own cb[0..4]): the service
 * frontend lb4_xlate translated the packet from, so its trace event can show it. The high half
 * of the port word carries a magic, so a value some other layer left in cb is never read as ours;
 * from-container clears it first. */
#define PN_CB_SVC_ADDR 0
#define PN_CB_SVC_PORT 1
#define PN_CB_SVC_MAGIC 0x706eU
/* The source and destination security identities the policy check saw (policy.h), for the
 * trace event; the third word is a check (magic ^ src ^ dst) so leftovers are never read as ours. */
#define PN_CB_SRC_ID 2
#define PN_CB_DST_ID 3
#define PN_CB_ID_CHECK 4
#define PN_CB_ID_MAGIC 0x706e6964U

/* One skb->cb word. The empty asm hides that every access uses the same skb, so clang cannot
 * keep &skb->cb[i] in a register and access the neighbours through it: the verifier refuses
 * that ("dereference of modified ctx ptr"). */
static __always_inline __u32 pn_cb_load(struct __sk_buff *skb, const int i)
{
	asm volatile("" : "+r"(skb));
	return skb->cb[i];
}

static __always_inline void pn_cb_store(struct __sk_buff *skb, const int i, __u32 v)
{
	asm volatile("" : "+r"(skb));
	skb->cb[i] = v;
}

static __always_inline void pn_cb_clear_ids(struct __sk_buff *skb)
{
	pn_cb_store(skb, PN_CB_SRC_ID, 0);
	pn_cb_store(skb, PN_CB_DST_ID, 0);
	pn_cb_store(skb, PN_CB_ID_CHECK, 0);
}

/* The same two words for masquerade (nat.h): the source before SNAT (to-netdev), or the
 * destination before the reply was translated back (from-netdev). */
#define PN_CB_SNAT_MAGIC 0x736eU
#define PN_CB_RNAT_MAGIC 0x726eU
/* IPv6 masquerade (nat6.h): the 16-byte address does not fit one word, so it takes cb[0] and the
 * three identity words (cb[2..4]), which carry nothing on that path (policy is IPv4 only). */
#define PN_CB_SNAT6_MAGIC 0x7336U
#define PN_CB_RNAT6_MAGIC 0x7236U

/* Directions (metrics key `dir`), Cilium's meaning: ingress = towards a pod or the node,
 * egress = leaving a pod or the node. */
#define METRIC_INGRESS 1
#define METRIC_EGRESS 2

/* A 32-bit (or wider) one's-complement sum folded to the 16-bit Internet checksum. */
static __always_inline __u16 csum_fold32(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* skb->data and skb->data_end, loaded by one instruction each at a constant offset from the
 * context pointer, which is the only form the verifier accepts (see pn_ensure_linear). */
static __always_inline void *pn_skb_data(struct __sk_buff *skb)
{
	__u64 v;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(v) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data)));
	return (void *)(long)v;
}

static __always_inline void *pn_skb_data_end(struct __sk_buff *skb)
{
	__u64 v;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(v) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data_end)));
	return (void *)(long)v;
}

/* Make sure the first `len` bytes are in the linear area so direct packet access can see
 * them; veth usually hands us linear headers but GSO/GRO skbs need not be. */
static __always_inline int pn_ensure_linear(struct __sk_buff *skb, __u32 len)
{
	/* Compare as packet pointers: arithmetic on the raw u32 fields makes clang emit shifts the
	 * verifier rejects ("pointer arithmetic with <<= operator prohibited"). The two loads are
	 * written as instructions: inlined into a large program, clang may otherwise keep
	 * &skb->data_end in a register across calls and load through it, which the verifier refuses
	 * ("dereference of modified ctx ptr"). */
	void *data = pn_skb_data(skb);
	void *data_end = pn_skb_data_end(skb);

	if (data + len <= data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len);
}

#endif
