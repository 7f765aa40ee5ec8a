/**
 * `pn policy trace`: would a packet from one endpoint (or address) to another pass? Computed
 * from the resolved policy (the entries the maps are written from) with the datapath's lookup:
 * egress is checked at the source endpoint, ingress at the destination endpoint; a direction no
 * policy selects the endpoint for is open. The answer names the rules that allow, or the
 * policies whose default deny drops.
 */
import {PnError} from '../errors.js'
import {identityOfIp, matchingEntries, type ResolvedEndpoint, type ResolvedPolicy, type RuleRef} from './resolve.js'
import type {PolicyDirection, PolicyProtocol} from './types.js'

/** One side of a trace: an endpoint (by its IP) or any address. */
export interface TracePeer {
  ip: string
  identity: number
  labels: string[]
  /** `ns/pod` of the endpoint, when the IP is one. */
  endpoint?: string
}

export interface DirectionVerdict {
  direction: PolicyDirection
  /** Which endpoint the direction is checked at (`ns/pod` or its IP); absent: not an endpoint, nothing to check. */
  at?: string
  enforced: boolean
  allowed: boolean
  /** The rules that allow it (when allowed and enforced). */
  rules: RuleRef[]
  /** The policies selecting the endpoint in this direction (their default deny drops what no rule allows). */
  policies: string[]
}

export interface TraceResult {
  verdict: 'allowed' | 'denied'
  from: TracePeer
  to: TracePeer
  protocol: PolicyProtocol
  port: number
  egress: DirectionVerdict
  ingress: DirectionVerdict
  /** One line: what decides the verdict. */
  reason: string
}

const epName = (ep: ResolvedEndpoint) => (ep.name ? `${ep.namespace}/${ep.name}` : ep.ip)

function peer(resolved: ResolvedPolicy, ip: string): {peer: TracePeer; ep?: ResolvedEndpoint} {
  const ep = resolved.endpoints.find((e) => e.ip === ip)
  const identity = identityOfIp(resolved, ip)
  return {peer: {ip, identity, labels: resolved.identityLabels.get(identity) ?? (identity === 2 ? ['reserved:world'] : []), ...(ep ? {endpoint: epName(ep)} : {})}, ...(ep ? {ep} : {})}
}

function check(ep: ResolvedEndpoint | undefined, direction: PolicyDirection, peerIdentity: number, protocol: PolicyProtocol, port: number): DirectionVerdict {
  if (!ep) return {direction, enforced: false, allowed: true, rules: [], policies: []}
  const enforced = direction === 'ingress' ? ep.ingressEnforced : ep.egressEnforced
  const policies = direction === 'ingress' ? ep.ingressPolicies : ep.egressPolicies
  if (!enforced) return {direction, at: epName(ep), enforced, allowed: true, rules: [], policies}
  const hits = matchingEntries(ep.entries, direction, peerIdentity, protocol, port)
  return {direction, at: epName(ep), enforced, allowed: hits.length > 0, rules: hits.flatMap((h) => h.sources), policies}
}

export const describeRule = (r: RuleRef) =>
  `${r.policy} ${r.direction}[${r.rule}]${r.peer === null ? ' (any peer)' : ` peer ${r.direction === 'ingress' ? 'from' : 'to'}[${r.peer}]`}${r.port === null ? '' : ` ports[${r.port}]`}`

/** Parse `80/tcp` (`80` alone is TCP) into an IP protocol number and a port. */
export function parsePortProtocol(text: string): {protocol: PolicyProtocol; port: number} {
  const m = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(text.trim())
  const port = m ? Number(m[1]) : NaN
  if (!m || port < 1 || port > 65535) {
    throw new PnError('PN_INVALID_ARGUMENT', `parse port ${JSON.stringify(text)}: not PORT[/tcp|udp|sctp] with a port 1-65535`, {hint: 'e.g. --port 80/tcp or --port 53/udp'})
  }
  const proto = (m[2] ?? 'tcp').toLowerCase()
  return {protocol: proto === 'tcp' ? 6 : proto === 'udp' ? 17 : 132, port}
}

/** The verdict for a packet from `fromIp` to `toIp` on `protocol`/`port` (protocol 6, 17 or 132). */
export function traceVerdict(resolved: ResolvedPolicy, fromIp: string, toIp: string, protocol: PolicyProtocol, port: number): TraceResult {
  if (protocol === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new PnError('PN_INVALID_ARGUMENT', `trace policy ${fromIp} -> ${toIp}: give a protocol (tcp, udp, sctp) and a port 1-65535`, {hint: 'e.g. --port 80/tcp'})
  }
  const from = peer(resolved, fromIp)
  const to = peer(resolved, toIp)
  const egress = check(from.ep, 'egress', to.peer.identity, protocol, port)
  const ingress = check(to.ep, 'ingress', from.peer.identity, protocol, port)
  const allowed = egress.allowed && ingress.allowed
  const why = (v: DirectionVerdict) =>
    !v.enforced ? `${v.direction} open${v.at ? ` at ${v.at}` : ''} (no policy selects it)`
      : v.allowed ? `${v.direction} at ${v.at} allowed by ${[...new Set(v.rules.map(describeRule))].join('; ')}`
        : `${v.direction} at ${v.at} denied by default (selected by ${v.policies.join(', ')}; no rule allows identity ${v.direction === 'egress' ? to.peer.identity : from.peer.identity} on ${port})`
  const reason = allowed ? `${why(egress)}; ${why(ingress)}` : [egress, ingress].filter((v) => !v.allowed).map(why).join('; ')
  return {verdict: allowed ? 'allowed' : 'denied', from: from.peer, to: to.peer, protocol, port, egress, ingress, reason}
}
