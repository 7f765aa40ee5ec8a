/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_ipcache: Cilium-style longest-prefix map from an IP prefix to its identity and the node
 * that hosts it: local pods, remote pods (cluster), and the CIDRs policies name. The policy
 * checks (policy.h) read the identity of a packet's peer here.
 */
#ifndef PN_IPCACHE_H
#define PN_IPCACHE_H

#include "common.h"

#define IPCACHE_F_LOCAL 1 /* the prefix is a pod on this node */
#define IPCACHE_F_CIDR 2 /* a CIDR a network policy names, with its CIDR identity (policy writer) */
#define IPCACHE_F_PEER 4 /* a peer's pod CIDR added by hand (pn node peer add); the cluster agent leaves it alone */

/* Contract with src/datapath/bpf/maps/ipcache.ts (checked against BTF by a unit test). The LPM
 * trie compares `prefixlen` bits after the prefixlen field, so family+pad (32 bits) are part
 * of every prefix: prefixlen = 32 + IP prefix length. */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

struct ipcache_info {
	__u32 identity;
	__u32 flags;        /* IPCACHE_F_* */
	__u8 node_ip[16];   /* node hosting the prefix (future tunnel endpoint) */
	__u8 node_family;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_info);
	/* LPM tries must not be preallocated (the kernel rejects the map otherwise). */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_ipcache PN_MAP;

#endif
