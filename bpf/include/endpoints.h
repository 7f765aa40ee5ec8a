/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_endpoints: every local address the datapath can deliver to, keyed by IP. Written by
 * `pn bpf load --container-id` (attachEndpoint) in one `bpftool batch`; read by every program
 * that may deliver locally. Per-pod data lives here, never in compile flags, so one compiled
 * object serves every pod of the node.
 */
#ifndef PN_ENDPOINTS_H
#define PN_ENDPOINTS_H

#include "common.h"

#define ENDPOINT_KEY_IPV4 1
#define ENDPOINT_KEY_IPV6 2

/* The address is not a pod but the node itself (router IP): hand it to the stack. */
#define ENDPOINT_F_HOST 1

/* Contract with src/datapath/bpf/maps/endpoints.ts (checked against BTF by a unit test). */
struct endpoint_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes (network order), rest zero */
	__u8 family;   /* ENDPOINT_KEY_IPV4 / ENDPOINT_KEY_IPV6 */
	__u8 pad[3];
};

struct endpoint_info {
	__u32 ifindex;     /* host-side lxc ifindex (in the node netns) */
	__u32 endpoint_id;
	__u32 flags;       /* ENDPOINT_F_* */
	__u8 mac[6];       /* the pod's MAC (eth0 in the pod): new L2 destination */
	__u8 node_mac[6];  /* the lxc MAC: new L2 source, as if the node had routed it */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pn_endpoints PN_MAP;

static __always_inline struct endpoint_info *lookup_ip4_endpoint(__be32 addr)
{
	struct endpoint_key key = {.family = ENDPOINT_KEY_IPV4};

	__builtin_memcpy(key.addr, &addr, 4);
	return bpf_map_lookup_elem(&pn_endpoints, &key);
}

#endif
