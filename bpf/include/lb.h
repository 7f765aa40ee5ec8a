/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Service load balancing (ClusterIP-style VIPs, TCP and UDP, IPv4): pn's kube-proxy
 * replacement. from-container calls lb4_xlate() on every IPv4 packet after anti-spoofing and
 * before the endpoint lookup, where Cilium's per-packet LB (__per_packet_lb_svc_xlate_4) sits:
 * a VIP rewritten to a backend then takes the normal local-delivery / to-stack path. Replies
 * are translated back by lb4_rev_xlate() wherever they are about to be delivered to the client:
 * in from-container (backend on this node: its reply leaves through its own lxc) and before
 * local delivery from the uplink (backend on another node: the reply enters via from-netdev).
 *
 * Maps (Cilium's shape with three changes, explained in docs/SERVICES.md):
 *   pn_lb4_services  {VIP, port, proto, slot} → slot 0: backend count, the service's rev-NAT
 *                    index, the slot bank in use and the FIRST backend's id; slot bank+i
 *                    (i = 2 … count): the backend id of the i-th backend
 *   pn_lb4_backends  backend id → {address, port}
 *   pn_lb4_stats     rev-NAT index → per-CPU packets, bytes, new connections, replies
 *   pn_ct4           (conntrack.h) the flows, forward and reply
 * 1. The rev-NAT index is 32 bits (Cilium: 16), so 100,000 services fit.
 * 2. Backend slots come in two banks. An update writes the new backend set into the bank not
 *    in use, then switches slot 0 (one atomic map update), then deletes the old bank: a packet
 *    sees the old set or the new set, never a mix or a hole. Slot 0 carries backend 1 itself,
 *    so a one-backend service is ONE entry (and one lookup), which is what makes programming
 *    10,000 services one short bpftool batch.
 * 3. No reverse-NAT map: index → VIP:port is just the inverse of the slot-0 key. The reply
 *    conntrack entry carries the VIP:port and the index, and the reply path checks that slot 0
 *    of that VIP:port still has the same index (the same lookup Cilium's rev-NAT map costs),
 *    so a deleted or re-created service never gets replies translated for it.
 *
 * Helpers return 0 (not a service packet / nothing to do), 1 (translated) or a negative DROP_*.
 */
#ifndef PN_LB_H
#define PN_LB_H

#include "common.h"
#include "drop_reasons.h"
#include "l3.h"
#include "conntrack.h"

#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif
#ifndef IPPROTO_UDP
#define IPPROTO_UDP 17
#endif

/* A hairpin flow (the client is the chosen backend) gets this source address, as Cilium's
 * IPV4_LOOPBACK: a packet from the pod's own address would arrive as a martian at the pod. */
#define LB4_LOOPBACK_ADDR bpf_htonl(0xa9fe2a01) /* 169.254.42.1 */

#define LB_SLOT_BANK 32768   /* bank b holds slots b*32768 + 2 … b*32768 + count */
#define LB_MAX_BACKENDS 32767

/* Contract with src/datapath/bpf/maps/lb4-*.ts (checked against BTF by a unit test). */
struct lb4_key {
	__be32 address; /* the VIP */
	__be16 dport;   /* the service port */
	__u16 slot;     /* 0 = the service (and backend 1); slot_base + i = backend i (i ≥ 2) */
	__u8 proto;     /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad[3];
};

struct lb4_service {
	__u32 backend_id;    /* pn_lb4_backends key: backend 1 in slot 0, backend i in slot base+i */
	__u32 rev_nat_index; /* slot 0: the service's id (conntrack and stats key) */
	__u16 count;         /* slot 0: number of backends (0 = drop with DROP_NO_SERVICE) */
	__u16 slot_base;     /* slot 0: 0 or LB_SLOT_BANK, the bank holding the current set */
};

struct lb4_backend_key {
	__u32 backend_id;
};

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
};

struct lb4_stats_key {
	__u32 rev_nat_index;
};

struct lb4_stats {
	__u64 packets;     /* client → service packets */
	__u64 bytes;
	__u64 connections; /* new flows given a backend */
	__u64 replies;     /* backend → client packets translated back */
};

/* Sized for 100,000 services with ~5 backends each (plus a bank being switched); backends
 * are shared between services by (address, port, proto). Not preallocated: memory follows
 * the entries written (docs/SERVICES.md has the figures). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 524288);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_lb4_services PN_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 524288);
	__type(key, struct lb4_backend_key);
	__type(value, struct lb4_backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_lb4_backends PN_MAP;

/* LRU: the datapath creates a service's entry on its first packet, and entries of deleted
 * services (rev-NAT indexes are never reused) age out instead of needing a delete. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct lb4_stats_key);
	__type(value, struct lb4_stats);
} pn_lb4_stats PN_MAP;

/* pn_lb4_gate: slot 0 becomes 1 when the first service is written into these maps (the service
 * writer sets it before the service entries; src/service/apply.ts) and stays 1 until the maps
 * are re-created. While it is 0 the maps hold no service and no service flow, so every lookup
 * the two hooks below would make is a miss: they return at once instead, which takes their
 * hash lookups (two conntrack/service lookups per packet, ~100 ns) off a node without services. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pn_lb4_gate PN_MAP;

static __always_inline bool lb4_enabled(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&pn_lb4_gate, &zero);

	return on && *on;
}

/* What lb4 needs of a packet: addresses, ports, L4 offset. */
struct lb4_tuple {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	bool frag;   /* first fragment of a fragmented datagram */
	__u32 l4off;
};

/* 1 with `t` filled for TCP/UDP with ports, 0 for anything lb4 leaves alone (other protocols,
 * non-first fragments, truncated L4 headers: the stack judges those), DROP_INVALID for a bad
 * IPv4 header. */
static __always_inline int lb4_extract(struct __sk_buff *skb, struct lb4_tuple *t)
{
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4)
		return DROP_INVALID;
	if (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP)
		return 0;
	if (ip4->frag_off & bpf_htons(0x1fff))
		return 0;
	t->frag = (ip4->frag_off & bpf_htons(0x2000)) != 0;
	t->saddr = ip4->saddr;
	t->daddr = ip4->daddr;
	t->proto = ip4->protocol;
	t->l4off = ETH_HLEN + ip4->ihl * 4;

	__be16 ports[2];

	if (bpf_skb_load_bytes(skb, t->l4off, ports, sizeof(ports)) < 0)
		return 0;
	t->sport = ports[0];
	t->dport = ports[1];
	return 1;
}

static __always_inline __u32 lb4_csum_off(const struct lb4_tuple *t)
{
	return t->l4off + (t->proto == IPPROTO_TCP ? 16 : 6);
}

/* UDP: a zero checksum means "none" and must stay zero; a computed zero is sent as 0xffff.
 * BPF_F_MARK_MANGLED_0 makes the helper do both. */
static __always_inline __u64 lb4_l4_flags(const struct lb4_tuple *t)
{
	return t->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrite one IPv4 address (`off`: saddr or daddr) with the IP header checksum and the L4
 * pseudo-header checksum fixed incrementally. The helpers handle CHECKSUM_PARTIAL skbs (veth
 * traffic usually is): then only the pseudo-header part in the L4 field changes. */
static __always_inline int lb4_rewrite_addr(struct __sk_buff *skb, const struct lb4_tuple *t, __u32 off,
					    __be32 old, __be32 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, lb4_csum_off(t), old, new, lb4_l4_flags(t) | BPF_F_PSEUDO_HDR | sizeof(new)) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old, new, sizeof(new)) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* Rewrite a port (`off` into the L4 header: 0 source, 2 destination) and the L4 checksum. */
static __always_inline int lb4_rewrite_port(struct __sk_buff *skb, const struct lb4_tuple *t, __u32 off,
					    __be16 old, __be16 new)
{
	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, lb4_csum_off(t), old, new, lb4_l4_flags(t) | sizeof(new)) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, t->l4off + off, &new, sizeof(new), 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

#define IPV4_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IPV4_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))

static __always_inline void lb4_count(__u32 rev_nat_index, __u32 bytes, __u64 new_conn, __u64 reply)
{
	struct lb4_stats_key key = {.rev_nat_index = rev_nat_index};
	struct lb4_stats *s = bpf_map_lookup_elem(&pn_lb4_stats, &key);

	if (s) {
		/* Per-CPU value: plain increments are safe. */
		s->packets += 1 - reply;
		s->bytes += reply ? 0 : bytes;
		s->connections += new_conn;
		s->replies += reply;
		return;
	}
	struct lb4_stats init = {.packets = 1 - reply, .bytes = reply ? 0 : bytes, .connections = new_conn, .replies = reply};
	bpf_map_update_elem(&pn_lb4_stats, &key, &init, BPF_NOEXIST);
}

static __always_inline struct lb4_backend *lb4_lookup_backend(__u32 id)
{
	struct lb4_backend_key key = {.backend_id = id};

	return bpf_map_lookup_elem(&pn_lb4_backends, &key);
}

/* A client opening a flow straight to an address:port (not a service) may reuse the tuple of
 * an earlier service flow to that backend: without TCP state tracking, its CT_REPLY entry would
 * still match the backend's answers and turn their source into the VIP, and the new connection
 * would never complete. Every flow starts in the client's from-container, on the node holding
 * those entries, so a TCP SYN (or any UDP datagram) that is not for a service removes the reply
 * entry for its own reverse tuple. */
static __always_inline void lb4_forget_reply(struct __sk_buff *skb, const struct lb4_tuple *t)
{
	if (t->proto == IPPROTO_TCP) {
		__u8 flags;

		if (bpf_skb_load_bytes(skb, t->l4off + 13, &flags, 1) < 0)
			return;
		if ((flags & 0x12) != 0x02) /* SYN without ACK */
			return;
	}
	struct ct4_key rk = {.saddr = t->daddr, .daddr = t->saddr, .sport = t->dport, .dport = t->sport, .proto = t->proto, .dir = CT_REPLY};

	bpf_map_delete_elem(&pn_ct4, &rk);
}

/* Forward path: a packet to a service frontend gets a backend (a new flow: a random slot of
 * the current bank; an established flow: its conntrack entry's backend, while that backend
 * still exists and the service is the same one), then DNAT to it. No backends → drop, so a
 * VIP never leaks to the network. */
static __always_inline int lb4_xlate(struct __sk_buff *skb)
{
	if (!lb4_enabled())
		return 0;
	struct lb4_tuple t = {};
	int ret = lb4_extract(skb, &t);

	if (ret <= 0)
		return ret;
	struct lb4_key key = {.address = t.daddr, .dport = t.dport, .proto = t.proto};
	struct lb4_service *svc = bpf_map_lookup_elem(&pn_lb4_services, &key);

	if (!svc) {
		lb4_forget_reply(skb, &t);
		return 0;
	}
	if (t.frag)
		return DROP_FRAG_NOSUPPORT;
	/* Read slot 0 once: an update replaces the whole entry, and these four must agree. */
	__u32 rev = svc->rev_nat_index;
	__u32 count = svc->count;
	__u32 base = svc->slot_base;
	__u32 first = svc->backend_id;
	__u32 len = skb->len;

	struct ct4_key ck = {.saddr = t.saddr, .daddr = t.daddr, .sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = CT_SERVICE};
	struct ct4_entry *ct = ct4_lookup(&ck);
	struct lb4_backend *be = NULL;
	__u32 backend_id = 0;

	if (ct && ct->rev_nat_index == rev) {
		backend_id = ct->backend_id;
		be = lb4_lookup_backend(backend_id);
	}
	if (be) {
		lb4_count(rev, len, 0, 0);
	} else {
		/* New flow, or its backend was removed, or the service was re-created. */
		if (count == 0 || count > LB_MAX_BACKENDS)
			return DROP_NO_SERVICE;
		__u32 i = (bpf_get_prandom_u32() % count) + 1;

		backend_id = first;
		if (i > 1) {
			key.slot = (__u16)(base + i);
			struct lb4_service *slot = bpf_map_lookup_elem(&pn_lb4_services, &key);

			if (!slot)
				return DROP_NO_SERVICE;
			backend_id = slot->backend_id;
		}
		be = lb4_lookup_backend(backend_id);
		if (!be)
			return DROP_NO_SERVICE;
		struct ct4_entry fresh = {.backend_id = backend_id, .rev_nat_index = rev};

		if (ct4_create(&ck, &fresh) < 0)
			return DROP_CT_CREATE_FAILED;
		ct = ct4_lookup(&ck);
		lb4_count(rev, len, 1, 0);
	}
	if (ct)
		ct4_account(ct, len);

	__be32 baddr = be->address;
	__be16 bport = be->port;
	bool hairpin = baddr == t.saddr;
	__be32 saddr = hairpin ? LB4_LOOPBACK_ADDR : t.saddr;

	/* The reply's tuple, so the reply finds its service by its own addresses and ports. An
	 * entry lost to LRU eviction, or left by an earlier flow with the same tuple to another
	 * service, is (re)written by the next forward packet. */
	struct ct4_key rk = {.saddr = baddr, .daddr = saddr, .sport = bport, .dport = t.sport, .proto = t.proto, .dir = CT_REPLY};
	struct ct4_entry *reply = ct4_lookup(&rk);

	if (!reply || reply->rev_nat_index != rev || reply->vip != t.daddr || reply->vport != t.dport) {
		struct ct4_entry re = {
			.backend_id = backend_id,
			.rev_nat_index = rev,
			.client_addr = t.saddr,
			.vip = t.daddr,
			.vport = t.dport,
			.flags = hairpin ? CT_F_LOOPBACK : 0,
		};

		if (ct4_create(&rk, &re) < 0)
			return DROP_CT_CREATE_FAILED;
	}

	ret = lb4_rewrite_addr(skb, &t, IPV4_DADDR_OFF, t.daddr, baddr);
	if (ret < 0)
		return ret;
	ret = lb4_rewrite_port(skb, &t, 2, t.dport, bport);
	if (ret < 0)
		return ret;
	if (hairpin) {
		ret = lb4_rewrite_addr(skb, &t, IPV4_SADDR_OFF, t.saddr, saddr);
		if (ret < 0)
			return ret;
	}
	/* For the trace event (pn monitor shows the service a packet was sent to). */
	skb->cb[PN_CB_SVC_ADDR] = t.daddr;
	skb->cb[PN_CB_SVC_PORT] = (PN_CB_SVC_MAGIC << 16) | (__u32)t.dport;
	return 1;
}

/* Reply path: a packet whose tuple is a CT_REPLY entry gets its source rewritten back to the
 * service's VIP:port (and, for a hairpin flow, its destination back to the client), so the
 * client's socket only ever sees the VIP. The service gone meanwhile → drop rather than let the
 * backend's own address reach the client. */
static __always_inline int lb4_rev_xlate(struct __sk_buff *skb)
{
	if (!lb4_enabled())
		return 0;
	struct lb4_tuple t = {};
	int ret = lb4_extract(skb, &t);

	if (ret <= 0)
		return ret;
	struct ct4_key rk = {.saddr = t.saddr, .daddr = t.daddr, .sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = CT_REPLY};
	struct ct4_entry *ct = ct4_lookup(&rk);

	if (!ct)
		return 0;
	__be32 vip = ct->vip;
	__be16 vport = ct->vport;
	__be32 client = ct->client_addr;
	__u32 rev = ct->rev_nat_index;
	bool loopback = ct->flags & CT_F_LOOPBACK;
	struct lb4_key key = {.address = vip, .dport = vport, .proto = t.proto};
	struct lb4_service *svc = bpf_map_lookup_elem(&pn_lb4_services, &key);

	if (!svc || svc->rev_nat_index != rev)
		return DROP_NO_SERVICE;
	if (t.frag)
		return DROP_FRAG_NOSUPPORT;
	ct4_account(ct, skb->len);
	lb4_count(rev, skb->len, 0, 1);

	ret = lb4_rewrite_addr(skb, &t, IPV4_SADDR_OFF, t.saddr, vip);
	if (ret < 0)
		return ret;
	ret = lb4_rewrite_port(skb, &t, 0, t.sport, vport);
	if (ret < 0)
		return ret;
	if (loopback) {
		ret = lb4_rewrite_addr(skb, &t, IPV4_DADDR_OFF, t.daddr, client);
		if (ret < 0)
			return ret;
	}
	return 1;
}

#endif
