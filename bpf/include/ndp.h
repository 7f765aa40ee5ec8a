/* SPDX-License-Identifier: GPL-2.0 */
/*
 * NDP responder: the IPv6 counterpart of arp.h. A pod's IPv6 default route goes via the router
 * address, so its first packet is a neighbour solicitation for it; from-container answers with a
 * neighbour advertisement carrying the lxc MAC, sent back into the pod, so the node never sees
 * the pod's neighbour discovery. from-host answers the node's own solicitations for local pods
 * (the IPv6 pod-CIDR route is on-link on pn_host) with pn_host's MAC, reflected into pn_host.
 *
 * Not answered (handed on): DAD probes (unspecified source), link-local and multicast targets
 * (the lxc answers for its own link-local address), and the pod's own address.
 *
 * Also the two IPv6 entry points the programs call (ipv6_from_container, ipv6_from_host), so a
 * program's IPv6 hook is one line.
 */
#ifndef PN_NDP_H
#define PN_NDP_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "lxc.h"
#include "ipv6.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#define NDP_NS 135
#define NDP_NA 136
#define NDP_OPT_TARGET_LLADDR 2
#define NDP_NA_F_ROUTER 0x80
#define NDP_NA_F_SOLICITED 0x40
#define NDP_NA_F_OVERRIDE 0x20

/* Not a neighbour solicitation we answer: the caller continues with the packet. */
#define NDP_PASS 1000

struct ndp_ns_frame {
	struct ethhdr eth;
	struct ipv6hdr ip6;
	__u8 type;
	__u8 code;
	__u16 csum;
	__u32 reserved;
	__u8 target[16];
} __attribute__((packed));

struct ndp_na_frame {
	struct ethhdr eth;
	struct ipv6hdr ip6;
	__u8 type;
	__u8 code;
	__u16 csum;
	__u8 flags;
	__u8 reserved[3];
	__u8 target[16];
	__u8 opt_type;
	__u8 opt_len; /* in units of 8 bytes */
	__u8 lladdr[6];
} __attribute__((packed));

#define NDP_NA_ICMP_LEN (sizeof(struct ndp_na_frame) - sizeof(struct ethhdr) - sizeof(struct ipv6hdr)) /* 32 */

/* The ICMPv6 checksum input: pseudo-header (RFC 8200 §8.1) then the message. */
struct ndp_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
	__u8 icmp[NDP_NA_ICMP_LEN];
};

/* The solicitation after bounds checks, or NULL when the packet is not a valid NS (RFC 4861
 * §7.1.1: hop limit 255, code 0). */
static __always_inline struct ndp_ns_frame *ndp_ns_frame(struct __sk_buff *skb)
{
	if (pn_ensure_linear(skb, sizeof(struct ndp_ns_frame)) < 0)
		return NULL;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ndp_ns_frame *f = data;

	if ((void *)(f + 1) > data_end)
		return NULL;
	if (f->ip6.version != 6 || f->ip6.nexthdr != IPPROTO_ICMPV6 || f->type != NDP_NS || f->code != 0 ||
	    f->ip6.hop_limit != 255)
		return NULL;
	return f;
}

/* Turn the solicitation into the advertisement "target is at `mac`" and redirect it to `ifindex`
 * with `flags` (0 = that device's egress, BPF_F_INGRESS = as if received on it). */
static __always_inline int ndp_reply(struct __sk_buff *skb, const struct ndp_ns_frame *f, const __u8 *mac,
				     __u8 na_flags, __u32 ifindex, __u64 flags)
{
	struct ndp_na_frame r = {};
	struct ndp_csum_buf c = {};

	__builtin_memcpy(r.eth.h_dest, f->eth.h_source, 6);
	__builtin_memcpy(r.eth.h_source, mac, 6);
	r.eth.h_proto = bpf_htons(ETH_P_IPV6);
	r.ip6.version = 6;
	r.ip6.payload_len = bpf_htons(NDP_NA_ICMP_LEN);
	r.ip6.nexthdr = IPPROTO_ICMPV6;
	r.ip6.hop_limit = 255;
	__builtin_memcpy(&r.ip6.saddr, f->target, 16);
	__builtin_memcpy(&r.ip6.daddr, &f->ip6.saddr, 16);
	r.type = NDP_NA;
	r.flags = na_flags;
	__builtin_memcpy(r.target, f->target, 16);
	r.opt_type = NDP_OPT_TARGET_LLADDR;
	r.opt_len = 1;
	__builtin_memcpy(r.lladdr, mac, 6);

	__builtin_memcpy(c.saddr, &r.ip6.saddr, 16);
	__builtin_memcpy(c.daddr, &r.ip6.daddr, 16);
	c.len = bpf_htonl(NDP_NA_ICMP_LEN);
	c.nexthdr = IPPROTO_ICMPV6;
	__builtin_memcpy(c.icmp, &r.type, NDP_NA_ICMP_LEN);
	__s64 sum = bpf_csum_diff(NULL, 0, (__be32 *)&c, sizeof(c), 0);

	if (sum < 0)
		return DROP_WRITE_ERROR;
	r.csum = csum_fold32((__u64)sum);
	/* f points into the packet: everything needed is in r now, before the packet changes. */
	if (skb->len != sizeof(r) && bpf_skb_change_tail(skb, sizeof(r), 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, 0, &r, sizeof(r), 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_redirect(ifindex, flags) != TC_ACT_REDIRECT)
		return DROP_REDIRECT_FAILED;
	return TRACE_NDP_REPLY;
}

/* An NS worth answering: a real source (not DAD) and a routable unicast target. */
static __always_inline bool ndp_answerable(const struct ndp_ns_frame *f)
{
	return !ipv6_is_zero(&f->ip6.saddr) && !ipv6_is_link_local(f->target) && !ipv6_is_multicast(f->target);
}

/* from-container: answer the pod's solicitation for any routable address but its own with the
 * lxc MAC (like the ARP responder: after a node restart a pod may still use an old gateway). */
static __always_inline int ndp_respond(struct __sk_buff *skb, const struct lxc_info *lxc)
{
	struct ndp_ns_frame *f = ndp_ns_frame(skb);

	if (!f || !ndp_answerable(f) || ipv6_equal(f->target, lxc->ip6))
		return NDP_PASS;
	/* Anti-spoofing: a pod solicits from its own address or its link-local one. */
	if (!ipv6_equal(&f->ip6.saddr, lxc->ip6) && !ipv6_is_link_local(&f->ip6.saddr))
		return DROP_INVALID_SOURCE6;
	return ndp_reply(skb, f, lxc->mac, NDP_NA_F_ROUTER | NDP_NA_F_SOLICITED | NDP_NA_F_OVERRIDE, skb->ifindex, 0);
}

/* from-host: the node solicits a local pod's address on pn_host; answer with pn_host's own MAC
 * into pn_host's ingress (every later packet to the pod leaves through from-host and is
 * redirected to its lxc anyway). */
static __always_inline int ndp_for_local_endpoint(struct __sk_buff *skb)
{
	struct ndp_ns_frame *f = ndp_ns_frame(skb);

	if (!f || !ndp_answerable(f))
		return NDP_PASS;
	struct endpoint_info *ep = lookup_ip6_endpoint(f->target);

	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return NDP_PASS;
	__u8 mac[6];

	__builtin_memcpy(mac, f->eth.h_source, 6);
	return ndp_reply(skb, f, mac, NDP_NA_F_SOLICITED | NDP_NA_F_OVERRIDE, skb->ifindex, BPF_F_INGRESS);
}

/* from-container's IPv6: the NDP responder, then anti-spoofing and delivery (ipv6.h). */
static __always_inline int ipv6_from_container(struct __sk_buff *skb, const struct lxc_info *lxc)
{
	int ret = ndp_respond(skb, lxc);

	if (ret != NDP_PASS)
		return ret;
	return ipv6_from_lxc(skb, lxc);
}

/* from-host's IPv6: the node's solicitations for local pods, then local delivery (bpf_redirect). */
static __always_inline int ipv6_from_host(struct __sk_buff *skb)
{
	int ret = ndp_for_local_endpoint(skb);

	if (ret != NDP_PASS)
		return ret;
	return ipv6_try_local_delivery(skb, false);
}

#endif
