/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_ct4: connection tracking for service flows, one LRU hash so a full table evicts the least
 * recently used flow instead of refusing new ones (Cilium's cilium_ct4_global is LRU for the
 * same reason). Two entries per service flow:
 *
 *   CT_SERVICE  key = the tuple the client sent (client → VIP:port): which backend the flow got
 *               and under which service (rev_nat_index), so every later packet of the flow
 *               goes to the same backend.
 *   CT_REPLY    key = the tuple the backend's reply carries (backend → client, or → the
 *               hairpin address): the VIP:port to translate the source back to, the service's
 *               index (checked against slot 0 so a deleted service translates nothing), and
 *               for a hairpin flow the client address to restore. Stored the way the reply
 *               arrives, so the reply lookup is the packet's own tuple: no swapping.
 *
 * No per-state timeouts (pn does not follow TCP FIN/RST): entries live until LRU eviction. A
 * port reused by a later connection to the same VIP therefore lands on the same backend, which
 * is correct as long as that backend is still in the service (checked on every packet).
 */
#ifndef PN_CONNTRACK_H
#define PN_CONNTRACK_H

#include "common.h"

#define CT_SERVICE 1
#define CT_REPLY 2

/* The flow is a hairpin (client == chosen backend): its source was rewritten to
 * LB4_LOOPBACK_ADDR and the reply's destination must be restored to client_addr. */
#define CT_F_LOOPBACK 1

/* Contract with src/datapath/bpf/maps/ct4.ts (checked against BTF by a unit test). */
struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 dir;    /* CT_SERVICE / CT_REPLY */
	__u16 pad;
};

struct ct4_entry {
	__u64 packets;          /* packets seen in this entry's direction */
	__u64 bytes;
	__u32 backend_id;       /* CT_SERVICE: the backend the flow was given */
	__u32 rev_nat_index;    /* the service's id (slot 0 of pn_lb4_services) */
	__be32 client_addr;     /* CT_REPLY: the client's real address (restored for hairpin) */
	__be32 vip;             /* CT_REPLY: the service a reply's source is rewritten to */
	__be16 vport;
	__u16 flags;            /* CT_F_* */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ct4_key);
	__type(value, struct ct4_entry);
} pn_ct4 PN_MAP;

static __always_inline struct ct4_entry *ct4_lookup(const struct ct4_key *key)
{
	return bpf_map_lookup_elem(&pn_ct4, key);
}

/* Count a packet on an entry; shared (not per-CPU) values, so atomic adds. */
static __always_inline void ct4_account(struct ct4_entry *e, __u32 bytes)
{
	__sync_fetch_and_add(&e->packets, 1);
	__sync_fetch_and_add(&e->bytes, bytes);
}

static __always_inline int ct4_create(const struct ct4_key *key, const struct ct4_entry *e)
{
	return bpf_map_update_elem(&pn_ct4, key, e, BPF_ANY);
}

#endif
