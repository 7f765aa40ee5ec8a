/**
 * The service model: frontends (VIP:port/proto) and their backends (IP:port), parsed and
 * validated without touching the kernel. Every check that can fail does so here, before a map
 * is written, so a rejected `apply` changes nothing.
 */
import {containsIp, lastAddress, parseCidr, tryParseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {LB_MAX_BACKENDS} from '../datapath/bpf/maps/lb4-services.js'

export type Protocol = 'tcp' | 'udp'
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp']

export interface Frontend {
  vip: string
  port: number
  proto: Protocol
}

export interface Backend {
  ip: string
  port: number
}

/** Kubernetes Service spec names: how the service is reached from outside the cluster. */
export type ServiceType = 'ClusterIP' | 'NodePort'
export type TrafficPolicy = 'Cluster' | 'Local'
export const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort']
export const TRAFFIC_POLICIES: readonly TrafficPolicy[] = ['Cluster', 'Local']

/**
 * One service as desired: a frontend and its backends (order = slot order). The rest is the
 * outside's way in (src/service/nodeport.ts): type NodePort opens `nodePort` on every node's IP
 * (allocated from 30000–32767 when not given), `externalIPs` take the frontend's port too, and
 * externalTrafficPolicy Local serves those only from the node's own backends. Absent: ClusterIP.
 */
export interface ServiceSpec {
  frontend: Frontend
  backends: Backend[]
  type?: ServiceType
  nodePort?: number
  externalIPs?: string[]
  externalTrafficPolicy?: TrafficPolicy
}

export interface ExternalOptions {
  type?: string
  nodePort?: number
  externalIPs?: string[]
  externalTrafficPolicy?: string
}

export const NODE_PORT_MIN = 30000
export const NODE_PORT_MAX = 32767

/** The external fields of a service, checked; only those set are returned. */
export function parseExternal(frontend: string, o: ExternalOptions): Omit<ServiceSpec, 'frontend' | 'backends'> {
  const out: Omit<ServiceSpec, 'frontend' | 'backends'> = {}
  const bad = (cause: string, hint: string) => new PnError('PN_SERVICE_INVALID', `parse service ${JSON.stringify(frontend)}: ${cause}`, {hint})
  if (o.type !== undefined) {
    if (!SERVICE_TYPES.includes(o.type as ServiceType)) throw bad(`type ${JSON.stringify(o.type)} is not ClusterIP or NodePort`, 'write "type": "NodePort" (or leave it out for ClusterIP)')
    if (o.type === 'NodePort') out.type = 'NodePort'
  }
  if (o.nodePort !== undefined) {
    if (out.type !== 'NodePort') throw bad('nodePort is set but type is not NodePort', 'add "type": "NodePort"')
    if (!Number.isInteger(o.nodePort) || o.nodePort < NODE_PORT_MIN || o.nodePort > NODE_PORT_MAX) {
      throw bad(`nodePort ${o.nodePort} is not in ${NODE_PORT_MIN}-${NODE_PORT_MAX}`, 'pick a port in the NodePort range, or leave nodePort out to have one allocated')
    }
    out.nodePort = o.nodePort
  }
  if (o.externalIPs !== undefined && o.externalIPs.length > 0) {
    out.externalIPs = [...new Set(o.externalIPs.map((ip) => parseIpv4('external ip', ip, ip, 'write an external IP as a dotted quad, e.g. 192.0.2.10')))]
  }
  if (o.externalTrafficPolicy !== undefined) {
    if (!TRAFFIC_POLICIES.includes(o.externalTrafficPolicy as TrafficPolicy)) throw bad(`externalTrafficPolicy ${JSON.stringify(o.externalTrafficPolicy)} is not Cluster or Local`, 'write "externalTrafficPolicy": "Local" or "Cluster"')
    if (o.externalTrafficPolicy === 'Local') out.externalTrafficPolicy = 'Local'
  }
  return out
}

/** `10.96.0.10:80/tcp` */
export function frontendKey(f: Frontend): string {
  return `${f.vip}:${f.port}/${f.proto}`
}

export function backendKey(b: Backend): string {
  return `${b.ip}:${b.port}`
}

function invalid(what: string, text: string, cause: string, hint: string): PnError {
  return new PnError('PN_SERVICE_INVALID', `parse ${what} ${JSON.stringify(text)}: ${cause}`, {hint})
}

const FRONTEND_HINT = 'write a frontend as VIP:PORT or VIP:PORT/tcp|udp, e.g. 10.96.0.10:80/tcp'
const BACKEND_HINT = 'write a backend as IP:PORT, e.g. 10.1.0.5:8080'

const OCTET = '(0|[1-9]\\d{0,2})'
/** Octets without leading zeros (what tryParseIp accepts); range-checked below. */
const DOTTED_QUAD = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`)

function parsePort(what: string, text: string, port: string, hint: string): number {
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw invalid(what, text, `port ${JSON.stringify(port)} is not 1-65535`, hint)
  return Number(port)
}

/** The address part must be a plain IPv4 address (services are IPv4 only). */
function parseIpv4(what: string, text: string, ip: string, hint: string): string {
  // Fast path (a 10,000-service apply parses 20,000 addresses): a plain dotted quad.
  const q = DOTTED_QUAD.exec(ip)
  if (q && Number(q[1]) < 256 && Number(q[2]) < 256 && Number(q[3]) < 256 && Number(q[4]) < 256) return ip
  const p = tryParseIp(ip)
  if (!p) throw invalid(what, text, `${JSON.stringify(ip)} is not an IP address`, hint)
  if (p.family !== 4) throw invalid(what, text, 'only IPv4 services are supported', hint)
  return ip.split('.').map((x) => String(Number(x))).join('.')
}

/** `VIP:PORT[/tcp|udp]`; protocol defaults to tcp (or `defaultProto`). */
export function parseFrontend(text: string, defaultProto: Protocol = 'tcp'): Frontend {
  const m = /^([^:/\s]+):([^/\s]*)(?:\/(\S*))?$/.exec(text.trim())
  if (!m) throw invalid('frontend', text, 'expected VIP:PORT[/tcp|udp]', FRONTEND_HINT)
  const proto = (m[3] ?? defaultProto).toLowerCase()
  if (!PROTOCOLS.includes(proto as Protocol)) throw invalid('frontend', text, `protocol ${JSON.stringify(m[3])} is not tcp or udp`, FRONTEND_HINT)
  const vip = parseIpv4('frontend', text, m[1], FRONTEND_HINT)
  const octets = vip.split('.').map(Number)
  if (octets[0] === 0 || octets[0] === 127 || octets[0] >= 224) {
    throw invalid('frontend', text, `${vip} cannot be a service address (unspecified, loopback, multicast or reserved)`, 'pick a VIP from your service CIDR, e.g. 10.96.0.0/12')
  }
  return {vip, port: parsePort('frontend', text, m[2], FRONTEND_HINT), proto: proto as Protocol}
}

/** `IP:PORT` */
export function parseBackend(text: string): Backend {
  const m = /^([^:\s]+):(\S*)$/.exec(text.trim())
  if (!m) throw invalid('backend', text, 'expected IP:PORT', BACKEND_HINT)
  const ip = parseIpv4('backend', text, m[1], BACKEND_HINT)
  if (ip === '0.0.0.0' || Number(ip.split('.')[0]) >= 224) throw invalid('backend', text, `${ip} cannot be a backend`, BACKEND_HINT)
  return {ip, port: parsePort('backend', text, m[2], BACKEND_HINT)}
}

/** A service from a frontend and backend strings, with per-service checks (duplicates, count). */
export function parseService(frontend: string, backends: string[], external: ExternalOptions = {}): ServiceSpec {
  const spec = {frontend: parseFrontend(frontend), backends: backends.map(parseBackend), ...parseExternal(frontend, external)}
  checkService(spec)
  return spec
}

export function checkService(spec: ServiceSpec): void {
  const seen = new Set<string>()
  for (const b of spec.backends) {
    const k = backendKey(b)
    if (seen.has(k)) {
      throw new PnError('PN_SERVICE_INVALID', `add service ${frontendKey(spec.frontend)}: backend ${k} is listed twice`, {
        hint: 'list each backend once (weights are not supported)',
      })
    }
    seen.add(k)
  }
  if (spec.backends.length > LB_MAX_BACKENDS) {
    throw new PnError('PN_SERVICE_LIMIT', `add service ${frontendKey(spec.frontend)}: ${spec.backends.length} backends, the map layout holds ${LB_MAX_BACKENDS} per service`, {
      hint: `split the backends over several services or drop some (one slot bank holds ${LB_MAX_BACKENDS})`,
    })
  }
}

/**
 * An apply file: a JSON list of `{"frontend": "VIP:PORT[/proto]", "backends": ["IP:PORT", …]}`.
 * Frontends must be unique; every entry is checked like `pn service add`. What `pn service list
 * --json` prints is accepted too (the envelope, backends as `{"address": …}`; counters ignored),
 * so a node's table can be saved and applied elsewhere.
 */
export function parseServiceList(text: string, source = 'input'): ServiceSpec[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new PnError('PN_SERVICE_INVALID', `read services ${source}: not valid JSON (${(err as Error).message})`, {hint: 'the file is a JSON list: [{"frontend": "10.96.0.10:80/tcp", "backends": ["10.1.0.5:8080"]}]'})
  }
  const env = value as {status?: unknown; result?: unknown} | null
  if (env && !Array.isArray(env) && typeof env === 'object' && env.status === 'ok' && Array.isArray(env.result)) value = env.result
  if (!Array.isArray(value)) {
    throw new PnError('PN_SERVICE_INVALID', `read services ${source}: expected a JSON list of services`, {hint: 'the file is a JSON list: [{"frontend": "10.96.0.10:80/tcp", "backends": ["10.1.0.5:8080"]}]'})
  }
  const seen = new Set<string>()
  // A saved `pn service list`: the frontends a NodePort or external IP opened (`via`) come back
  // from their service's own fields, so they are skipped here.
  const entries = value.filter((e) => !(e && typeof e === 'object' && typeof (e as {via?: unknown}).via === 'string'))
  return entries.map((entry, i) => {
    const e = entry as {frontend?: unknown; backends?: unknown; type?: unknown; nodePort?: unknown; externalIPs?: unknown; externalTrafficPolicy?: unknown}
    const backends = Array.isArray(e?.backends) ? e.backends.map((b) => (b && typeof b === 'object' ? (b as {address?: unknown}).address : b)) : undefined
    if (!e || typeof e.frontend !== 'string' || !backends || backends.some((b) => typeof b !== 'string')) {
      throw new PnError('PN_SERVICE_INVALID', `read services ${source}: entry ${i} is not {"frontend": "VIP:PORT[/proto]", "backends": ["IP:PORT", …]}`, {
        hint: 'every entry needs a frontend string and a backends list of strings (may be empty)',
      })
    }
    const ext = {type: e.type, nodePort: e.nodePort, externalIPs: e.externalIPs, externalTrafficPolicy: e.externalTrafficPolicy}
    if ((ext.type !== undefined && typeof ext.type !== 'string') || (ext.nodePort !== undefined && typeof ext.nodePort !== 'number') ||
      (ext.externalIPs !== undefined && (!Array.isArray(ext.externalIPs) || ext.externalIPs.some((x) => typeof x !== 'string'))) ||
      (ext.externalTrafficPolicy !== undefined && typeof ext.externalTrafficPolicy !== 'string')) {
      throw new PnError('PN_SERVICE_INVALID', `read services ${source}: entry ${i} has a mistyped type, nodePort, externalIPs or externalTrafficPolicy`, {
        hint: 'type and externalTrafficPolicy are strings, nodePort a number, externalIPs a list of strings (the Kubernetes Service spec names)',
      })
    }
    const spec = parseService(e.frontend, backends as string[], ext as ExternalOptions)
    const k = frontendKey(spec.frontend)
    if (seen.has(k)) {
      throw new PnError('PN_SERVICE_CONFLICT', `read services ${source}: frontend ${k} is listed twice`, {hint: 'merge the two entries into one'})
    }
    seen.add(k)
    return spec
  })
}

/** What a VIP must not be on this node: inside a pod CIDR, or one of the node's own addresses. */
export interface NodeAddressing {
  podCidrs: string[]
  addresses: string[]
}

/** A checker for many VIPs: the pod CIDRs are parsed once, addresses looked up in a set. */
export function vipChecker(node: NodeAddressing): (f: Frontend) => void {
  // IPv4 ranges as numbers: no BigInt per VIP.
  const cidrs = node.podCidrs
    .map((c) => ({text: c, cidr: parseCidr(c).cidr}))
    .filter((c) => c.cidr.family === 4)
    .map((c) => ({text: c.text, lo: Number(c.cidr.network), hi: Number(lastAddress(c.cidr))}))
  const addresses = new Set(node.addresses)
  return (f) => {
    const ip = ipv4Number(f.vip)
    for (const c of cidrs) {
      if (ip >= c.lo && ip <= c.hi) {
        throw new PnError('PN_SERVICE_CONFLICT', `add service ${frontendKey(f)}: VIP ${f.vip} is inside the pod CIDR ${c.text}`, {
          hint: 'take VIPs from a service CIDR that no node\'s pod CIDR overlaps (Kubernetes: --service-cluster-ip-range)',
        })
      }
    }
    if (addresses.has(f.vip)) {
      throw new PnError('PN_SERVICE_CONFLICT', `add service ${frontendKey(f)}: VIP ${f.vip} is an address of this node`, {
        hint: 'a VIP must not be a real address; pick one from the service CIDR',
      })
    }
  }
}

/** A canonical dotted quad (as parseFrontend returns it) as a u32. */
function ipv4Number(ip: string): number {
  const p = ip.split('.')
  return ((Number(p[0]) * 256 + Number(p[1])) * 256 + Number(p[2])) * 256 + Number(p[3])
}

export function checkVipAgainstNode(f: Frontend, node: NodeAddressing): void {
  const ip = tryParseIp(f.vip)!
  for (const c of node.podCidrs) {
    const cidr = parseCidr(c)
    if (cidr.cidr.family === 4 && containsIp(cidr.cidr, ip)) {
      throw new PnError('PN_SERVICE_CONFLICT', `add service ${frontendKey(f)}: VIP ${f.vip} is inside the pod CIDR ${c}`, {
        hint: 'take VIPs from a service CIDR that no node\'s pod CIDR overlaps (Kubernetes: --service-cluster-ip-range)',
      })
    }
  }
  if (node.addresses.includes(f.vip)) {
    throw new PnError('PN_SERVICE_CONFLICT', `add service ${frontendKey(f)}: VIP ${f.vip} is an address of this node`, {
      hint: 'a VIP must not be a real address; pick one from the service CIDR',
    })
  }
}
