/**
 * NodePort and external IPs: a service's ways in from outside the cluster become frontends of
 * their own on each node, beside its ClusterIP, so the datapath needs nothing new to find them
 * (bpf/include/nodeport.h):
 *   type NodePort        nodeIP:nodePort/proto, where nodeIP is this node's uplink IPv4 address
 *   externalIPs          externalIP:port/proto (the frontend's port, as in Kubernetes)
 *   externalTrafficPolicy Local   those frontends get only the backends inside this node's pod
 *                        CIDRs (none: their packets are dropped, DROP_NO_SERVICE); the ClusterIP
 *                        keeps every backend
 *
 * A nodePort not given is allocated from 30000–32767: the one the service had before (kept in
 * `services-external.json`), else a hash of its frontend probed upwards past ports in use. The
 * hash makes every node that applies the same file pick the same port. The same file records
 * which frontends each service expanded into, so an upsert or delete of the service replaces or
 * removes them too.
 */
import path from 'node:path'
import {containsIp, parseCidr, tryParseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {readFileIfExists, writeFileAtomic} from '../state/files.js'
import {frontendKey, NODE_PORT_MAX, NODE_PORT_MIN, type Backend, type ServiceSpec} from './model.js'

export const EXTERNAL_FILE = 'services-external.json'

/** Per service (its ClusterIP frontend key): its external fields and the frontends it expanded into. */
export type ExternalIndex = Record<string, {nodePort?: number; externalIPs?: string[]; externalTrafficPolicy?: 'Local'; derived: string[]}>

export async function readExternalIndex(stateDir: string): Promise<ExternalIndex> {
  const buf = await readFileIfExists(path.join(stateDir, EXTERNAL_FILE))
  if (!buf) return {}
  try {
    return JSON.parse(buf.toString('utf8')) as ExternalIndex
  } catch {
    return {}
  }
}

export async function writeExternalIndex(stateDir: string, idx: ExternalIndex): Promise<void> {
  await writeFileAtomic(path.join(stateDir, EXTERNAL_FILE), JSON.stringify(idx, null, 1) + '\n')
}

function hashPort(key: string): number {
  let h = 2166136261
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0
  return NODE_PORT_MIN + (h % (NODE_PORT_MAX - NODE_PORT_MIN + 1))
}

/**
 * Give every NodePort service without a nodePort one. `taken`: `port/proto` already used by
 * services outside `specs`. Explicit ports that collide are PN_SERVICE_CONFLICT.
 */
export function allocateNodePorts(specs: ServiceSpec[], previous: ExternalIndex, taken: Set<string> = new Set()): ServiceSpec[] {
  const used = new Set(taken)
  for (const s of specs) {
    if (s.type !== 'NodePort' || s.nodePort === undefined) continue
    const k = `${s.nodePort}/${s.frontend.proto}`
    if (used.has(k)) {
      throw new PnError('PN_SERVICE_CONFLICT', `add service ${frontendKey(s.frontend)}: nodePort ${k} is already another service's`, {
        hint: 'pick another nodePort, or leave it out to have one allocated',
      })
    }
    used.add(k)
  }
  const need = specs.filter((s) => s.type === 'NodePort' && s.nodePort === undefined).sort((a, b) => frontendKey(a.frontend).localeCompare(frontendKey(b.frontend)))
  const given = new Map<ServiceSpec, number>()
  const span = NODE_PORT_MAX - NODE_PORT_MIN + 1
  for (const s of need) {
    const key = frontendKey(s.frontend)
    const prev = previous[key]?.nodePort
    let port = prev !== undefined && !used.has(`${prev}/${s.frontend.proto}`) ? prev : undefined
    for (let i = 0, p = hashPort(key); port === undefined && i < span; i++, p = p === NODE_PORT_MAX ? NODE_PORT_MIN : p + 1) {
      if (!used.has(`${p}/${s.frontend.proto}`)) port = p
    }
    if (port === undefined) {
      throw new PnError('PN_SERVICE_LIMIT', `add service ${key}: every nodePort of ${NODE_PORT_MIN}-${NODE_PORT_MAX} is taken`, {hint: 'delete NodePort services you no longer need'})
    }
    used.add(`${port}/${s.frontend.proto}`)
    given.set(s, port)
  }
  return specs.map((s) => (given.has(s) ? {...s, nodePort: given.get(s)} : s))
}

/** What expansion needs of the node: its SNAT/NodePort address and pod CIDRs (for Local). */
export interface ExpandNode {
  nodeIp?: string
  podCidrs: string[]
}

/**
 * The frontends this node programs for `specs` (ClusterIPs first, as given), and the index of
 * what each service expanded into.
 */
export function expandForNode(specs: ServiceSpec[], node: ExpandNode): {specs: ServiceSpec[]; index: ExternalIndex} {
  const cidrs = node.podCidrs.map((c) => parseCidr(c).cidr).filter((c) => c.family === 4)
  const local = (b: Backend) => cidrs.some((c) => containsIp(c, tryParseIp(b.ip)!))
  const out: ServiceSpec[] = []
  const index: ExternalIndex = {}
  const seen = new Map<string, string>()
  const add = (owner: string, spec: ServiceSpec) => {
    const k = frontendKey(spec.frontend)
    const other = seen.get(k)
    if (other !== undefined) {
      throw new PnError('PN_SERVICE_CONFLICT', `add service ${owner}: frontend ${k} is also ${other === k ? 'a service of its own' : `reached through ${other}`}`, {
        hint: 'give each service its own nodePort and external IPs',
      })
    }
    seen.set(k, owner)
    out.push(spec)
    return k
  }
  for (const s of specs) add(frontendKey(s.frontend), {frontend: s.frontend, backends: s.backends})
  for (const s of specs) {
    const key = frontendKey(s.frontend)
    const backends = s.externalTrafficPolicy === 'Local' ? s.backends.filter(local) : s.backends
    const derived: string[] = []
    if (s.type === 'NodePort' && s.nodePort !== undefined) {
      if (!node.nodeIp) {
        throw new PnError('PN_SERVICE_INVALID', `add service ${key}: type NodePort needs the node's IPv4 address, and its uplink has none`, {hint: 'give the uplink an IPv4 address, or drop type NodePort'})
      }
      derived.push(add(key, {frontend: {vip: node.nodeIp, port: s.nodePort, proto: s.frontend.proto}, backends}))
    }
    for (const ip of s.externalIPs ?? []) derived.push(add(key, {frontend: {vip: ip, port: s.frontend.port, proto: s.frontend.proto}, backends}))
    if (derived.length > 0 || s.nodePort !== undefined) {
      index[key] = {
        ...(s.nodePort !== undefined ? {nodePort: s.nodePort} : {}),
        ...(s.externalIPs?.length ? {externalIPs: s.externalIPs} : {}),
        ...(s.externalTrafficPolicy === 'Local' ? {externalTrafficPolicy: 'Local' as const} : {}),
        derived,
      }
    }
  }
  return {specs: out, index}
}

/** `port/proto` of every nodePort in `idx` except those of `except`. */
export function nodePortsInUse(idx: ExternalIndex, except: Set<string>): Set<string> {
  const out = new Set<string>()
  for (const [k, v] of Object.entries(idx)) if (!except.has(k) && v.nodePort !== undefined) out.add(`${v.nodePort}/${k.slice(k.lastIndexOf('/') + 1)}`)
  return out
}
