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
#include "endpoints.h"
#include "fib.h"
#include "ipcache.h"
#include "node_config.h"
#include <linux/udp.h>

/* node_config.flags: the node runs in tunnel mode and tunnel_ifindex is pn_vxlan. */
#define NODE_F_TUNNEL 0x2

/* pn_ipcache families (src/datapath/bpf/maps/layout.ts FAMILY_IPV4). */
#define IPCACHE_FAMILY_IPV4 1

/* skb->cb word holding the source identity from the VNI (common.h uses words 0 and 1). */
#define PN_CB_SRC_IDENTITY 2

/* VNIs are 24 bits; identities above that cannot travel in the header. */
#define TUNNEL_VNI_MASK 0xffffffU

#define TUNNEL_PORT 8472
#define VXLAN_FLAGS_VNI 0x08000000U /* first word of the header: the I flag, nothing else */
#define TUNNEL_FAST_TCP_MAX 512 /* inner IPv4 length above which a TCP segment takes pn_vxlan (GRO) */
#define TUNNEL_OUTER_LEN (sizeof(struct iphdr) + sizeof(struct udphdr) + 8 + ETH_HLEN) /* 50 */

#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7) /* kernel 6.3+; older kernels refuse it */
#endif

struct vxlan_hdr4 {
	__be32 flags;
	__be32 vni; /* VNI << 8 */
};


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

/* The 50 bytes BPF writes in front of the inner IPv4 header (tunnel_encap4). */
struct tunnel_hdr4 {
	struct iphdr ip;
	struct udphdr udp;
	struct vxlan_hdr4 vx;
	struct ethhdr eth;
}; /* 50 bytes used; sizeof is 52 (alignment padding at the end) */
_Static_assert(__builtin_offsetof(struct tunnel_hdr4, eth) + ETH_HLEN == TUNNEL_OUTER_LEN, "tunnel_hdr4 layout");

/*
 * Sending, fast path (from-container only: a tc ingress hook, where bpf_redirect to the uplink is
 * what BPF host routing already does): the outer headers are written here and the packet goes
 * straight to the uplink, instead of through pn_vxlan's transmit (a route lookup per packet, as a
 * BPF-set tunnel key is never cached, then ip_local_out with its netfilter hooks). What the device
 * would write, pn writes: outer IPv4 from the node's uplink address (nat_ip4) with DF and TTL 64,
 * UDP to 8472 from a source port hashed from the inner flow (the same entropy range the kernel
 * uses, 32768–60999), no UDP checksum, the VNI, and the pod's own Ethernet header as the inner
 * one. The outer next hop comes from bpf_fib_lookup (output route to the tunnel endpoint, checked
 * against the MTU with the outer length) before anything is changed: when it cannot answer — no
 * route by the uplink, a neighbour that cannot be resolved, a packet too big — or the packet is a
 * GSO super-packet (its segmentation state would have to describe both header sets), TRACE_TO_STACK
 * sends the caller on to the device path, with the packet untouched.
 */
static __always_inline int tunnel_encap4(struct __sk_buff *skb, const struct node_config *cfg,
					 const struct iphdr *ip4, __be32 node_ip, __u32 vni)
{
	if (skb->gso_size || !cfg->nat_ip4 || !cfg->uplink_ifindex)
		return TRACE_TO_STACK;
	__u32 inner_len = skb->len - ETH_HLEN;
	struct bpf_fib_lookup p = {
		.family = AF_INET,
		.l4_protocol = IPPROTO_UDP,
		.tot_len = inner_len + TUNNEL_OUTER_LEN,
		.ifindex = cfg->uplink_ifindex,
		.tos = ip4->tos,
		.ipv4_src = cfg->nat_ip4,
		.ipv4_dst = node_ip,
	};
	long ret = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_OUTPUT);

	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return TRACE_TO_STACK;
	if (fib_check_egress(skb, &p, ret, cfg))
		return TRACE_TO_STACK;
	/* fib_check_egress measured the packet as it is now; unresolved neighbours skip the
	 * kernel's own MTU check, so check the outer length here. */
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH && cfg->uplink_mtu && inner_len + TUNNEL_OUTER_LEN > cfg->uplink_mtu)
		return TRACE_TO_STACK;

	struct tunnel_hdr4 h = {};

	if (bpf_skb_load_bytes(skb, 0, &h.eth, ETH_HLEN) < 0)
		return TRACE_TO_STACK;
	__u32 hash = bpf_get_hash_recalc(skb);

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tos = ip4->tos;
	h.ip.tot_len = bpf_htons(inner_len + TUNNEL_OUTER_LEN); /* outer IPv4, UDP, VXLAN, inner frame */
	h.ip.frag_off = bpf_htons(0x4000); /* DF: the pod MTU leaves room for these headers */
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_UDP;
	h.ip.saddr = cfg->nat_ip4;
	h.ip.daddr = node_ip;
	h.ip.check = csum_fold32((__u32)bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
	h.udp.source = bpf_htons(32768 + (__u16)(((__u64)hash * (60999 - 32768 + 1)) >> 32));
	h.udp.dest = bpf_htons(TUNNEL_PORT);
	h.udp.len = bpf_htons(inner_len + TUNNEL_OUTER_LEN - sizeof(struct iphdr));
	h.vx.flags = bpf_htonl(VXLAN_FLAGS_VNI);
	h.vx.vni = bpf_htonl(vni << 8);

	/* From here on the packet is the outer one: no way back to the device path. */
	if (bpf_skb_adjust_room(skb, TUNNEL_OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, TUNNEL_OUTER_LEN, 0) < 0)
		return DROP_WRITE_ERROR;
	ret = fib_redirect(skb, &p, ret);
	return ret < 0 ? ret : TRACE_ENCAP;
}

/*
 * A packet to `ip4->daddr` (from a local pod, or the node's own through pn_host): in tunnel
 * mode, and when pn_ipcache places the destination on another node, encapsulate towards that
 * node (TRACE_ENCAP): from a pod (`direct`) by tunnel_encap4 when it can, otherwise by setting
 * the tunnel key and redirecting to pn_vxlan. TRACE_TO_STACK when this is not a tunnel packet
 * (native routing carries on).
 */
static __always_inline int ipv4_encap_remote(struct __sk_buff *skb, const struct iphdr *ip4, bool direct)
{
	const struct node_config *cfg = node_config();
	const struct ipcache_info *dst = tunnel_remote4(cfg, ip4->daddr);

	if (!cfg || !dst)
		return TRACE_TO_STACK;
	/* The sender's identity: its own pn_ipcache entry (0 until identities are written). */
	const struct ipcache_info *src = ipcache_lookup4(ip4->saddr);
	__u32 vni = src ? src->identity & TUNNEL_VNI_MASK : 0;
	struct bpf_tunnel_key key = {};
	__u32 node_ip;

	__builtin_memcpy(&node_ip, dst->node_ip, 4);
	if (direct) {
		int ret = tunnel_encap4(skb, cfg, ip4, node_ip, vni);

		if (ret != TRACE_TO_STACK)
			return ret;
	}
	key.remote_ipv4 = bpf_ntohl(node_ip); /* the helper takes host byte order */
	key.tunnel_id = vni;
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

/*
 * Receiving, fast path (from-netdev, before anything else): a VXLAN packet from another node
 * for a local pod is decapsulated right there, so it skips what the device path costs (the
 * outer packet's IP input, the UDP socket lookup, vxlan_rcv and the device's GRO cell, a second
 * softirq pass) and goes on to local delivery. Cilium leaves this to the device; pn takes the
 * packets it can prove are its own tunnel's and leaves every other one to the device path,
 * which stays complete:
 *   - tunnel mode, and the outer IPv4 destination is this node's (node_config nat_ip4, the
 *     uplink address, written whenever the uplink has one);
 *   - outer IPv4 without options or fragmentation, UDP to 8472 with a zero checksum (what pn's
 *     senders write: BPF_F_ZERO_CSUM_TX; a checksummed packet would need verifying first);
 *   - a VXLAN header with only the I flag (no GBP, no GPE);
 *   - an inner Ethernet/IPv4 frame to a local pod (not the node's own addresses: those need the
 *     device's PACKET_HOST handling);
 *   - not a GRO aggregate (gso_size 0): popping headers off a super-packet would leave its
 *     segmentation state describing the outer headers.
 * The 50 bytes after the outer Ethernet header (outer IPv4, UDP, VXLAN, inner Ethernet) are
 * removed with bpf_skb_adjust_room at the MAC layer; the outer Ethernet header stays and local
 * delivery rewrites its MACs. The VNI (the sender's identity) goes to skb->cb as from-overlay
 * does. Returns 1 when decapsulated, 0 when the packet is not for the fast path (unchanged).
 */
static __always_inline int tunnel_decap4(struct __sk_buff *skb)
{
	const struct node_config *cfg = node_config();

	if (!cfg || !(cfg->flags & NODE_F_TUNNEL) || !cfg->tunnel_ifindex || !cfg->nat_ip4)
		return 0;
	if (skb->gso_size)
		return 0;
	const __u32 need = ETH_HLEN + TUNNEL_OUTER_LEN + sizeof(struct iphdr);

	if (pn_ensure_linear(skb, need) < 0)
		return 0;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + need > data_end)
		return 0;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + ETH_HLEN;
	struct udphdr *udp = (void *)(outer + 1);
	struct vxlan_hdr4 *vx = (void *)(udp + 1);
	struct ethhdr *ieth = (void *)(vx + 1);
	struct iphdr *inner = (void *)(ieth + 1);

	if (eth->h_proto != bpf_htons(ETH_P_IP) || outer->version != 4 || outer->ihl != 5 ||
	    outer->protocol != IPPROTO_UDP || (outer->frag_off & bpf_htons(0x3fff)) ||
	    outer->daddr != cfg->nat_ip4)
		return 0;
	if (udp->dest != bpf_htons(TUNNEL_PORT) || udp->check != 0 || vx->flags != bpf_htonl(VXLAN_FLAGS_VNI))
		return 0;
	if (ieth->h_proto != bpf_htons(ETH_P_IP) || inner->version != 4 || inner->ihl < 5)
		return 0;
	/* Bulk TCP keeps the device path: its GRO cell merges a stream's segments into one skb
	 * for the pod's TCP, which a per-packet fast path would forgo (throughput fell by a fifth
	 * without this). Short segments (requests, replies, ACKs) are what latency is made of. */
	if (inner->protocol == IPPROTO_TCP && bpf_ntohs(inner->tot_len) > TUNNEL_FAST_TCP_MAX)
		return 0;
	const struct endpoint_info *ep = lookup_ip4_endpoint(inner->daddr);

	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return 0;
	__u32 vni = bpf_ntohl(vx->vni) >> 8;

	if (bpf_skb_adjust_room(skb, -(__s32)TUNNEL_OUTER_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4) < 0 &&
	    bpf_skb_adjust_room(skb, -(__s32)TUNNEL_OUTER_LEN, BPF_ADJ_ROOM_MAC, 0) < 0)
		return 0;
	skb->cb[PN_CB_SRC_IDENTITY] = vni;
	return 1;
}

#endif
