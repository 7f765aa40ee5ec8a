/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one table of packet outcomes, shared with TypeScript (src/datapath/bpf/drop-reasons.ts;
 * test/unit/bpf-drop-reasons.test.ts parses this file, so keep one `#define NAME VALUE /+ text +/`
 * per line). Helpers return a negative DROP_* code or a non-negative TRACE_* outcome; only the
 * program entry turns that into a TC verdict and a pn_metrics count, so every drop is explained
 * by exactly one line here. Drops are >= 130 in magnitude so they never collide with TC_ACT_*
 * values or TRACE_* outcomes; where Cilium has the same meaning the number is Cilium's.
 */
#ifndef PN_DROP_REASONS_H
#define PN_DROP_REASONS_H

/* Outcomes that are not drops (stored as-is in the metrics key `reason`). */
#define TRACE_TO_STACK 0 /* handed to the kernel stack */
#define TRACE_REDIRECT 1 /* delivered by bpf_redirect to a device's egress */
#define TRACE_REDIRECT_PEER 2 /* delivered by bpf_redirect_peer into the pod's netns */
#define TRACE_ARP_REPLY 3 /* ARP request answered by the BPF ARP responder */
/* BPF host routing (fib.h): sent out of the uplink, skipping the node's stack and netfilter. */
#define TRACE_FIB_REDIRECT 4 /* sent to the uplink by bpf_fib_lookup + bpf_redirect (neighbour known) */
#define TRACE_FIB_REDIRECT_NEIGH 5 /* sent to the uplink by bpf_redirect_neigh (the kernel resolves the next hop) */
#define TRACE_ENCAP 6 /* encapsulated towards another node: tunnel key set, redirected to pn_vxlan */
#define TRACE_NDP_REPLY 8 /* IPv6 neighbour solicitation answered by the BPF NDP responder */
/* BPF host routing could not forward: handed to the stack instead (TC_ACT_OK), never dropped. */
#define TRACE_FIB_NO_ROUTE 16 /* to the stack: the FIB has no usable route (unreachable, blackhole, prohibit) */
#define TRACE_FIB_NOT_FWDED 17 /* to the stack: the FIB does not forward this destination (a local address) */
#define TRACE_FIB_FWD_DISABLED 18 /* to the stack: forwarding is disabled on the pod's device */
#define TRACE_FIB_FRAG_NEEDED 19 /* to the stack: larger than the uplink MTU (the stack fragments or sends ICMP) */
#define TRACE_FIB_NO_NEIGH 20 /* to the stack: a next hop bpf_redirect_neigh cannot resolve */
#define TRACE_FIB_NOT_UPLINK 21 /* to the stack: the route leaves by another device than the uplink (or none is configured) */
#define TRACE_FIB_TTL 22 /* to the stack: the TTL expires at this hop (the stack sends the ICMP error) */
#define TRACE_FIB_UNSUPPORTED 23 /* to the stack: the FIB lookup failed otherwise (encapsulation route, helper error) */

/* Drops (stored as the magnitude in the metrics key `reason`). */
#define DROP_INVALID_SOURCE -132 /* invalid source ip (anti-spoofing) */
#define DROP_POLICY_DENIED -133 /* policy denied (no rule of the endpoint allows the flow) */
#define DROP_INVALID -134 /* invalid packet (truncated or malformed header) */
#define DROP_UNKNOWN_L3 -139 /* unsupported L3 protocol */
#define DROP_WRITE_ERROR -141 /* error writing to packet */
#define DROP_CT_CREATE_FAILED -155 /* conntrack map insertion failed */
#define DROP_FRAG_NOSUPPORT -157 /* ip fragmentation not supported (a fragmented datagram to or from a service) */
#define DROP_NO_SERVICE -158 /* service backend not found (no backends, or the reply's service is gone) */
#define DROP_UNSUPPORTED_L2 -166 /* unsupported L2 protocol */
#define DROP_NAT_NO_MAPPING -167 /* nat: no free SNAT port for a masqueraded flow (nat.h) */
#define DROP_NO_LXC_INFO -200 /* endpoint not ready (no pn_lxc entry for this interface) */
#define DROP_TTL_EXCEEDED -201 /* ttl exceeded */
#define DROP_REDIRECT_FAILED -202 /* redirect to the target device failed */
#define DROP_INVALID_SOURCE6 -210 /* invalid IPv6 source (anti-spoofing) */

#endif
