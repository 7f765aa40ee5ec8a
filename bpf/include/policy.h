/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Network policy enforcement: identity-based allow rules per local endpoint, checked where a
 * packet leaves a pod (egress, from-container, after service translation) and before it is
 * delivered to one (ingress, local_delivery.h, whichever program delivers it).
 *
 *   pn_policy     one global LPM trie of allow rules for every endpoint of the node, keyed
 *                 {endpoint, peer identity, direction, protocol, destination port}. The trie's
 *                 prefix ends inside the port for a port range (split into port/mask blocks by
 *                 the writer), before the port for "every port", before the protocol for "any
 *                 protocol". A packet is allowed by a match for the peer's identity or, failing
 *                 that, for identity 0 (any peer): two lookups at most.
 *   pn_policy_ep  per endpoint: which directions are enforced, and the revision (a digest of the
 *                 endpoint's rules) conntrack entries are checked against. No entry: the
 *                 endpoint is open both ways and nothing is looked up or tracked for it.
 *   pn_polct4     policy conntrack (LRU): two entries per flow an enforcing endpoint let through,
 *                 keyed by the tuple as that endpoint sees it with the direction, and by the
 *                 swapped tuple with the other direction (the replies), so every later packet
 *                 of the flow passes after one hash lookup. An entry made under an older
 *                 revision is checked against the current rules once (and dropped when they
 *                 no longer allow the flow).
 *
 * A policy change is map writes only: no program is reloaded. Contract with
 * src/datapath/bpf/maps/policy.ts (checked against BTF by a unit test). IPv4 only: IPv6 packets
 * are not checked (docs/POLICY.md).
 */
#ifndef PN_POLICY_H
#define PN_POLICY_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "ipcache.h"
#include "trace.h"

/* Reserved identities (Cilium's numbers; src/policy/types.ts). */
#define IDENTITY_HOST 1
#define IDENTITY_WORLD 2

#define POLICY_INGRESS 0
#define POLICY_EGRESS 1

/* pn_policy_ep flags: the directions the endpoint enforces (default deny in them). */
#define POLICY_F_INGRESS 1
#define POLICY_F_EGRESS 2

/* Bits of policy_key after prefixlen: endpoint_id (32) + identity (32) + egress (8) are always
 * matched; protocol (8) unless "any protocol"; dport (16) down to the range's block. */
#define POLICY_PREFIX_FIXED 72
#define POLICY_PREFIX_FULL 96

struct policy_key {
	__u32 prefixlen;
	__u32 endpoint_id;
	__u32 identity;   /* the peer: source (ingress) or destination (egress); 0 = any peer */
	__u8 egress;      /* POLICY_INGRESS / POLICY_EGRESS */
	__u8 protocol;    /* IPPROTO_*; wildcarded by the prefix for any protocol */
	__be16 dport;     /* network order, so a prefix of it is a port block */
};

/* The rule (merged range) the entry was split from: for dumps and diffs, not for the datapath. */
struct policy_entry {
	__u16 port;       /* first port of the rule, 0 = every port */
	__u16 end_port;   /* last port of the rule */
	__u32 flags;      /* reserved, 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_policy PN_MAP;

struct policy_ep_key {
	__u32 endpoint_id;
};

struct policy_ep_info {
	__u32 flags;      /* POLICY_F_* */
	__u32 revision;   /* changes whenever the endpoint's rules or flags change */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct policy_ep_key);
	__type(value, struct policy_ep_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_policy_ep PN_MAP;

struct polct4_key {
	__be32 saddr;     /* the flow as the endpoint sees it (before service translation on egress) */
	__be32 daddr;
	__be16 sport;     /* ICMP echo: the id in both ports, so the reply's swapped tuple matches */
	__be16 dport;
	__u8 proto;
	__u8 egress;      /* the direction the flow's first packet took at this endpoint */
	__u16 pad;
};

struct polct4_entry {
	__u32 endpoint_id; /* the endpoint that let the flow through (an IP reused by another pod misses) */
	__u32 revision;    /* pn_policy_ep revision the flow was last allowed under */
	__be32 peer;       /* the peer's address after translation: its identity is looked up again */
	__be16 pol_dport;  /* the port the rules were checked with (the backend's port after DNAT) */
	__u8 orig_egress;  /* the direction the rules were checked in (the flow's first packet) */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct polct4_key);
	__type(value, struct polct4_entry);
} pn_polct4 PN_MAP;

/* The flow a packet belongs to, as read from its headers. */
struct pol_tuple4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 related;     /* an ICMP error: `inner` is the flow it is about */
	__u8 pad[2];
	struct {
		__be32 saddr;
		__be32 daddr;
		__be16 sport;
		__be16 dport;
		__u8 proto;
		__u8 pad[3];
	} inner;
};

/* An ICMP error (destination unreachable, time exceeded, parameter problem) carries the header
 * of the packet it answers: read that flow, so the error can pass as related to it. */
static __always_inline void policy_icmp_inner(struct __sk_buff *skb, __u32 off, struct pol_tuple4 *t)
{
	struct iphdr in;
	__u8 ports[4];

	if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)) < 0 || in.version != 4)
		return;
	if (bpf_skb_load_bytes(skb, off + ((__u32)in.ihl & 0xf) * 4, ports, sizeof(ports)) < 0)
		return;
	t->inner.saddr = in.saddr;
	t->inner.daddr = in.daddr;
	t->inner.proto = in.protocol;
	__builtin_memcpy(&t->inner.sport, &ports[0], 2);
	__builtin_memcpy(&t->inner.dport, &ports[2], 2);
	t->related = 1;
}

static __always_inline void policy_tuple4(struct __sk_buff *skb, const struct iphdr *ip4, struct pol_tuple4 *t)
{
	__u32 l4off = ETH_HLEN + ((__u32)ip4->ihl & 0xf) * 4;
	__u8 l4[8] = {};

	t->saddr = ip4->saddr;
	t->daddr = ip4->daddr;
	t->proto = ip4->protocol;
	t->sport = 0;
	t->dport = 0;
	t->related = 0;
	/* A non-first fragment has no L4 header: ports 0 (only port-less rules match it). */
	if (ip4->frag_off & bpf_htons(0x1fff))
		return;
	if (bpf_skb_load_bytes(skb, l4off, l4, sizeof(l4)) < 0)
		return;
	if (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP || t->proto == IPPROTO_SCTP) {
		__builtin_memcpy(&t->sport, &l4[0], 2);
		__builtin_memcpy(&t->dport, &l4[2], 2);
	} else if (t->proto == IPPROTO_ICMP && (l4[0] == 8 || l4[0] == 0)) {
		__builtin_memcpy(&t->sport, &l4[4], 2); /* echo request/reply: the id */
		t->dport = t->sport;
	} else if (t->proto == IPPROTO_ICMP && (l4[0] == 3 || l4[0] == 11 || l4[0] == 12)) {
		policy_icmp_inner(skb, l4off + 8, t);
	}
}

/* The identity of an address: the ipcache's; a node address pn_endpoints knows (router IPs)
 * is the host; anything else is the world. */
static __always_inline __u32 policy_identity4(__be32 addr)
{
	struct ipcache_key key = {.prefixlen = 64, .family = 1};

	__builtin_memcpy(key.addr, &addr, 4);
	struct ipcache_info *info = bpf_map_lookup_elem(&pn_ipcache, &key);

	if (info)
		return info->identity;
	struct endpoint_info *ep = lookup_ip4_endpoint(addr);

	if (ep && (ep->flags & ENDPOINT_F_HOST))
		return IDENTITY_HOST;
	return IDENTITY_WORLD;
}

/* Does a rule of the endpoint allow this peer identity / protocol / port? Exact identity
 * first, then any peer; the trie picks the longest protocol/port prefix on its own. */
static __always_inline bool policy_allows(__u32 ep_id, __u32 identity, __u8 egress, __u8 proto, __be16 dport)
{
	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL,
		.endpoint_id = ep_id,
		.identity = identity,
		.egress = egress,
		.protocol = proto,
		.dport = (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) ? dport : 0,
	};

	if (bpf_map_lookup_elem(&pn_policy, &key))
		return true;
	if (identity == 0)
		return false;
	key.identity = 0;
	return bpf_map_lookup_elem(&pn_policy, &key) != NULL;
}

/* The verdict for a flow's first packet in `egress` direction at the endpoint. */
static __always_inline bool policy_verdict(const struct policy_ep_info *st, __u32 ep_id, __u32 identity,
					   __u8 egress, __u8 proto, __be16 dport)
{
	__u32 enforced = egress ? (st->flags & POLICY_F_EGRESS) : (st->flags & POLICY_F_INGRESS);

	if (!enforced)
		return true;
	/* The node itself (kubelet probes) always reaches its pods, as Cilium's allow-localhost. */
	if (!egress && identity == IDENTITY_HOST)
		return true;
	return policy_allows(ep_id, identity, egress, proto, dport);
}

/* A conntrack entry made under an older revision: does the current rule set still allow the
 * flow's first packet (the direction and port it was checked with, the peer's identity now)? */
static __always_inline int policy_ct_recheck(const struct policy_ep_info *st, __u32 ep_id,
					     struct polct4_key *key, struct polct4_entry *e)
{
	__u32 identity = policy_identity4(e->peer);

	if (!policy_verdict(st, ep_id, identity, e->orig_egress, key->proto, e->pol_dport)) {
		bpf_map_delete_elem(&pn_polct4, key);
		return DROP_POLICY_DENIED;
	}
	e->revision = st->revision;
	return 0;
}

/* Record both identities for the trace event (only while `pn monitor` listens): skb->cb words
 * with a check word, so a value some other layer left there is never read as ours. */
static __always_inline void policy_trace_ids(struct __sk_buff *skb, __u32 src, __u32 dst)
{
	pn_cb_store(skb, PN_CB_SRC_ID, src);
	pn_cb_store(skb, PN_CB_DST_ID, dst);
	pn_cb_store(skb, PN_CB_ID_CHECK, PN_CB_ID_MAGIC ^ src ^ dst);
}

static __always_inline bool policy_tracing(void)
{
	__u32 zero = 0;
	struct trace_config *cfg = bpf_map_lookup_elem(&pn_trace_config, &zero);

	return cfg && cfg->flags;
}

/*
 * The check at one endpoint whose state (`st`) is known or whose packets are traced. `t`: the
 * flow as the endpoint sees it (conntrack key); `peer`: the other side's address after
 * translation; `dport`: the port the rules are checked with. 0 to pass, DROP_POLICY_DENIED to drop.
 */
static __always_inline int policy_check4(struct __sk_buff *skb, const struct policy_ep_info *st, bool tracing,
					 __u32 ep_id, __u8 egress, const struct pol_tuple4 *t,
					 __be32 self, __be32 peer, __be16 dport)
{
	if (tracing) {
		__u32 own = policy_identity4(self);
		__u32 other = policy_identity4(peer);

		if (egress)
			policy_trace_ids(skb, own, other);
		else
			policy_trace_ids(skb, other, own);
	}
	if (!st)
		return 0;

	/* The flow's later packets and its replies: one lookup. */
	struct polct4_key key = {
		.saddr = t->saddr, .daddr = t->daddr, .sport = t->sport, .dport = t->dport,
		.proto = t->proto, .egress = egress,
	};
	struct polct4_entry *e = bpf_map_lookup_elem(&pn_polct4, &key);

	if (e && e->endpoint_id == ep_id)
		return e->revision == st->revision ? 0 : policy_ct_recheck(st, ep_id, &key, e);

	/* An ICMP error about a flow this endpoint tracks (port unreachable, fragmentation needed):
	 * the flow it quotes went the other way. It passes, and makes no entry of its own. */
	if (t->related) {
		struct polct4_key ik = {
			.saddr = t->inner.saddr, .daddr = t->inner.daddr, .sport = t->inner.sport, .dport = t->inner.dport,
			.proto = t->inner.proto, .egress = !egress,
		};
		struct polct4_entry *ie = bpf_map_lookup_elem(&pn_polct4, &ik);

		if (ie && ie->endpoint_id == ep_id)
			return 0;
	}

	/* A new flow: the rules decide. */
	if (!policy_verdict(st, ep_id, policy_identity4(peer), egress, t->proto, dport))
		return DROP_POLICY_DENIED;
	struct polct4_entry ne = {
		.endpoint_id = ep_id, .revision = st->revision, .peer = peer, .pol_dport = dport, .orig_egress = egress,
	};
	struct polct4_key rkey = {
		.saddr = t->daddr, .daddr = t->saddr, .sport = t->dport, .dport = t->sport,
		.proto = t->proto, .egress = !egress,
	};

	/* A full table evicts the least recently used flow; a failed insert only costs a lookup later. */
	bpf_map_update_elem(&pn_polct4, &key, &ne, BPF_ANY);
	bpf_map_update_elem(&pn_polct4, &rkey, &ne, BPF_ANY);
	return 0;
}

static __always_inline struct policy_ep_info *policy_state(__u32 ep_id)
{
	struct policy_ep_key ek = {.endpoint_id = ep_id};

	return bpf_map_lookup_elem(&pn_policy_ep, &ek);
}

/* What from-container keeps between the two halves of the egress check. For an open endpoint
 * with no monitor listening the whole check is one hash lookup and one array lookup. */
struct pol_egress {
	struct policy_ep_info *st; /* NULL: the endpoint is open */
	struct pol_tuple4 flow;    /* the flow as the pod sent it (before service translation) */
	bool tracing;
};

/* Before service translation: the endpoint's state, and the flow as the pod sent it. */
static __always_inline void policy_egress_begin(struct __sk_buff *skb, __u32 ep_id, const struct iphdr *ip4,
						struct pol_egress *pe)
{
	pe->st = policy_state(ep_id);
	pe->tracing = policy_tracing();
	if (pe->st || pe->tracing)
		policy_tuple4(skb, ip4, &pe->flow);
}

/* After it: `ip4` is the translated packet (the peer and the port the rules see). */
static __always_inline int policy_egress4(struct __sk_buff *skb, __u32 ep_id, const struct pol_egress *pe,
					  const struct iphdr *ip4)
{
	if (!pe->st && !pe->tracing)
		return 0;
	struct pol_tuple4 now;

	policy_tuple4(skb, ip4, &now);
	return policy_check4(skb, pe->st, pe->tracing, ep_id, POLICY_EGRESS, &pe->flow, pe->flow.saddr, now.daddr, now.dport);
}

/* Ingress before delivery to a local pod: the packet as the pod will receive it. */
static __always_inline int policy_ingress4(struct __sk_buff *skb, __u32 ep_id, const struct iphdr *ip4)
{
	struct policy_ep_info *st = policy_state(ep_id);
	bool tracing = policy_tracing();

	if (!st && !tracing)
		return 0;
	struct pol_tuple4 t;

	policy_tuple4(skb, ip4, &t);
	return policy_check4(skb, st, tracing, ep_id, POLICY_INGRESS, &t, t.daddr, t.saddr, t.dport);
}

#endif
