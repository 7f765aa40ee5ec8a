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

/* skb->cb words pn uses within one run of a program (tc programs own cb[0..4]): the service
 * frontend lb4_xlate translated the packet from, so its trace event can show it. The high half
 * of the port word carries a magic, so a value some other layer left in cb is never read as ours;
 * from-container clears it first. */
#define PN_CB_SVC_ADDR 0
#define PN_CB_SVC_PORT 1
#define PN_CB_SVC_MAGIC 0x706eU
/* The same two words for masquerade (nat.h): the source before SNAT (to-netdev), or the
 * destination before the reply was translated back (from-netdev). */
#define PN_CB_SNAT_MAGIC 0x736eU
#define PN_CB_RNAT_MAGIC 0x726eU

/* Directions (metrics key `dir`), Cilium's meaning: ingress = towards a pod or the node,
 * egress = leaving a pod or the node. */
#define METRIC_INGRESS 1
#define METRIC_EGRESS 2

/* Make sure the first `len` bytes are in the linear area so direct packet access can see
 * them; veth usually hands us linear headers but GSO/GRO skbs need not be. */
static __always_inline int pn_ensure_linear(struct __sk_buff *skb, __u32 len)
{
	/* Compare as packet pointers: arithmetic on the raw u32 fields makes clang emit shifts the
	 * verifier rejects ("pointer arithmetic with <<= operator prohibited"). */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + len <= data_end)
		return 0;
	if (skb->len < len)
		return -1;
	return bpf_skb_pull_data(skb, len);
}

#endif
