// SPDX-License-Identifier: GPL-2.0
/*
 * The floor rows of bench/datapath: the least a tc BPF datapath has to do per packet, swapped in
 * for pn's programs on nodes pn built, so the same world is measured with and without pn's
 * per-packet work (anti-spoofing, service hooks, metrics, trace gate, MAC/TTL rewrite on local
 * delivery, to-netdev):
 *
 *   floor_lxc     (pod lxc ingress)  destination a pod of this node → bpf_redirect_peer;
 *                                    otherwise bpf_fib_lookup, and when it answers with a known
 *                                    neighbour through the uplink: TTL and MACs rewritten (what
 *                                    any router must do), bpf_redirect to the uplink
 *   floor_netdev  (uplink ingress)   destination a pod of this node → bpf_redirect_peer
 *
 * Everything else (ARP, the node's own traffic, a next hop to resolve) goes to the stack.
 * IPv4 only. Not part of pn: the bench compiles it with clang and pins it under the node's own
 * bpffs directory, which the bench's cleanup removes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

/* IPv4 address (network order) → ifindex of the pod's lxc. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} floor_pods SEC(".maps");

/* Slot 0: the uplink's ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} floor_uplink SEC(".maps");

static __always_inline struct iphdr *ip4_of(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip4 = data + sizeof(*eth);

	if ((void *)(ip4 + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return ip4;
}

/* The lxc of the pod the packet is for, when it is a pod of this node. */
static __always_inline __u32 *pod_lxc(const struct iphdr *ip4)
{
	__u32 daddr = ip4->daddr;

	return bpf_map_lookup_elem(&floor_pods, &daddr);
}

SEC("tc/lxc")
int floor_lxc(struct __sk_buff *skb)
{
	struct iphdr *ip4 = ip4_of(skb);

	if (!ip4)
		return TC_ACT_OK;
	__u32 *lxc = pod_lxc(ip4);

	if (lxc)
		return bpf_redirect_peer(*lxc, 0);
	if (ip4->ttl <= 1)
		return TC_ACT_OK;
	struct bpf_fib_lookup p = {
		.family = AF_INET,
		.tos = ip4->tos,
		.l4_protocol = ip4->protocol,
		.ifindex = skb->ingress_ifindex,
		.ipv4_src = ip4->saddr,
		.ipv4_dst = ip4->daddr,
	};
	__u32 zero = 0;
	__u32 *uplink = bpf_map_lookup_elem(&floor_uplink, &zero);

	if (bpf_fib_lookup(skb, &p, sizeof(p), 0) != BPF_FIB_LKUP_RET_SUCCESS || !uplink || p.ifindex != *uplink)
		return TC_ACT_OK;
	__u16 old = *(__u16 *)&ip4->ttl;
	__u16 new = old;
	__u8 ttl = ip4->ttl - 1;

	*(__u8 *)&new = ttl;
	__u8 macs[12];

	__builtin_memcpy(macs, p.dmac, 6);
	__builtin_memcpy(macs + 6, p.smac, 6);
	if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old, new, 2) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(p.ifindex, 0);
}

SEC("tc/netdev")
int floor_netdev(struct __sk_buff *skb)
{
	struct iphdr *ip4 = ip4_of(skb);
	__u32 *lxc = ip4 ? pod_lxc(ip4) : 0;

	return lxc ? bpf_redirect_peer(*lxc, 0) : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
