/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF masquerade (IPv4): a pod's packet to a destination outside every pod CIDR leaves the
 * uplink with the node's address as its source (to-netdev, nat4_snat), and the reply is
 * translated back before local delivery (from-netdev, nat4_rev_snat). Cilium does the same in
 * bpf_host.c's to-netdev (handle_nat_fwd) and from-netdev.
 *
 *   pn_nonmasq  LPM trie of the destinations never masqueraded: the node's pod CIDRs, the
 *               cluster's, and every --non-masquerade-cidr (written by `pn node init`), and the
 *               other nodes' IPs (the cluster agent, `pn node peer add`).
 *   pn_snat4    LRU hash, two entries per flow, both stored the way packets carry them:
 *               NAT_DIR_OUT  key = the pod's tuple (pod → remote)          → node IP, NAT port
 *               NAT_DIR_IN   key = the reply's tuple (remote → node:NAT port) → pod IP, pod port
 *
 * Ports: each flow gets a port from [nat_port_min, nat_port_max] of pn_node_config, a range
 * `pn node init` keeps outside net.ipv4.ip_local_port_range and reserves with
 * net.ipv4.ip_local_reserved_ports, so the node's own connections never take one. A port is
 * taken by creating its IN entry with BPF_NOEXIST (atomic: two CPUs never get the same one),
 * trying NAT_TRIES random ports; the IN key holds the remote address and port, so a port is
 * unique per remote endpoint and one remote can hold a whole range of flows. ICMP echo is
 * translated by its identifier, which plays the role of the source port.
 *
 * Expiry: every entry carries the time of its last packet. An entry idle for longer than its
 * timeout is dead: lookups ignore it and the allocator takes its port over. The timeout is the
 * protocol's (nat_tcp_timeout / nat_other_timeout, seconds), shortened for TCP by the state the
 * IN entry keeps (NAT_F_TCP_*, updated by packets of both directions; Cilium's conntrack does
 * the same with CT_SYN_TIMEOUT and CT_CLOSE_TIMEOUT): NAT_TCP_SYN_TIMEOUT while only SYNs were
 * seen (a SYN to a dead host), NAT_TCP_CLOSE_TIMEOUT once a FIN or RST was seen in either
 * direction, so a closed connection frees its port in seconds. A SYN on a closing entry is the
 * pod reusing its tuple: a new handshake. A flow is live while its IN entry is: the OUT entry
 * only finds it. The map being LRU bounds the memory: a full map evicts the least recently used
 * entries one by one, so an OUT entry may go without its IN one (the flow takes a new port on
 * its next packet) or an IN entry without its OUT one: such an orphan IN entry (older than
 * NAT_ORPHAN_GRACE_NS, its OUT gone or pointing elsewhere) is a free port for the allocator.
 * Not tracked: ICMP errors about a masqueraded flow (they reach the node's stack
 * untranslated), and fragments after the first. IPv6 is nat6.h, on pn_snat6.
 *
 * Helpers return 0 (nothing to do), 1 (translated) or a negative DROP_*.
 */
#ifndef PN_NAT_H
#define PN_NAT_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "l3.h"
#include "node_config.h"

#ifndef IPPROTO_TCP
#define IPPROTO_TCP 6
#endif
#ifndef IPPROTO_UDP
#define IPPROTO_UDP 17
#endif
#ifndef IPPROTO_ICMP
#define IPPROTO_ICMP 1
#endif

#define NAT_DIR_OUT 1
#define NAT_DIR_IN 2
#define NAT_TRIES 32 /* random ports tried before DROP_NAT_NO_MAPPING */

/* TCP state of a flow, in its IN entry's flags (the OUT entry's stay 0). 0: established (or an
 * entry from before the states, which gets nat_tcp_timeout as it did). */
#define NAT_F_TCP_SYN 0x1     /* only SYNs seen so far: lives NAT_TCP_SYN_TIMEOUT */
#define NAT_F_TCP_CLOSING 0x2 /* a FIN or RST seen, either direction: lives NAT_TCP_CLOSE_TIMEOUT */

/* Seconds, as Cilium's CT_SYN_TIMEOUT and CT_CLOSE_TIMEOUT; never longer than nat_tcp_timeout. */
#define NAT_TCP_SYN_TIMEOUT 60
#define NAT_TCP_CLOSE_TIMEOUT 10

/* An IN entry this young is never an orphan: its OUT entry may be being written by another CPU. */
#define NAT_ORPHAN_GRACE_NS 1000000000ULL

#define NAT_TCP_FIN 0x01
#define NAT_TCP_SYN 0x02
#define NAT_TCP_RST 0x04
#define NAT_TCP_ACK 0x10

#define ICMP_ECHOREPLY_PN 0
#define ICMP_ECHO_PN 8

/* Contract with src/datapath/bpf/maps/nat.ts (checked against BTF by a unit test). */
struct nat4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport; /* ICMP echo request: the identifier; echo reply: 0 */
	__be16 dport; /* ICMP echo request: 0; echo reply: the identifier */
	__u8 proto;
	__u8 dir;     /* NAT_DIR_OUT / NAT_DIR_IN */
	__u16 pad;
};

struct nat4_entry {
	__u64 last_seen_ns; /* bpf_ktime_get_ns() of the entry's last packet */
	__u64 packets;      /* packets translated by this entry */
	__be32 to_addr;     /* OUT: the node IP; IN: the pod IP */
	__be16 to_port;     /* OUT: the NAT port; IN: the pod's port (or echo identifier) */
	__u8 flags;         /* IN, TCP: NAT_F_TCP_*; else 0 */
	__u8 pad;
};

/* 131,072 flows (two entries each); Cilium's SNAT map defaults to 524,288 entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct nat4_key);
	__type(value, struct nat4_entry);
} pn_snat4 PN_MAP;

/* Same key shape as pn_ipcache: prefixlen = 32 (family + pad) + the IP prefix length. */
struct nonmasq_key {
	__u32 prefixlen;
	__u8 family; /* NONMASQ_FAMILY_* (pn's family codes, as in pn_ipcache) */
	__u8 pad[3];
	__u8 addr[16];
};

#define NONMASQ_FAMILY_IPV4 1
#define NONMASQ_FAMILY_IPV6 2

/* Who wrote an entry (the datapath reads none of it: any match means "leave alone"). The
 * cluster's node addresses are here so a reply to another node (a NodePort backend answering
 * the node that SNATed its client) keeps the pod's address, as Cilium never masquerades to a
 * remote-node identity. */
#define NONMASQ_F_NODE 1 /* another node's IP, from the cluster store (src/cluster/converge.ts) */
#define NONMASQ_F_PEER 2 /* a peer's node IP, from `pn node peer add` (src/node/peer.ts) */

struct nonmasq_info {
	__u32 flags; /* 0: the node's configuration (pod CIDRs, --non-masquerade-cidr); else NONMASQ_F_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct nonmasq_key);
	__type(value, struct nonmasq_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_nonmasq PN_MAP;

struct nat4_tuple {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags; /* TCP: the header's flags byte (FIN, SYN, RST, ACK, ...); else 0 */
	__u32 l4off;
};

/* The NAT settings when the node has an SNAT address (NodePort to a remote backend uses them
 * too); with `masq`, only when BPF masquerade is on. */
static __always_inline const struct node_config *nat_config_for(bool masq)
{
	const struct node_config *cfg = node_config();

	if (!cfg || !cfg->nat_ip4 || (masq && !(cfg->flags & NODE_CFG_MASQ)))
		return NULL;
	return cfg;
}

static __always_inline const struct node_config *nat_config(void)
{
	return nat_config_for(true);
}

static __always_inline bool nat4_nonmasq(__be32 daddr)
{
	struct nonmasq_key key = {.prefixlen = 32 + 32, .family = NONMASQ_FAMILY_IPV4};

	__builtin_memcpy(key.addr, &daddr, 4);
	return bpf_map_lookup_elem(&pn_nonmasq, &key) != NULL;
}

/* 1 with `t` filled for TCP, UDP and ICMP echo (request when `out`, reply otherwise); 0 for
 * anything else; DROP_FRAG_NOSUPPORT for a fragment after the first (no ports to translate). */
static __always_inline int nat4_extract(struct __sk_buff *skb, struct iphdr *ip4, struct nat4_tuple *t, bool out)
{
	__u8 proto = ip4->protocol;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP)
		return 0;
	if (ip4->frag_off & bpf_htons(0x1fff))
		return DROP_FRAG_NOSUPPORT;
	t->saddr = ip4->saddr;
	t->daddr = ip4->daddr;
	t->proto = proto;
	t->l4off = ETH_HLEN + ip4->ihl * 4;
	if (proto == IPPROTO_ICMP) {
		__u8 hdr[8]; /* type, code, checksum, identifier, sequence */

		if (bpf_skb_load_bytes(skb, t->l4off, hdr, sizeof(hdr)) < 0)
			return 0;
		if (hdr[0] != (out ? ICMP_ECHO_PN : ICMP_ECHOREPLY_PN))
			return 0;
		__be16 id = *(__be16 *)&hdr[4];

		t->sport = out ? id : 0;
		t->dport = out ? 0 : id;
		return 1;
	}
	__u8 l4[14]; /* ports; TCP: then sequence, acknowledgement, data offset and flags */

	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, t->l4off, l4, 14) < 0)
			return 0;
		t->tcp_flags = l4[13];
	} else if (bpf_skb_load_bytes(skb, t->l4off, l4, 4) < 0) {
		return 0;
	}
	__builtin_memcpy(&t->sport, &l4[0], 2);
	__builtin_memcpy(&t->dport, &l4[2], 2);
	return 1;
}

/* Nanoseconds an entry of protocol `proto` in state `flags` lives unused. */
static __always_inline __u64 nat_timeout_ns(__u8 proto, __u8 flags, const struct node_config *cfg)
{
	__u64 timeout = proto == IPPROTO_TCP ? cfg->nat_tcp_timeout : cfg->nat_other_timeout;

	if (proto == IPPROTO_TCP && (flags & (NAT_F_TCP_SYN | NAT_F_TCP_CLOSING))) {
		__u64 short_timeout = flags & NAT_F_TCP_CLOSING ? NAT_TCP_CLOSE_TIMEOUT : NAT_TCP_SYN_TIMEOUT;

		if (short_timeout < timeout)
			timeout = short_timeout;
	}
	return timeout * 1000000000ULL;
}

/* Idle for longer than `timeout_ns` at `now`. An entry another CPU refreshed after this one read
 * `now` has last_seen_ns > now: it is fresh, never "idle for 2^64 ns" (which made a live flow's
 * port look free to the allocator: two concurrent flows could share it). */
static __always_inline bool nat_expired(__u64 last_seen_ns, __u64 now, __u64 timeout_ns)
{
	return now > last_seen_ns && now - last_seen_ns > timeout_ns;
}

/* The TCP state after a packet with header flags `tcp` (either direction) on a flow in `flags`;
 * a new flow starts from NAT_F_TCP_SYN (and is established at once if its first packet is no SYN:
 * a connection picked up in the middle). */
static __always_inline __u8 nat_tcp_next(__u8 flags, __u8 tcp)
{
	if ((tcp & (NAT_TCP_SYN | NAT_TCP_ACK | NAT_TCP_FIN | NAT_TCP_RST)) == NAT_TCP_SYN)
		return flags & NAT_F_TCP_CLOSING ? NAT_F_TCP_SYN : flags; /* a SYN reopens a closing tuple */
	if (tcp & (NAT_TCP_FIN | NAT_TCP_RST))
		flags |= NAT_F_TCP_CLOSING;
	if (!(tcp & NAT_TCP_SYN))
		flags &= ~NAT_F_TCP_SYN;
	return flags;
}

static __always_inline bool nat4_stale(const struct nat4_entry *e, __u8 proto, const struct node_config *cfg, __u64 now)
{
	return nat_expired(e->last_seen_ns, now, nat_timeout_ns(proto, e->flags, cfg));
}

/* An IN entry (reply key `rk`) whose OUT entry is gone or took another port: the LRU evicted the
 * OUT half of its flow, and no packet of the pod will find this port again. */
static __always_inline bool nat4_orphan(const struct nat4_entry *in, const struct nat4_key *rk, const struct node_config *cfg, __u64 now)
{
	if (in->last_seen_ns + NAT_ORPHAN_GRACE_NS > now)
		return false; /* young, or refreshed by another CPU since `now` was read */
	struct nat4_key ok = {.saddr = in->to_addr, .daddr = rk->saddr, .sport = in->to_port, .dport = rk->sport, .proto = rk->proto, .dir = NAT_DIR_OUT};
	struct nat4_entry *out = bpf_map_lookup_elem(&pn_snat4, &ok);

	return !out || out->to_addr != cfg->nat_ip4 || out->to_port != rk->dport;
}

/* Rewrite one address and its port (or echo identifier) with the checksums patched: the IP
 * header's, and for TCP/UDP the L4 pseudo-header's; ICMP's checksum covers no addresses. */
static __always_inline int nat4_rewrite(struct __sk_buff *skb, const struct nat4_tuple *t, __u32 addr_off, __be32 old_addr,
					__be32 new_addr, __u32 port_off, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = t->l4off + (t->proto == IPPROTO_TCP ? 16 : t->proto == IPPROTO_UDP ? 6 : 2);
	__u64 mangled = t->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (old_addr != new_addr) {
		if (t->proto != IPPROTO_ICMP &&
		    bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, mangled | BPF_F_PSEUDO_HDR | sizeof(new_addr)) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old_addr, new_addr, sizeof(new_addr)) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0) < 0)
			return DROP_WRITE_ERROR;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)) < 0)
			return DROP_WRITE_ERROR;
		if (bpf_skb_store_bytes(skb, t->l4off + port_off, &new_port, sizeof(new_port), 0) < 0)
			return DROP_WRITE_ERROR;
	}
	return 0;
}

#define NAT4_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define NAT4_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))

/* Take a free NAT port for the flow `t` (its IN entry is created here, in TCP state `state`); 0
 * when none is free. */
static __always_inline __be16 nat4_alloc(const struct nat4_tuple *t, const struct node_config *cfg, __u64 now, __u8 state)
{
	__u32 min = cfg->nat_port_min, max = cfg->nat_port_max;

	if (!min || max < min)
		return 0;
	__u32 range = max - min + 1;
	struct nat4_key rk = {.saddr = t->daddr, .daddr = cfg->nat_ip4, .sport = t->dport, .proto = t->proto, .dir = NAT_DIR_IN};
	struct nat4_entry in = {.last_seen_ns = now, .to_addr = t->saddr, .to_port = t->sport, .flags = state};

	for (int i = 0; i < NAT_TRIES; i++) {
		__be16 port = bpf_htons((__u16)(min + bpf_get_prandom_u32() % range));

		rk.dport = port;
		if (bpf_map_update_elem(&pn_snat4, &rk, &in, BPF_NOEXIST) == 0)
			return port;
		/* Taken: by a dead flow or an orphan, whose port is reclaimed; else try another. */
		struct nat4_entry *old = bpf_map_lookup_elem(&pn_snat4, &rk);

		if (old && (nat4_stale(old, t->proto, cfg, now) || nat4_orphan(old, &rk, cfg, now)) &&
		    bpf_map_update_elem(&pn_snat4, &rk, &in, BPF_ANY) == 0)
			return port;
	}
	return 0;
}

/* Record the translation for the trace event (pn monitor): the address and port before it. */
static __always_inline void nat4_note(struct __sk_buff *skb, __u32 magic, __be32 addr, __be16 port)
{
	skb->cb[PN_CB_SVC_ADDR] = addr;
	skb->cb[PN_CB_SVC_PORT] = (magic << 16) | (__u32)port;
}

/* Translate the source of `ip4`'s flow to the node IP and a NAT port (the flow's, or a new one). */
static __always_inline int nat4_snat_flow(struct __sk_buff *skb, struct iphdr *ip4, const struct node_config *cfg)
{
	struct nat4_tuple t = {};
	int ret = nat4_extract(skb, ip4, &t, true);

	if (ret <= 0)
		return ret;
	__u64 now = bpf_ktime_get_ns();
	__be32 nat_ip = cfg->nat_ip4;
	struct nat4_key ok = {.saddr = t.saddr, .daddr = t.daddr, .sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = NAT_DIR_OUT};
	struct nat4_entry *e = bpf_map_lookup_elem(&pn_snat4, &ok);
	__be16 port = 0;

	if (e && e->to_addr == nat_ip) {
		/* The reply side must still be this flow's (not evicted, not reclaimed) and alive. */
		struct nat4_key rk = {.saddr = t.daddr, .daddr = nat_ip, .sport = t.dport, .dport = e->to_port, .proto = t.proto, .dir = NAT_DIR_IN};
		struct nat4_entry *r = bpf_map_lookup_elem(&pn_snat4, &rk);

		if (r && r->to_addr == t.saddr && r->to_port == t.sport && !nat4_stale(r, t.proto, cfg, now)) {
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
		port = nat4_alloc(&t, cfg, now, t.proto == IPPROTO_TCP ? nat_tcp_next(NAT_F_TCP_SYN, t.tcp_flags) : 0);
		if (!port)
			return DROP_NAT_NO_MAPPING;
		struct nat4_entry fresh = {.last_seen_ns = now, .packets = 1, .to_addr = nat_ip, .to_port = port};

		if (bpf_map_update_elem(&pn_snat4, &ok, &fresh, BPF_ANY) < 0)
			return DROP_NAT_NO_MAPPING;
	}
	ret = nat4_rewrite(skb, &t, NAT4_SADDR_OFF, t.saddr, nat_ip, t.proto == IPPROTO_ICMP ? 4 : 0, t.sport, port);
	if (ret < 0)
		return ret;
	nat4_note(skb, PN_CB_SNAT_MAGIC, t.saddr, t.sport);
	return 1;
}

/* to-netdev: masquerade a local pod's packet to a destination outside pn_nonmasq. */
static __always_inline int nat4_snat(struct __sk_buff *skb)
{
	const struct node_config *cfg = nat_config();

	if (!cfg)
		return 0;
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4)
		return 0; /* not ours to judge: the node's own traffic leaves untouched */
	struct endpoint_info *ep = lookup_ip4_endpoint(ip4->saddr);

	if (!ep || (ep->flags & ENDPOINT_F_HOST) || nat4_nonmasq(ip4->daddr))
		return 0;
	return nat4_snat_flow(skb, ip4, cfg);
}

/* from-netdev: a reply to a masqueraded flow gets the pod's address and port back (and a reply
 * to a NodePort flow SNATed to a remote backend its client's: nodeport.h). */
static __always_inline int nat4_rev_snat(struct __sk_buff *skb)
{
	const struct node_config *cfg = nat_config_for(false);

	if (!cfg)
		return 0;
	struct iphdr *ip4 = ipv4_hdr(skb);

	if (!ip4 || ip4->daddr != cfg->nat_ip4)
		return 0;
	struct nat4_tuple t = {};
	int ret = nat4_extract(skb, ip4, &t, false);

	if (ret <= 0)
		return 0; /* the node's own traffic: the stack judges it */
	struct nat4_key rk = {.saddr = t.saddr, .daddr = t.daddr, .sport = t.sport, .dport = t.dport, .proto = t.proto, .dir = NAT_DIR_IN};
	struct nat4_entry *e = bpf_map_lookup_elem(&pn_snat4, &rk);
	__u64 now = bpf_ktime_get_ns();

	if (!e || nat4_stale(e, t.proto, cfg, now))
		return 0;
	e->last_seen_ns = now;
	if (t.proto == IPPROTO_TCP) {
		__u8 state = nat_tcp_next(e->flags, t.tcp_flags);

		if (state != e->flags)
			e->flags = state;
	}
	__sync_fetch_and_add(&e->packets, 1);
	__be32 pod = e->to_addr;
	__be16 pod_port = e->to_port;

	ret = nat4_rewrite(skb, &t, NAT4_DADDR_OFF, t.daddr, pod, t.proto == IPPROTO_ICMP ? 4 : 2, t.dport, pod_port);
	if (ret < 0)
		return ret;
	nat4_note(skb, PN_CB_RNAT_MAGIC, t.daddr, t.dport);
	return 1;
}

#endif
