/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pn_node_config: node-wide settings the programs read at run time (one slot), written by
 * `pn bpf load --host` / `pn node init`. Programs are compiled once per node and never per
 * device, so the uplink is data, not a compile flag (Cilium bakes NATIVE_DEV_IFINDEX into its
 * objects instead). An all-zero slot (never written) turns BPF host routing off: from-container
 * then hands non-local traffic to the stack, counted as TRACE_FIB_NOT_UPLINK.
 */
#ifndef PN_NODE_CONFIG_H
#define PN_NODE_CONFIG_H

#include "common.h"

/* Contract with src/datapath/bpf/maps/node-config.ts (checked against BTF by a unit test). */
struct node_config {
	__u32 uplink_ifindex; /* the node's uplink in its netns; 0 = not configured */
	__u32 uplink_mtu;     /* its MTU, for the packets bpf_redirect_neigh sends unchecked */
	__u32 flags;          /* NODE_CFG_MASQ 0x1; 0x2 tunnel mode (tunnel.h NODE_F_TUNNEL) */
	__u32 pad;
	/* BPF masquerade (nat.h), read when flags has NODE_CFG_MASQ. */
	__be32 nat_ip4;           /* the node's IPv4 address on the uplink: the SNAT source */
	__u16 nat_port_min;       /* SNAT port range, host order (outside ip_local_port_range) */
	__u16 nat_port_max;
	__u32 nat_tcp_timeout;    /* seconds a TCP mapping lives unused */
	__u32 nat_other_timeout;  /* seconds a UDP / ICMP echo mapping lives unused */
	__u32 tunnel_ifindex;     /* pn_vxlan in tunnel mode, else 0 */
	/* Appended after the IPv4 fields so their offsets stay (a slot of the older, 36-byte
	 * layout is replaced on load: the map is resettable in its descriptor). */
	__u8 nat_ip6[16];         /* the node's global IPv6 address on the uplink; zero = no IPv6 masquerade (nat6.h) */
};

#define NODE_CFG_MASQ 0x1 /* BPF masquerade on (to-netdev SNAT, from-netdev reverse), IPv4 and, with nat_ip6, IPv6 */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_config);
} pn_node_config PN_MAP;

static __always_inline const struct node_config *node_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pn_node_config, &zero);
}

#endif
