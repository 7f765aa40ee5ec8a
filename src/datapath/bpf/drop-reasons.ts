/**
 * The packet-outcome table shared with the C datapath (bpf/include/drop_reasons.h). A unit test
 * parses the header and fails when the two drift, so add a reason in both places.
 */

export interface ReasonInfo {
  name: string
  code: number
  description: string
}

/** Non-drop outcomes (metrics `reason` = the code itself). */
export const TRACE_REASONS: readonly ReasonInfo[] = [
  {name: 'TRACE_TO_STACK', code: 0, description: 'handed to the kernel stack'},
  {name: 'TRACE_REDIRECT', code: 1, description: 'delivered by bpf_redirect to a device\'s egress'},
  {name: 'TRACE_REDIRECT_PEER', code: 2, description: 'delivered by bpf_redirect_peer into the pod\'s netns'},
  {name: 'TRACE_ARP_REPLY', code: 3, description: 'ARP request answered by the BPF ARP responder'},
  {name: 'TRACE_FIB_REDIRECT', code: 4, description: 'sent to the uplink by bpf_fib_lookup + bpf_redirect (neighbour known)'},
  {name: 'TRACE_FIB_REDIRECT_NEIGH', code: 5, description: 'sent to the uplink by bpf_redirect_neigh (the kernel resolves the next hop)'},
  {name: 'TRACE_ENCAP', code: 6, description: 'encapsulated towards another node: tunnel key set, redirected to pn_vxlan'},
  {name: 'TRACE_NDP_REPLY', code: 8, description: 'IPv6 neighbour solicitation answered by the BPF NDP responder'},
  {name: 'TRACE_FIB_NO_ROUTE', code: 16, description: 'to the stack: the FIB has no usable route (unreachable, blackhole, prohibit)'},
  {name: 'TRACE_FIB_NOT_FWDED', code: 17, description: 'to the stack: the FIB does not forward this destination (a local address)'},
  {name: 'TRACE_FIB_FWD_DISABLED', code: 18, description: 'to the stack: forwarding is disabled on the pod\'s device'},
  {name: 'TRACE_FIB_FRAG_NEEDED', code: 19, description: 'to the stack: larger than the uplink MTU (the stack fragments or sends ICMP)'},
  {name: 'TRACE_FIB_NO_NEIGH', code: 20, description: 'to the stack: a next hop bpf_redirect_neigh cannot resolve'},
  {name: 'TRACE_FIB_NOT_UPLINK', code: 21, description: 'to the stack: the route leaves by another device than the uplink (or none is configured)'},
  {name: 'TRACE_FIB_TTL', code: 22, description: 'to the stack: the TTL expires at this hop (the stack sends the ICMP error)'},
  {name: 'TRACE_FIB_UNSUPPORTED', code: 23, description: 'to the stack: the FIB lookup failed otherwise (encapsulation route, helper error)'},
]

/** Drops (negative codes; metrics `reason` = the magnitude). */
export const DROP_REASONS: readonly ReasonInfo[] = [
  {name: 'DROP_INVALID_SOURCE', code: -132, description: 'invalid source ip (anti-spoofing)'},
  {name: 'DROP_POLICY_DENIED', code: -133, description: 'policy denied (no rule of the endpoint allows the flow)'},
  {name: 'DROP_INVALID', code: -134, description: 'invalid packet (truncated or malformed header)'},
  {name: 'DROP_UNKNOWN_L3', code: -139, description: 'unsupported L3 protocol'},
  {name: 'DROP_WRITE_ERROR', code: -141, description: 'error writing to packet'},
  {name: 'DROP_CT_CREATE_FAILED', code: -155, description: 'conntrack map insertion failed'},
  {name: 'DROP_FRAG_NOSUPPORT', code: -157, description: 'ip fragmentation not supported (a fragmented datagram to or from a service)'},
  {name: 'DROP_NO_SERVICE', code: -158, description: 'service backend not found (no backends, or the reply\'s service is gone)'},
  {name: 'DROP_UNSUPPORTED_L2', code: -166, description: 'unsupported L2 protocol'},
  {name: 'DROP_NAT_NO_MAPPING', code: -167, description: 'nat: no free SNAT port for a masqueraded flow (nat.h)'},
  {name: 'DROP_NO_LXC_INFO', code: -200, description: 'endpoint not ready (no pn_lxc entry for this interface)'},
  {name: 'DROP_TTL_EXCEEDED', code: -201, description: 'ttl exceeded'},
  {name: 'DROP_REDIRECT_FAILED', code: -202, description: 'redirect to the target device failed'},
  {name: 'DROP_INVALID_SOURCE6', code: -210, description: 'invalid IPv6 source (anti-spoofing)'},
]

/** BPF host routing's fallbacks: handed to the stack (TC_ACT_OK) with a reason, never dropped (trace_to_stack in trace.h). */
export const FIB_FALLBACK_REASONS: readonly ReasonInfo[] = TRACE_REASONS.filter((r) => r.code >= 16 && r.code <= 23)

/** The outcome named by a metrics key's `reason` byte (a drop when ≥ 130). */
export function reasonFromMetricByte(reason: number): ReasonInfo {
  const table = reason >= 130 ? DROP_REASONS : TRACE_REASONS
  const code = reason >= 130 ? -reason : reason
  return table.find((r) => r.code === code) ?? {name: `UNKNOWN_${reason}`, code, description: 'not in pn\'s reason table'}
}

/** Observation points (metrics `point`), one per program; names as attached (`from-container`). */
export const POINTS: Record<number, string> = {
  1: 'from-container',
  2: 'from-netdev',
  3: 'to-netdev',
  4: 'to-host',
  5: 'from-host',
  6: 'from-overlay',
}

export const DIRECTIONS: Record<number, 'ingress' | 'egress'> = {1: 'ingress', 2: 'egress'}
