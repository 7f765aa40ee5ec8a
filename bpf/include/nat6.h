/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF masquerade, IPv6: nat.h's design for a dual-stack node. A local pod's packet to an IPv6
 * destination outside pn_nonmasq leaves the uplink with the node's global IPv6 address
 * (pn_node_config.nat_ip6) as its source (to-netdev, nat6_snat), and the reply gets the pod's
 * address and port back before local delivery (from-netdev, nat6_rev_snat). Cilium's snat_v6
 * does the same on its own SNAT map.
 *
 *   pn_snat6   LRU hash, two entries per flow as in pn_snat4 (OUT keyed by the pod's tuple, IN
 *              by the reply's), with 16-byte addresses.
 *   pn_nonmasq shared with IPv4: its IPv6 prefixes (the node's IPv6 pod CIDR, IPv6
 *              --non-masquerade-cidr) are the destinations left alone.
 *
 * Ports come from the same [nat_port_min, nat_port_max], taken the same way (BPF_NOEXIST on the
 * IN entry, NAT_TRIES random tries, the port of a stale entry or an orphan IN entry reclaimed),
 * and entries expire the same way, TCP ones by the state kept in the IN entry (NAT_F_TCP_*: a
 * SYN-only flow lives NAT_TCP_SYN_TIMEOUT, a closing one NAT_TCP_CLOSE_TIMEOUT; nat.h). The node's own IPv6 sockets
 * never take one: the kernel keeps one ip_local_port_range and one ip_local_reserved_ports for
 * both families (net.ipv4.*), and `pn node init` reserves the range there. ICMPv6 echo is
 * translated by its identifier.
 *
 * Differences from IPv4: no header checksum; the ICMPv6 checksum covers the pseudo-header, so an
 * address change patches it like TCP's and UDP's. Only packets whose first next-header is TCP,
 * UDP or ICMPv6 are translated: a fragment is dropped (DROP_FRAG_NOSUPPORT, as IPv4's later
 * fragments are), other extension headers pass untranslated. Link-local and multicast
 * destinations are never masqueraded (they are never routed). Not tracked, as in IPv4: ICMPv6
 * errors about a masqueraded flow (Packet Too Big included) reach the node's stack untranslated.
 *
 * Helpers return 0 (nothing to do), 1 (translated) or a negative DROP_*.
 */
#ifndef PN_NAT6_H
#define PN_NAT6_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "ipv6.h"
#include "nat.h"
#include "node_config.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#ifndef IPPROTO_FRAGMENT
#define IPPROTO_FRAGMENT 44
#endif

#define ICMPV6_ECHO_REQUEST_PN 128
#define ICMPV6_ECHO_REPLY_PN 129

#define NAT6_L4OFF (ETH_HLEN + sizeof(struct ipv6hdr))
#define NAT6_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct ipv6hdr, saddr))
#define NAT6_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct ipv6hdr, daddr))

/* Contract with src/datapath/bpf/maps/nat.ts (checked against BTF by a unit test). */
struct nat6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport; /* ICMPv6 echo request: the identifier; echo reply: 0 */
	__be16 dport; /* ICMPv6 echo request: 0; echo reply: the identifier */
	__u8 proto;
	__u8 dir;     /* NAT_DIR_OUT / NAT_DIR_IN */
	__u16 pad;
};

struct nat6_entry {
	__u64 last_seen_ns; /* bpf_ktime_get_ns() of the entry's last packet */
	__u64 packets;      /* packets translated by this entry */
	__u8 to_addr[16];   /* OUT: the node's IPv6 address; IN: the pod's */
	__be16 to_port;     /* OUT: the NAT port; IN: the pod's port (or echo identifier) */
	__u8 flags;         /* IN, TCP: NAT_F_TCP_* (nat.h); else 0 */
	__u8 pad[5];
};

/* 65,536 flows (two entries each): half of pn_snat4, since most pod traffic to the outside is
 * IPv4 and an entry here is twice as large (80 bytes of key and value). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct nat6_key);
	__type(value, struct nat6_entry);
} pn_snat6 PN_MAP;

struct nat6_tuple {
	__u32 saddr[4];
	__u32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags; /* TCP: the header's flags byte; else 0 */
};

/* The settings when BPF masquerade is on and the node has an IPv6 SNAT address. */
static __always_inline const struct node_config *nat6_config(void)
{
	const struct node_config *cfg = node_config();

	if (!cfg || !(cfg->flags & NODE_CFG_MASQ) || ipv6_is_zero(cfg->nat_ip6))
		return NULL;
	return cfg;
}

static __always_inline bool nat6_nonmasq(const void *daddr)
{
	struct nonmasq_key key = {.prefixlen = 32 + 128, .family = NONMASQ_FAMILY_IPV6};

	__builtin_memcpy(key.addr, daddr, 16);
	return bpf_map_lookup_elem(&pn_nonmasq, &key) != NULL;
}

/* 1 with `t` filled for TCP, UDP and ICMPv6 echo (request when `out`, reply otherwise); 0 for
 * anything else; DROP_FRAG_NOSUPPORT for a fragment (no ports to translate). */
static __always_inline int nat6_extract(struct __sk_buff *skb, struct ipv6hdr *ip6, struct nat6_tuple *t, bool out)
{
	__u8 proto = ip6->nexthdr;

	if (proto == IPPROTO_FRAGMENT)
		return DROP_FRAG_NOSUPPORT;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMPV6)
		return 0;
	__builtin_memcpy(t->saddr, &ip6->saddr, 16);
	__builtin_memcpy(t->daddr, &ip6->daddr, 16);
	t->proto = proto;
	if (proto == IPPROTO_ICMPV6) {
		__u8 hdr[8]; /* type, code, checksum, identifier, sequence */

		if (bpf_skb_load_bytes(skb, NAT6_L4OFF, hdr, sizeof(hdr)) < 0)
			return 0;
		if (hdr[0] != (out ? ICMPV6_ECHO_REQUEST_PN : ICMPV6_ECHO_REPLY_PN))
			return 0;
		__be16 id = *(__be16 *)&hdr[4];

		t->sport = out ? id : 0;
		t->dport = out ? 0 : id;
		return 1;
	}
	__u8 l4[14]; /* ports; TCP: then sequence, acknowledgement, data offset and flags */

	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, NAT6_L4OFF, l4, 14) < 0)
			return 0;
		t->tcp_flags = l4[13];
	} else if (bpf_skb_load_bytes(skb, NAT6_L4OFF, l4, 4) < 0) {
		return 0;
	}
	__builtin_memcpy(&t->sport, &l4[0], 2);
	__builtin_memcpy(&t->dport, &l4[2], 2);
	return 1;
}

static __always_inline bool nat6_stale(const struct nat6_entry *e, __u8 proto, const struct node_config *cfg, __u64 now)
{
	return nat_expired(e->last_seen_ns, now, nat_timeout_ns(proto, e->flags, cfg));
}

/* An IN entry (reply key `rk`) whose OUT entry is gone or took another port (nat4_orphan). */
static __always_inline bool nat6_orphan(const struct nat6_entry *in, const struct nat6_key *rk, const struct node_config *cfg, __u64 now)
{
	if (in->last_seen_ns + NAT_ORPHAN_GRACE_NS > now)
		return false; /* young, or refreshed by another CPU since `now` was read */
	struct nat6_key ok = {.sport = in->to_port, .dport = rk->sport, .proto = rk->proto, .dir = NAT_DIR_OUT};

	__builtin_memcpy(ok.saddr, in->to_addr, 16);
	__builtin_memcpy(ok.daddr, rk->saddr, 16);
	struct nat6_entry *out = bpf_map_lookup_elem(&pn_snat6, &ok);

	return !out || !ipv6_equal(out->to_addr, cfg->nat_ip6) || out->to_port != rk->dport;
}

/* Rewrite one address and its port (or echo identifier). TCP, UDP and ICMPv6 checksums all
 * cover the pseudo-header: the address change is applied as a checksum difference of the 16
 * bytes (BPF_F_PSEUDO_HDR keeps a CHECKSUM_PARTIAL skb right). */
static __always_inline int nat6_rewrite(struct __sk_buff *skb, __u8 proto, __u32 addr_off, __u32 *old_addr,
					__u32 *new_addr, __u32 port_off, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = NAT6_L4OFF + (proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (!ipv6_equal(old_addr, new_addr)) {
		__s64 diff = bpf_csum_diff(old_addr, 16, new_addr, 16, 0);

		if (diff < 0)
			return DROP_WRITE_ERROR;
		if (bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, mangled | BPF_F_PSEUDO_HDR) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_skb_store_bytes(skb, addr_off, new_addr, 16, 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_skb_store_bytes(skb, NAT6_L4OFF + port_off, &new_port, sizeof(new_port), 0) < 0)
			return DROP_WRITE_ERROR;
	}
	return 0;
}

/* Take a free NAT port for the flow `t` (its IN entry is created here, in TCP state `state`); 0
 * when none is free. */
static __always_inline __be16 nat6_alloc(const struct nat6_tuple *t, const struct node_config *cfg, __u64 now, __u8 state)
{
	__u32 min = cfg->nat_port_min, max = cfg->nat_port_max;

	if (!min || max < min)
		return 0;
	__u32 range = max - min + 1;
	struct nat6_key rk = {.sport = t->dport, .proto = t->proto, .dir = NAT_DIR_IN};
	struct nat6_entry in = {.last_seen_ns = now, .to_port = t->sport, .flags = state};

	__builtin_memcpy(rk.saddr, t->daddr, 16);
	__builtin_memcpy(rk.daddr, cfg->nat_ip6, 16);
	__builtin_memcpy(in.to_addr, t->saddr, 16);
	for (int i = 0; i < NAT_TRIES; i++) {
		__be16 port = bpf_htons((__u16)(min + bpf_get_prandom_u32() % range));

		rk.dport = port;
		if (bpf_map_update_elem(&pn_snat6, &rk, &in, BPF_NOEXIST) == 0)
			return port;
		/* Taken: by a dead flow or an orphan, whose port is reclaimed; else try another. */
		struct nat6_entry *old = bpf_map_lookup_elem(&pn_snat6, &rk);

		if (old && (nat6_stale(old, t->proto, cfg, now) || nat6_orphan(old, &rk, cfg, now)) &&
		    bpf_map_update_elem(&pn_snat6, &rk, &in, BPF_ANY) == 0)
			return port;
	}
	return 0;
}

/* For the trace event (pn monitor): the address and port before the translation (common.h). */
static __always_inline void nat6_note(struct __sk_buff *skb, __u32 magic, const __u32 *addr, __be16 port)
{
	pn_cb_store(skb, PN_CB_SVC_ADDR, addr[0]);
	pn_cb_store(skb, PN_CB_SRC_ID, addr[1]);
	pn_cb_store(skb, PN_CB_DST_ID, addr[2]);
	pn_cb_store(skb, PN_CB_ID_CHECK, addr[3]);
	pn_cb_store(skb, PN_CB_SVC_PORT, (magic << 16) | (__u32)port);
}

/* Translate the source of `ip6`'s flow to the node's IPv6 address and a NAT port. */
static __always_inline int nat6_snat_flow(struct __sk_buff *skb, struct ipv6hdr *ip6, const struct node_config *cfg)
{
	struct nat6_tuple t = {};
	int ret = nat6_extract(skb, ip6, &t, true);

	if (ret <= 0)
		return ret;
	__u64 now = bpf_ktime_get_ns();
	__u32 nat_ip[4];
	struct nat6_key ok = {.sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = NAT_DIR_OUT};

	__builtin_memcpy(nat_ip, cfg->nat_ip6, 16);
	__builtin_memcpy(ok.saddr, t.saddr, 16);
	__builtin_memcpy(ok.daddr, t.daddr, 16);
	struct nat6_entry *e = bpf_map_lookup_elem(&pn_snat6, &ok);
	__be16 port = 0;

	if (e && ipv6_equal(e->to_addr, nat_ip)) {
		/* The reply side must still be this flow's (not evicted, not reclaimed) and alive. */
		struct nat6_key rk = {.sport = t.dport, .dport = e->to_port, .proto = t.proto, .dir = NAT_DIR_IN};

		__builtin_memcpy(rk.saddr, t.daddr, 16);
		__builtin_memcpy(rk.daddr, nat_ip, 16);
		struct nat6_entry *r = bpf_map_lookup_elem(&pn_snat6, &rk);

		if (r && ipv6_equal(r->to_addr, t.saddr) && r->to_port == t.sport && !nat6_stale(r, t.proto, cfg, now)) {
			port = e->to_port;
			e->last_seen_ns = now;
			r->last_seen_ns = now;
			if (t.proto == IPPROTO_TCP) {
				__u8 state = nat_tcp_next(r->flags, t.tcp_flags);

				if (state != r->flags)
					r->flags = state;
			}
			__sync_fetch_and_add(&e->packets, 1);
		}
	}
	if (!port) {
		port = nat6_alloc(&t, cfg, now, t.proto == IPPROTO_TCP ? nat_tcp_next(NAT_F_TCP_SYN, t.tcp_flags) : 0);
		if (!port)
			return DROP_NAT_NO_MAPPING;
		struct nat6_entry fresh = {.last_seen_ns = now, .packets = 1, .to_port = port};

		__builtin_memcpy(fresh.to_addr, nat_ip, 16);
		if (bpf_map_update_elem(&pn_snat6, &ok, &fresh, BPF_ANY) < 0)
			return DROP_NAT_NO_MAPPING;
	}
	ret = nat6_rewrite(skb, t.proto, NAT6_SADDR_OFF, t.saddr, nat_ip, t.proto == IPPROTO_ICMPV6 ? 4 : 0, t.sport, port);
	if (ret < 0)
		return ret;
	nat6_note(skb, PN_CB_SNAT6_MAGIC, t.saddr, t.sport);
	return 1;
}

/* to-netdev: masquerade a local pod's IPv6 packet to a destination outside pn_nonmasq. */
static __always_inline int nat6_snat(struct __sk_buff *skb)
{
	const struct node_config *cfg = nat6_config();

	if (!cfg)
		return 0;
	struct ipv6hdr *ip6 = ipv6_hdr(skb);

	if (!ip6)
		return 0; /* not ours to judge: the node's own traffic leaves untouched */
	if (ipv6_is_multicast(&ip6->daddr) || ipv6_is_link_local(&ip6->daddr))
		return 0;
	struct endpoint_info *ep = lookup_ip6_endpoint(&ip6->saddr);

	if (!ep || (ep->flags & ENDPOINT_F_HOST) || nat6_nonmasq(&ip6->daddr))
		return 0;
	return nat6_snat_flow(skb, ip6, cfg);
}

/* from-netdev: a reply to a masqueraded IPv6 flow gets the pod's address and port back. */
static __always_inline int nat6_rev_snat(struct __sk_buff *skb)
{
	const struct node_config *cfg = nat6_config();

	if (!cfg)
		return 0;
	struct ipv6hdr *ip6 = ipv6_hdr(skb);

	if (!ip6 || !ipv6_equal(&ip6->daddr, cfg->nat_ip6))
		return 0;
	struct nat6_tuple t = {};
	int ret = nat6_extract(skb, ip6, &t, false);

	if (ret <= 0)
		return 0; /* the node's own traffic (fragments included): the stack judges it */
	struct nat6_key rk = {.sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = NAT_DIR_IN};

	__builtin_memcpy(rk.saddr, t.saddr, 16);
	__builtin_memcpy(rk.daddr, t.daddr, 16);
	struct nat6_entry *e = bpf_map_lookup_elem(&pn_snat6, &rk);
	__u64 now = bpf_ktime_get_ns();

	if (!e || nat6_stale(e, t.proto, cfg, now))
		return 0;
	e->last_seen_ns = now;
	if (t.proto == IPPROTO_TCP) {
		__u8 state = nat_tcp_next(e->flags, t.tcp_flags);

		if (state != e->flags)
			e->flags = state;
	}
	__sync_fetch_and_add(&e->packets, 1);
	__u32 pod[4];
	__be16 pod_port = e->to_port;

	__builtin_memcpy(pod, e->to_addr, 16);
	ret = nat6_rewrite(skb, t.proto, NAT6_DADDR_OFF, t.daddr, pod, t.proto == IPPROTO_ICMPV6 ? 4 : 2, t.dport, pod_port);
	if (ret < 0)
		return ret;
	nat6_note(skb, PN_CB_RNAT6_MAGIC, t.daddr, t.dport);
	return 1;
}

#endif
