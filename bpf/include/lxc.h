/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_lxc: what from-container needs to know about the pod behind the interface a packet came
 * in on, keyed by the host-side lxc ifindex (skb->ifindex at lxc tc ingress). This replaces
 * Cilium's per-endpoint compile-time constants (LXC_IPV4, THIS_INTERFACE_MAC).
 */
#ifndef PN_LXC_H
#define PN_LXC_H

#include "common.h"

/* Contract with src/datapath/bpf/maps/lxc.ts (checked against BTF by a unit test). */
struct lxc_key {
	__u32 ifindex;
};

struct lxc_info {
	__be32 ip4;         /* the pod's IPv4, 0 when it has none */
	__u32 endpoint_id;
	__u8 ip6[16];       /* the pod's IPv6, zero when it has none */
	__u8 mac[6];        /* the lxc (host-side) MAC: what the ARP responder answers */
	__u8 pod_mac[6];
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lxc_key);
	__type(value, struct lxc_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_lxc PN_MAP;

static __always_inline struct lxc_info *lookup_lxc(__u32 ifindex)
{
	struct lxc_key key = {.ifindex = ifindex};

	return bpf_map_lookup_elem(&pn_lxc, &key);
}

#endif
