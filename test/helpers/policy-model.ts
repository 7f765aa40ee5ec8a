/**
 * A small model of Kubernetes NetworkPolicy, written from the API reference
 * (networking.k8s.io/v1) and independent of pn's code: it reads the policy objects as written
 * (plain JSON) and answers "is this connection allowed?" for pods and outside addresses. The
 * truth-table tests compare pn's resolution (unit) and datapath (integration) against it.
 *
 * The one place it follows Cilium rather than leave a choice open: an ipBlock matches addresses
 * that are not pods (the spec says ipBlock is meant for cluster-external addresses; pods are
 * matched by selectors only, Cilium's behaviour and pn's).
 */

export type Labels = Record<string, string>

export interface ModelPod {
  namespace: string
  name: string
  labels: Labels
  ip: string
}

export interface ModelWorld {
  pods: ModelPod[]
  /** Namespace → its labels (the model adds kubernetes.io/metadata.name itself). */
  namespaces: Record<string, Labels>
  /** NetworkPolicy objects as a user writes them. */
  policies: unknown[]
}

export type ModelProtocol = 'TCP' | 'UDP' | 'SCTP'

/** An endpoint of a probe: a pod as `ns/name`, or an IPv4 address outside the pods. */
export type ModelTarget = string

/* eslint-disable @typescript-eslint/no-explicit-any -- the model reads the raw objects as the API describes them */

function matchesSelector(sel: any, labels: Labels): boolean {
  // An empty selector ({}) selects everything; the terms are ANDed.
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const e of sel?.matchExpressions ?? []) {
    const present = e.key in labels
    if (e.operator === 'In' && !(present && e.values.includes(labels[e.key]))) return false
    if (e.operator === 'NotIn' && present && e.values.includes(labels[e.key])) return false
    if (e.operator === 'Exists' && !present) return false
    if (e.operator === 'DoesNotExist' && present) return false
  }
  return true
}

function ipv4(text: string): number {
  const p = text.split('.').map(Number)
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split('/')
  const bits = Number(len)
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  return ((ipv4(ip) & mask) >>> 0) === ((ipv4(net) & mask) >>> 0)
}

function policyTypes(pol: any): string[] {
  // Defaulting: Ingress always; Egress when the policy has egress rules.
  if (pol.spec.policyTypes && pol.spec.policyTypes.length > 0) return pol.spec.policyTypes
  return pol.spec.egress && pol.spec.egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress']
}

const nsOf = (pol: any) => pol.metadata.namespace ?? 'default'

function nsLabels(world: ModelWorld, ns: string): Labels {
  return {...(world.namespaces[ns] ?? {}), 'kubernetes.io/metadata.name': ns}
}

/** The policies that isolate `pod` for `type` ('Ingress' | 'Egress'). */
function isolating(world: ModelWorld, pod: ModelPod, type: string): any[] {
  return (world.policies as any[]).filter((p) => nsOf(p) === pod.namespace && matchesSelector(p.spec.podSelector, pod.labels) && policyTypes(p).includes(type))
}

function peerMatches(world: ModelWorld, pol: any, peer: any, other: ModelPod | string): boolean {
  if (peer.ipBlock) {
    if (typeof other !== 'string') return false
    return inCidr(other, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((e: string) => inCidr(other, e))
  }
  if (typeof other === 'string') return false
  const nsOk = peer.namespaceSelector ? matchesSelector(peer.namespaceSelector, nsLabels(world, other.namespace)) : other.namespace === nsOf(pol)
  const podOk = peer.podSelector ? matchesSelector(peer.podSelector, other.labels) : true
  return nsOk && podOk
}

function portMatches(ports: any[] | undefined, protocol: ModelProtocol, port: number): boolean {
  if (!ports || ports.length === 0) return true
  return ports.some((p) => (p.protocol ?? 'TCP') === protocol &&
    (p.port === undefined || (p.endPort === undefined ? p.port === port : port >= p.port && port <= p.endPort)))
}

function allowedAt(world: ModelWorld, pod: ModelPod, type: 'Ingress' | 'Egress', other: ModelPod | string, protocol: ModelProtocol, port: number): boolean {
  const pols = isolating(world, pod, type)
  if (pols.length === 0) return true
  const field = type === 'Ingress' ? 'ingress' : 'egress'
  const peersField = type === 'Ingress' ? 'from' : 'to'
  return pols.some((pol) => (pol.spec[field] ?? []).some((rule: any) =>
    (!rule[peersField] || rule[peersField].length === 0 || rule[peersField].some((peer: any) => peerMatches(world, pol, peer, other))) &&
    portMatches(rule.ports, protocol, port)))
}

function find(world: ModelWorld, t: ModelTarget): ModelPod | string {
  if (!t.includes('/')) return t
  const [ns, name] = t.split('/')
  const pod = world.pods.find((p) => p.namespace === ns && p.name === name)
  if (!pod) throw new Error(`model: no pod ${t}`)
  return pod
}

/** Whether a new connection from `from` to `to` on `protocol`/`port` is allowed. */
export function modelAllows(world: ModelWorld, from: ModelTarget, to: ModelTarget, protocol: ModelProtocol, port: number): boolean {
  const src = find(world, from)
  const dst = find(world, to)
  const egressOk = typeof src === 'string' || allowedAt(world, src, 'Egress', dst, protocol, port)
  const ingressOk = typeof dst === 'string' || allowedAt(world, dst, 'Ingress', src, protocol, port)
  return egressOk && ingressOk
}

/** The expected matrix: `from -> to` → allowed, for every pair of `sources` × `destinations`. */
export function modelMatrix(world: ModelWorld, sources: ModelTarget[], destinations: ModelTarget[], protocol: ModelProtocol, port: number): Map<string, boolean> {
  const out = new Map<string, boolean>()
  for (const f of sources) for (const t of destinations) if (f !== t) out.set(`${f} -> ${t}`, modelAllows(world, f, t, protocol, port))
  return out
}

/** The truth-table world of the upstream e2e tests: namespaces x, y, z with pods a, b, c each. */
export function xyzWorld(ipOf: (ns: string, pod: string) => string): ModelWorld {
  const pods: ModelPod[] = []
  for (const ns of ['x', 'y', 'z']) for (const name of ['a', 'b', 'c']) pods.push({namespace: ns, name, labels: {pod: name}, ip: ipOf(ns, name)})
  return {pods, namespaces: {x: {team: 'red'}, y: {team: 'blue'}, z: {}}, policies: []}
}
