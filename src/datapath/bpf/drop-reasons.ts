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
  {name: 'TRACE_NDP_REPLY', code: 8, description: 'IPv6 neighbour solicitation answered by the BPF NDP responder'},
]

/** Drops (negative codes; metrics `reason` = the magnitude). */
export const DROP_REASONS: readonly ReasonInfo[] = [
  {name: 'DROP_INVALID_SOURCE', code: -132, description: 'invalid source ip (anti-spoofing)'},
  {name: 'DROP_INVALID', code: -134, description: 'invalid packet (truncated or malformed header)'},
  {name: 'DROP_UNKNOWN_L3', code: -139, description: 'unsupported L3 protocol'},
  {name: 'DROP_WRITE_ERROR', code: -141, description: 'error writing to packet'},
  {name: 'DROP_CT_CREATE_FAILED', code: -155, description: 'conntrack map insertion failed'},
  {name: 'DROP_FRAG_NOSUPPORT', code: -157, description: 'ip fragmentation not supported (a fragmented datagram to or from a service)'},
  {name: 'DROP_NO_SERVICE', code: -158, description: 'service backend not found (no backends, or the reply\'s service is gone)'},
  {name: 'DROP_UNSUPPORTED_L2', code: -166, description: 'unsupported L2 protocol'},
  {name: 'DROP_NO_LXC_INFO', code: -200, description: 'endpoint not ready (no pn_lxc entry for this interface)'},
  {name: 'DROP_TTL_EXCEEDED', code: -201, description: 'ttl exceeded'},
  {name: 'DROP_REDIRECT_FAILED', code: -202, description: 'redirect to the target device failed'},
  {name: 'DROP_INVALID_SOURCE6', code: -210, description: 'invalid IPv6 source (anti-spoofing)'},
]

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
}

export const DIRECTIONS: Record<number, 'ingress' | 'egress'> = {1: 'ingress', 2: 'egress'}
