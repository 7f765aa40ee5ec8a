/**
 * Policy resolution: the cluster's endpoints, namespaces, identities and NetworkPolicies in,
 * per-endpoint allow entries out. Kubernetes' semantics, expressed over identities as Cilium
 * does:
 *   - a policy selects the pods of its own namespace that match its podSelector; a pod selected
 *     for a direction (policyTypes) is default-deny there, a pod selected by none is open;
 *   - each rule allows its peers (every peer when it names none) on its ports (every port when
 *     it names none); policies and rules are a union;
 *   - a pod peer is a set of identities: those whose labels match the podSelector, in the
 *     policy's namespace or in the namespaces the namespaceSelector matches (both in one peer:
 *     both must match);
 *   - an ipBlock peer is a set of CIDR identities: every CIDR any policy names gets one (node
 *     local, from IDENTITY_FIRST_CIDR), and the ipcache's longest prefix match gives an address
 *     the identity of the most specific CIDR holding it. The block allows the identities of the
 *     CIDRs inside its `cidr` and not inside one of its `except`s (a /0 also allows `world`, the
 *     addresses no CIDR holds). Pods keep their own identity: an ipBlock never selects a pod.
 * Every entry remembers the rules it came from, so `pn policy trace` explains a verdict from
 * the very data the maps are written from.
 */
import {cidrsOverlap, containsIp, parseCidr, tryParseIp, type Cidr} from '../cidr/cidr.js'
import {podLabelSet, splitLabelSet, type Labels} from './labels.js'
import type {NetworkPolicy, PolicyPeer, PolicyPort, PortProtocol} from './parse.js'
import {selectorMatches} from './selector.js'
import {
  IDENTITY_FIRST_CIDR, IDENTITY_UNKNOWN, IDENTITY_WORLD,
  type CidrIdentity, type EndpointPolicy, type NodePolicy, type PolicyDirection, type PolicyMapEntry, type PolicyProtocol,
} from './types.js'

/** An endpoint as resolution needs it (any node's; `endpointId` for the local ones). */
export interface PolicyEndpoint {
  ip: string
  endpointId?: number
  namespace: string
  /** The pod's name, for messages and trace. */
  name?: string
  /** The pod's own labels (plain Kubernetes keys). */
  labels: Labels
  /** Its security identity; null: not yet assigned (it is then never a peer). */
  identity: number | null
  node?: string
}

/** An allocated identity and its label set (Cilium form). */
export interface PolicyIdentity {
  id: number
  labels: string[]
}

export interface PolicyInputs {
  endpoints: PolicyEndpoint[]
  /** Namespace → its labels (kubernetes.io/metadata.name is added). */
  namespaces: Record<string, Labels>
  identities: PolicyIdentity[]
  policies: NetworkPolicy[]
}

/** The rule an entry comes from: policy, direction, rule index, and the peer and port in it (null: the rule names none). */
export interface RuleRef {
  policy: string
  direction: PolicyDirection
  rule: number
  peer: number | null
  port: number | null
}

export interface ResolvedEntry extends PolicyMapEntry {
  sources: RuleRef[]
}

export interface ResolvedEndpoint {
  ip: string
  endpointId?: number
  namespace: string
  name?: string
  node?: string
  identity: number | null
  ingressEnforced: boolean
  egressEnforced: boolean
  /** The policies that select the endpoint, per direction (`ns/name`, sorted). */
  ingressPolicies: string[]
  egressPolicies: string[]
  /** Sorted as EndpointPolicy.entries. */
  entries: ResolvedEntry[]
}

/** Everything resolution computed; the maps and trace both read it. */
export interface ResolvedPolicy {
  endpoints: ResolvedEndpoint[]
  cidrIdentities: CidrIdentity[]
  /** Identity → label set, for every identity resolution knew (CIDR ones as `cidr:<prefix>`). */
  identityLabels: Map<number, string[]>
}

export interface ResolveOptions {
  /** CIDR identities already in use on the node: kept, so a policy change does not renumber them. */
  previousCidrIdentities?: CidrIdentity[]
  /** Resolve only these endpoints' entries (a node's own); every endpoint is still a possible peer. */
  select?: (ep: PolicyEndpoint) => boolean
}

export const PROTOCOL_NUMBERS: Record<PortProtocol, PolicyProtocol> = {TCP: 6, UDP: 17, SCTP: 132}

const policyId = (p: NetworkPolicy) => `${p.namespace}/${p.name}`

/** Sort order of EndpointPolicy.entries. */
export function compareEntries(a: PolicyMapEntry, b: PolicyMapEntry): number {
  if (a.direction !== b.direction) return a.direction === 'egress' ? -1 : 1
  return a.identity - b.identity || a.protocol - b.protocol || a.port - b.port || a.endPort - b.endPort
}

const entryKey = (e: PolicyMapEntry) => `${e.direction}|${e.identity}|${e.protocol}|${e.port}|${e.endPort}`

function compareCidrs(a: Cidr, b: Cidr): number {
  return a.family - b.family || (a.network < b.network ? -1 : a.network > b.network ? 1 : 0) || a.prefix - b.prefix
}

const cidrText = (c: Cidr, text: string) => ({cidr: c, text})

/** c ⊆ outer. */
function inside(c: Cidr, outer: Cidr): boolean {
  return c.family === outer.family && c.prefix >= outer.prefix && cidrsOverlap(c, outer)
}

/** Give every CIDR the policies name an identity, keeping the numbers of `previous`. */
function cidrIdentitiesFor(policies: NetworkPolicy[], previous: CidrIdentity[] = []): {list: CidrIdentity[]; parsed: Map<string, Cidr>} {
  const parsed = new Map<string, Cidr>()
  for (const p of policies) {
    for (const r of [...p.ingress, ...p.egress]) {
      for (const peer of r.peers) {
        if (!peer.ipBlock) continue
        for (const t of [peer.ipBlock.cidr, ...peer.ipBlock.except]) if (!parsed.has(t)) parsed.set(t, parseCidr(t).cidr)
      }
    }
  }
  const prev = new Map(previous.map((c) => [c.cidr, c.identity]))
  const used = new Set<number>()
  const out: CidrIdentity[] = []
  const fresh: string[] = []
  for (const t of [...parsed.keys()].sort((a, b) => compareCidrs(parsed.get(a)!, parsed.get(b)!))) {
    const id = prev.get(t)
    if (id !== undefined && !used.has(id)) {
      used.add(id)
      out.push({cidr: t, identity: id})
    } else fresh.push(t)
  }
  let next = IDENTITY_FIRST_CIDR
  for (const t of fresh) {
    while (used.has(next)) next++
    used.add(next)
    out.push({cidr: t, identity: next})
  }
  out.sort((a, b) => compareCidrs(parsed.get(a.cidr)!, parsed.get(b.cidr)!))
  return {list: out, parsed}
}

/** Resolve the whole cluster's policy (every endpoint; nodePolicy() keeps a node's). */
export function resolvePolicy(inputs: PolicyInputs, opts: ResolveOptions = {}): ResolvedPolicy {
  // The identities peers are chosen from: the allocated ones, and any endpoint's whose identity the table lacks.
  const identityLabels = new Map<number, string[]>()
  for (const i of inputs.identities) identityLabels.set(i.id, i.labels)
  for (const ep of inputs.endpoints) {
    if (ep.identity !== null && !identityLabels.has(ep.identity)) identityLabels.set(ep.identity, podLabelSet(ep.namespace, ep.labels, inputs.namespaces[ep.namespace] ?? {}))
  }
  const split = [...identityLabels.entries()].map(([id, labels]) => ({id, ...splitLabelSet(labels)})).sort((a, b) => a.id - b.id)
  const cidrs = cidrIdentitiesFor(inputs.policies, opts.previousCidrIdentities)
  const cidrId = new Map(cidrs.list.map((c) => [c.cidr, c.identity]))
  for (const c of cidrs.list) identityLabels.set(c.identity, [`cidr:${c.cidr}`])
  const known = cidrs.list.map((c) => cidrText(cidrs.parsed.get(c.cidr)!, c.cidr))

  // Each peer's identities, once per policy/direction/rule/peer.
  const peerCache = new Map<string, number[]>()
  const peerIdentities = (p: NetworkPolicy, key: string, peer: PolicyPeer): number[] => {
    const hit = peerCache.get(key)
    if (hit) return hit
    let ids: number[]
    if (peer.ipBlock) {
      const outer = cidrs.parsed.get(peer.ipBlock.cidr)!
      const excepts = peer.ipBlock.except.map((e) => cidrs.parsed.get(e)!)
      ids = known.filter((k) => inside(k.cidr, outer) && !excepts.some((e) => inside(k.cidr, e))).map((k) => cidrId.get(k.text)!)
      if (outer.prefix === 0) ids.push(IDENTITY_WORLD)
    } else {
      ids = split
        .filter((i) => i.namespace !== undefined &&
          (peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, i.nsLabels) : i.namespace === p.namespace) &&
          (peer.podSelector ? selectorMatches(peer.podSelector, i.pod) : true))
        .map((i) => i.id)
    }
    ids = [...new Set(ids)].sort((a, b) => a - b)
    peerCache.set(key, ids)
    return ids
  }
  const portRanges = (ports: PolicyPort[]): {protocol: PolicyProtocol; port: number; endPort: number; index: number | null}[] =>
    ports.length === 0
      ? [{protocol: 0, port: 0, endPort: 0, index: null}]
      : ports.map((pt, i) => ({protocol: PROTOCOL_NUMBERS[pt.protocol], port: pt.port ?? 0, endPort: pt.port === undefined ? 0 : pt.endPort ?? pt.port, index: i}))

  const policiesByNs = new Map<string, NetworkPolicy[]>()
  for (const p of [...inputs.policies].sort((a, b) => policyId(a).localeCompare(policyId(b)))) {
    const l = policiesByNs.get(p.namespace) ?? []
    l.push(p)
    policiesByNs.set(p.namespace, l)
  }

  const endpoints = (opts.select ? inputs.endpoints.filter(opts.select) : inputs.endpoints).map((ep): ResolvedEndpoint => {
    const selecting = (policiesByNs.get(ep.namespace) ?? []).filter((p) => selectorMatches(p.podSelector, ep.labels))
    const entries = new Map<string, ResolvedEntry>()
    const dirPolicies: Record<PolicyDirection, string[]> = {ingress: [], egress: []}
    for (const p of selecting) {
      for (const direction of p.policyTypes) {
        dirPolicies[direction].push(policyId(p))
        p[direction].forEach((rule, ri) => {
          const peers: {identity: number; peer: number | null}[] = rule.peers.length === 0
            ? [{identity: 0, peer: null}]
            : rule.peers.flatMap((peer, pi) => peerIdentities(p, `${policyId(p)}|${direction}|${ri}|${pi}`, peer).map((identity) => ({identity, peer: pi})))
          for (const {identity, peer} of peers) {
            for (const pr of portRanges(rule.ports)) {
              const e: PolicyMapEntry = {direction, identity, protocol: pr.protocol, port: pr.port, endPort: pr.endPort}
              const k = entryKey(e)
              const ref: RuleRef = {policy: policyId(p), direction, rule: ri, peer, port: pr.index}
              const have = entries.get(k)
              if (have) have.sources.push(ref)
              else entries.set(k, {...e, sources: [ref]})
            }
          }
        })
      }
    }
    return {
      ip: ep.ip,
      ...(ep.endpointId !== undefined ? {endpointId: ep.endpointId} : {}),
      namespace: ep.namespace,
      ...(ep.name !== undefined ? {name: ep.name} : {}),
      ...(ep.node !== undefined ? {node: ep.node} : {}),
      identity: ep.identity,
      ingressEnforced: dirPolicies.ingress.length > 0,
      egressEnforced: dirPolicies.egress.length > 0,
      ingressPolicies: dirPolicies.ingress,
      egressPolicies: dirPolicies.egress,
      entries: [...entries.values()].sort(compareEntries),
    }
  })
  return {endpoints, cidrIdentities: cidrs.list, identityLabels}
}

/** The entries as the datapath takes them (no provenance). */
export function endpointPolicy(ep: ResolvedEndpoint & {endpointId: number}): EndpointPolicy {
  return {
    endpointId: ep.endpointId,
    ingressEnforced: ep.ingressEnforced,
    egressEnforced: ep.egressEnforced,
    entries: ep.entries.map(({direction, identity, protocol, port, endPort}) => ({direction, identity, protocol, port, endPort})),
  }
}

/**
 * What one node writes: its endpoints' (those `isLocal` says, with an endpoint id; one per id,
 * a dual-stack pod's addresses share it and its labels) and the CIDR identities.
 */
export function nodePolicy(resolved: ResolvedPolicy, isLocal: (ep: ResolvedEndpoint) => boolean): NodePolicy {
  const byId = new Map<number, EndpointPolicy>()
  for (const ep of resolved.endpoints) {
    if (ep.endpointId === undefined || byId.has(ep.endpointId) || !isLocal(ep)) continue
    byId.set(ep.endpointId, endpointPolicy(ep as ResolvedEndpoint & {endpointId: number}))
  }
  return {endpoints: [...byId.values()].sort((a, b) => a.endpointId - b.endpointId), cidrIdentities: resolved.cidrIdentities}
}

/**
 * The identity the ipcache gives `ip`: a pod's own (unknown, 0, until it has one), else the most specific policy CIDR's, else
 * world. (Node addresses, host and remote-node, are the datapath's: resolution does not know them.)
 */
export function identityOfIp(resolved: ResolvedPolicy, ip: string): number {
  const ep = resolved.endpoints.find((e) => e.ip === ip)
  if (ep) return ep.identity ?? IDENTITY_UNKNOWN
  const parsed = tryParseIp(ip)
  if (!parsed) return IDENTITY_WORLD
  let best: {prefix: number; identity: number} | undefined
  for (const c of resolved.cidrIdentities) {
    const cidr = parseCidr(c.cidr).cidr
    if (containsIp(cidr, parsed) && (!best || cidr.prefix > best.prefix)) best = {prefix: cidr.prefix, identity: c.identity}
  }
  return best?.identity ?? IDENTITY_WORLD
}

/** The entries of one direction that allow a peer of `identity` on `protocol`/`port` (the datapath's lookup, as a filter). */
export function matchingEntries<E extends PolicyMapEntry>(entries: E[], direction: PolicyDirection, identity: number, protocol: PolicyProtocol, port: number): E[] {
  return entries.filter((e) => e.direction === direction && (e.identity === 0 || e.identity === identity) &&
    (e.protocol === 0 || e.protocol === protocol) && (e.port === 0 || (port >= e.port && port <= e.endPort)))
}
