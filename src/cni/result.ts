/**
 * Result shaping per requested cniVersion: the same attachment printed as 0.3.x/0.4.0 (ips carry
 * `version`) or 1.x (no `version`; 1.1.0 interfaces may carry `mtu`). The shape follows what
 * cilium-cni returns: host veth first (no sandbox), pod interface second, every ip pointing at
 * interface 1, gateway = router IP, routes `<router>/32` and default via the router.
 */
import {PnError} from '../errors.js'
import {compareVersions, hasIpVersionField, type CniDns, type CniIpConfig, type CniResult, type CniRoute} from './spec.js'

export interface Attachment {
  hostIfname: string
  hostMac: string
  podIfname: string
  podMac: string
  netns: string
  mtu?: number
  /** Pod addresses without prefix. */
  ips: string[]
  /** Router IP per family (IPv4 first). */
  routerIps: string[]
}

const family = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4)

/** Build the ADD result for `version`. */
export function buildResult(version: string, a: Attachment, dns: CniDns = {}): CniResult {
  const withVersion = hasIpVersionField(version)
  const routerFor = (f: 4 | 6) => a.routerIps.find((r) => family(r) === f)
  const ips: CniIpConfig[] = a.ips.map((ip) => {
    const f = family(ip)
    const gateway = routerFor(f)
    return {
      ...(withVersion ? {version: String(f) as '4' | '6'} : {}),
      interface: 1,
      address: `${ip}/${f === 4 ? 32 : 128}`,
      ...(gateway ? {gateway} : {}),
    }
  })
  const routes: CniRoute[] = []
  for (const f of [4, 6] as const) {
    if (!a.ips.some((ip) => family(ip) === f)) continue
    const router = routerFor(f)
    if (!router) continue
    routes.push({dst: `${router}/${f === 4 ? 32 : 128}`})
    routes.push({dst: f === 4 ? '0.0.0.0/0' : '::/0', gw: router})
  }
  const mtu = compareVersions(version, '1.1.0') >= 0 && a.mtu ? {mtu: a.mtu} : {}
  return {
    cniVersion: version,
    interfaces: [
      {name: a.hostIfname, mac: a.hostMac, ...mtu},
      {name: a.podIfname, mac: a.podMac, sandbox: a.netns, ...mtu},
    ],
    ips,
    ...(routes.length > 0 ? {routes} : {}),
    dns: {...dns},
  }
}

/** Print like skel: pretty JSON, 4-space indent (libcni does not care about formatting). */
export function formatResult(r: unknown): string {
  return JSON.stringify(r, null, 4)
}

/** A prevResult of any supported version, normalised (ips without `version`, family derived). */
export interface PrevResult {
  cniVersion: string
  interfaces: {name: string; mac?: string; sandbox?: string}[]
  ips: {address: string; ip: string; prefix: number; family: 4 | 6; gateway?: string; interface?: number}[]
  routes: {dst: string; gw?: string}[]
}

/** Parse a prevResult (0.3.0 … 1.1.0). 0.1.0/0.2.0 shapes (ip4/ip6) are refused as invalid config. */
export function parsePrevResult(raw: Record<string, unknown>): PrevResult {
  const bad = (cause: string) =>
    new PnError('PN_CNI_INVALID_CONFIG', `read prevResult: ${cause}`, {
      hint: 'prevResult must be the result pn printed for this attachment (cniVersion 0.3.0 or later)',
    })
  if ('ip4' in raw || 'ip6' in raw) throw bad('0.1.0/0.2.0 result format (ip4/ip6) is not supported')
  const interfaces = Array.isArray(raw.interfaces) ? raw.interfaces : []
  const ipsRaw = Array.isArray(raw.ips) ? raw.ips : []
  const routesRaw = Array.isArray(raw.routes) ? raw.routes : []
  const out: PrevResult = {
    cniVersion: typeof raw.cniVersion === 'string' ? raw.cniVersion : '',
    interfaces: [],
    ips: [],
    routes: [],
  }
  for (const i of interfaces) {
    const o = (i ?? {}) as Record<string, unknown>
    if (typeof o.name !== 'string') throw bad('interface without a name')
    out.interfaces.push({
      name: o.name,
      ...(typeof o.mac === 'string' && o.mac ? {mac: o.mac.toLowerCase()} : {}),
      ...(typeof o.sandbox === 'string' && o.sandbox ? {sandbox: o.sandbox} : {}),
    })
  }
  for (const i of ipsRaw) {
    const o = (i ?? {}) as Record<string, unknown>
    if (typeof o.address !== 'string' || !o.address.includes('/')) throw bad(`ip address ${JSON.stringify(o.address)} is not a CIDR`)
    const [ip, prefix] = o.address.split('/')
    out.ips.push({
      address: o.address,
      ip,
      prefix: Number(prefix),
      family: family(ip),
      ...(typeof o.gateway === 'string' && o.gateway ? {gateway: o.gateway} : {}),
      ...(typeof o.interface === 'number' ? {interface: o.interface} : {}),
    })
  }
  for (const r of routesRaw) {
    const o = (r ?? {}) as Record<string, unknown>
    if (typeof o.dst !== 'string') throw bad('route without dst')
    out.routes.push({dst: o.dst, ...(typeof o.gw === 'string' && o.gw ? {gw: o.gw} : {})})
  }
  return out
}
