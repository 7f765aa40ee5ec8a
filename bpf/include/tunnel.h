/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tunnel mode (Cilium's `--tunnel=vxlan`: its encap.h helpers and its bpf_overlay.c program,
 * in the Cilium repository): pod traffic to another node travels inside VXLAN, so the
 * underlay only has to route between node IPs. pn_vxlan is a
 * collect-metadata (`external`) VXLAN device: it has no remote and no VNI of its own, the
 * program sets both per packet with bpf_skb_set_tunnel_key and redirects to its egress; the
 * kernel adds the outer Ethernet/IPv4/UDP/VXLAN headers (50 bytes) and routes to the node IP.
 *
 * Which node: pn_ipcache (ipcache.h), longest prefix: a remote pod's /32 (the cluster agent) or
 * a remote node's pod CIDR (`pn node peer add`), with the node IP as tunnel endpoint.
 * The VNI carries the sender's security identity, as in Cilium: from-overlay (the receiver)
 * reads it back into skb->cb[PN_CB_SRC_IDENTITY] for the policy code.
 */
#ifndef PN_TUNNEL_H
#define PN_TUNNEL_H

#include "common.h"
#include "drop_reasons.h"
#include "ipcache.h"
#include "node_config.h"

/* node_config.flags: the node runs in tunnel mode and tunnel_ifindex is pn_vxlan. */
#define NODE_F_TUNNEL 0x2

/* pn_ipcache families (src/datapath/bpf/maps/layout.ts FAMILY_IPV4). */
#define IPCACHE_FAMILY_IPV4 1

/* skb->cb word holding the source identity from the VNI (common.h uses words 0 and 1). */
#define PN_CB_SRC_IDENTITY 2

/* VNIs are 24 bits; identities above that cannot travel in the header. */
#define TUNNEL_VNI_MASK 0xffffffU

static __always_inline const struct ipcache_info *ipcache_lookup4(__be32 addr)
{
	struct ipcache_key key = {.prefixlen = 32 + 32, .family = IPCACHE_FAMILY_IPV4};

	__builtin_memcpy(key.addr, &addr, 4);
	return bpf_map_lookup_elem(&pn_ipcache, &key);
}

/* In tunnel mode, the pn_ipcache entry placing `addr` on another node (IPv4 underlay); NULL
 * otherwise (native routing, a local pod, an address pn does not know). */
static __always_inline const struct ipcache_info *tunnel_remote4(const struct node_config *cfg, __be32 addr)
{
	if (!cfg || !(cfg->flags & NODE_F_TUNNEL) || !cfg->tunnel_ifindex)
		return NULL;
	const struct ipcache_info *dst = ipcache_lookup4(addr);

	if (!dst || (dst->flags & IPCACHE_F_LOCAL) || dst->node_family != IPCACHE_FAMILY_IPV4)
		return NULL;
	return dst;
}

/*
 * A packet to `ip4->daddr` (from a local pod, or the node's own through pn_host): in tunnel
 * mode, and when pn_ipcache places the destination on another node, encapsulate towards that
 * node and redirect to pn_vxlan (TRACE_ENCAP). TRACE_TO_STACK when this is not a tunnel packet
 * (native routing carries on).
 */
static __always_inline int ipv4_encap_remote(struct __sk_buff *skb, const struct iphdr *ip4)
{
	const struct node_config *cfg = node_config();
	const struct ipcache_info *dst = tunnel_remote4(cfg, ip4->daddr);

	if (!cfg || !dst)
		return TRACE_TO_STACK;
	/* The sender's identity: its own pn_ipcache entry (0 until identities are written). */
	const struct ipcache_info *src = ipcache_lookup4(ip4->saddr);
	struct bpf_tunnel_key key = {};
	__u32 node_ip;

	__builtin_memcpy(&node_ip, dst->node_ip, 4);
	key.remote_ipv4 = bpf_ntohl(node_ip); /* the helper takes host byte order */
	key.tunnel_id = src ? src->identity & TUNNEL_VNI_MASK : 0;
	key.tunnel_ttl = 64;
	/* Size up to tunnel_label: the fields every kernel since 4.x knows (local_ipv4 came later
	 * and is left to the device's route lookup anyway). No outer UDP checksum, as Cilium. */
	if (bpf_skb_set_tunnel_key(skb, &key, __builtin_offsetof(struct bpf_tunnel_key, local_ipv4), BPF_F_ZERO_CSUM_TX) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_redirect(cfg->tunnel_ifindex, 0) != TC_ACT_REDIRECT)
		return DROP_REDIRECT_FAILED;
	return TRACE_ENCAP;
}

/* The node's own traffic to a remote pod (from-host): in tunnel mode the remote pod CIDRs are
 * routed into pn_host (`pn node peer add`), and the stack ARPs there for the pod itself. */
static __always_inline bool tunnel_arp_target4(__be32 addr)
{
	return tunnel_remote4(node_config(), addr) != NULL;
}

#endif
