/**
 * The node's host side, as `pn node init` builds it (what cilium-agent does at start): the
 * pn_host ↔ pn_net pair, the router IP /32 (/128) on pn_host, the pod CIDR route via it, and
 * Cilium's sysctls. Each function reads the kernel first and changes only what differs, pushing
 * the inverse of what it created on the caller's undo stack. Changes are kernel ops (src/kernel).
 */
import type {Runner} from '../exec/runner.js'
import {PnError} from '../errors.js'
import {canonicalIp, cidrFamily, cidrsOverlap, formatCidr, hostPrefix, parseCidr, tryParseIp} from '../cidr/cidr.js'
import type {UndoStack} from '../flow/undo.js'
import {applyOne} from '../kernel/backend.js'
import type {AddrLink, KernelOp, RouteEntry} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'
import {HOST_DEVICE, NET_DEVICE} from './devices.js'
import {deleteLinkByName, getLink, isVethPairOf, parseJson, randomMac, type LinkInfo} from './link.js'
import {LXC_RE} from './sweep.js'
import {devSysctl, readSysctls, writeSysctls} from './sysctl.js'

export interface DeviceState {
  name: string
  ifindex: number
  mac: string
  mtu: number
}

/** Every sysctl Cilium sets for the host devices, plus global forwarding (IPv6 too with a v6 pod CIDR); the global switches first (they reset per-device forwarding). */
export function nodeSysctls(podCidrs: string[]): Record<string, string> {
  const out: Record<string, string> = {'net.ipv4.ip_forward': '1', 'net.ipv4.conf.all.rp_filter': '0'}
  const v6 = podCidrs.some((c) => cidrFamily(c) === 6)
  // ip6_forward checks the global switch, not the device's: without it routed IPv6 (pod to
  // another node) is dropped. Like ip_forward it resets the per-device values, so it goes first.
  if (v6) out['net.ipv6.conf.all.forwarding'] = '1'
  for (const dev of [HOST_DEVICE, NET_DEVICE]) {
    out[devSysctl('ipv4', dev, 'forwarding')] = '1'
    out[devSysctl('ipv4', dev, 'rp_filter')] = '0'
    out[devSysctl('ipv4', dev, 'accept_local')] = '1'
    out[devSysctl('ipv4', dev, 'send_redirects')] = '0'
    if (v6) out[devSysctl('ipv6', dev, 'forwarding')] = '1'
  }
  return out
}

/** The pod CIDR routes: v4 via the router IP, v6 without `via` (a gateway cannot be a local v6 address). */
export function podCidrRouteOps(podCidrs: string[], routerIps: string[]): Extract<KernelOp, {kind: 'route.add'}>[] {
  return podCidrs.map((c, i) => ({
    kind: 'route.add' as const,
    replace: true,
    dst: c,
    ...(cidrFamily(c) === 4 ? {via: routerIps[i]} : {}),
    dev: HOST_DEVICE,
    src: routerIps[i],
  }))
}

/** The pod CIDR routes as `ip route` shows them (the actions `pn node init` reports). */
export function podCidrRoutes(podCidrs: string[], routerIps: string[]): string[] {
  return podCidrRouteOps(podCidrs, routerIps).map((r) => `${r.dst}${r.via ? ` via ${r.via}` : ''} dev ${r.dev} src ${r.src}`)
}

/** Router addresses currently on pn_host (none when it is absent or cannot be read: init then adds them). */
export async function hostAddresses(runner: Runner): Promise<string[]> {
  const {links} = await applyOne(kernelFor(runner), {kind: 'addr.list', dev: HOST_DEVICE}).catch(() => ({links: []}))
  return (links[0]?.addr_info ?? [])
    .filter((a): a is {local: string; prefixlen: number; family?: string} => a.local !== undefined && a.prefixlen !== undefined)
    .filter((a) => !(a.family === 'inet6' && a.local.startsWith('fe80')))
    .map((a) => `${canonicalIp(a.local)}/${a.prefixlen}`)
}

/** pn's own devices: pn_host, pn_net and the host side of pod veths (`lxc` + 12 hex). */
export function isPnDevice(dev: string): boolean {
  return dev === HOST_DEVICE || dev === NET_DEVICE || LXC_RE.test(dev)
}

/** An address or route of the node's netns, as the prefix it covers. */
export interface NodeNetwork {
  kind: 'address' | 'route'
  /** The prefix: an address's subnet (local/prefixlen), a route's destination. */
  cidr: string
  /** Devices it is on (a multipath route: every next hop's); empty for a blackhole/unreachable route. */
  devs: string[]
  /** As `ip` would show it: `172.31.98.1/24 dev up0`, `local 172.31.98.1 dev up0 table local`. */
  text: string
}


/** A prefix as text normalised to its network, or undefined for what is not one (`default` is left out: it covers everything by design). */
function prefixOf(dst: string): string | undefined {
  if (dst === 'default') return undefined
  const slash = dst.indexOf('/')
  const ip = tryParseIp(slash < 0 ? dst : dst.slice(0, slash))
  if (!ip) return undefined
  const text = slash < 0 ? `${dst}/${ip.family === 4 ? 32 : 128}` : dst
  const c = parseCidr(text).cidr
  return c.prefix === 0 ? undefined : formatCidr(c)
}

/**
 * Every address and route of the node's netns from `ip -j addr show` and `ip -j route show table
 * all` (per family), as prefixes; default routes left out. Pure, for the unit tests.
 */
export function parseNodeNetworks(addrJson: string, routeJsons: string[]): NodeNetwork[] {
  return networksOf(parseJson<AddrLink[]>(addrJson, 'show addresses') ?? [], routeJsons.flatMap((j) => parseJson<RouteEntry[]>(j, 'show routes') ?? []))
}

/** The same, from the kernel ops' results. */
export function networksOf(links: AddrLink[], routes: RouteEntry[]): NodeNetwork[] {
  const out: NodeNetwork[] = []
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      if (!a.local || a.prefixlen === undefined) continue
      // A point-to-point address (`peer`): its prefix length is the peer's; the local side is one host.
      const cidr = prefixOf(a.address && a.address !== a.local ? a.local : `${a.local}/${a.prefixlen}`)
      if (cidr) out.push({kind: 'address', cidr, devs: link.ifname ? [link.ifname] : [], text: `${a.local}/${a.prefixlen} dev ${link.ifname}`})
    }
  }
  for (const rt of routes) {
    const cidr = prefixOf(rt.dst)
    if (!cidr) continue
    const hops = rt.nexthops ?? [{gateway: rt.gateway, dev: rt.dev}]
    const devs = hops.flatMap((h) => (h.dev ? [h.dev] : []))
    const via = hops.map((h) => `${h.gateway ? `via ${h.gateway} ` : ''}${h.dev ? `dev ${h.dev}` : ''}`.trim()).filter(Boolean).join(' nexthop ')
    const type = rt.type && rt.type !== 'unicast' ? `${rt.type} ` : ''
    const table = rt.table && rt.table !== 'main' ? ` table ${rt.table}` : ''
    out.push({kind: 'route', cidr, devs, text: `${type}${rt.dst}${via ? ` ${via}` : ''}${table}`})
  }
  return out
}

/** The node netns's addresses and routes (three reads: addresses, IPv4 and IPv6 routes of every table). */
export async function nodeNetworks(runner: Runner): Promise<NodeNetwork[]> {
  const kernel = kernelFor(runner)
  const [addrs, v4, v6] = await Promise.all([
    applyOne(kernel, {kind: 'addr.list'}),
    applyOne(kernel, {kind: 'route.list', family: 4, table: 'all'}),
    // A kernel booted with ipv6.disable=1 refuses the family: it has no IPv6 routes either.
    applyOne(kernel, {kind: 'route.list', family: 6, table: 'all'}).catch(() => ({routes: []})),
  ])
  return networksOf(addrs.links, [...v4.routes, ...v6.routes])
}

/**
 * What a pod CIDR must not overlap: the node's addresses and routes that are not pn's (pn_host,
 * pn_net and lxc devices carry what an earlier init and its pods made, so a re-run passes).
 */
export function foreignOverlaps(podCidr: string, networks: NodeNetwork[]): NodeNetwork[] {
  const pod = parseCidr(podCidr).cidr
  return networks.filter((n) => (n.devs.length === 0 || !n.devs.every(isPnDevice)) && cidrsOverlap(pod, parseCidr(n.cidr).cidr))
}

/** True when the main table routes `cidr` exactly as pn wants. */
export async function podCidrRouteOk(runner: Runner, cidr: string, routerIp: string): Promise<boolean> {
  const fam = cidrFamily(cidr)
  const routes = await applyOne(kernelFor(runner), {kind: 'route.list', family: fam, exact: cidr}).then((r) => r.routes, () => [])
  return routes.some(
    (rt) => rt.dev === HOST_DEVICE && rt.prefsrc !== undefined && canonicalIp(rt.prefsrc) === routerIp &&
      (fam === 6 || (rt.gateway !== undefined && canonicalIp(rt.gateway) === routerIp)),
  )
}

/** Create pn_host ↔ pn_net only if missing (MTU fixed, both up); PN_NODE_CONFLICT for a foreign device of that name. */
export async function setupHostDevices(runner: Runner, mtu: number, undo: UndoStack): Promise<string[]> {
  const actions: string[] = []
  const [host, net] = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE)])
  const ops: KernelOp[] = []
  if (!host && !net) {
    // Only when missing: recreating would change MACs and ifindexes under loaded programs (Cilium PR #4214).
    ops.push({kind: 'link.add', type: 'veth', name: HOST_DEVICE, address: randomMac(), mtu, txqueuelen: 1000, peer: {name: NET_DEVICE, address: randomMac(), mtu}})
    undo.push(`delete ${HOST_DEVICE}`, () => deleteLinkByName(runner, HOST_DEVICE))
    actions.push(`created ${HOST_DEVICE} <-> ${NET_DEVICE}`)
  } else if (!isVethPairOf(host, net)) {
    throw new PnError('PN_NODE_CONFLICT', `create ${HOST_DEVICE}/${NET_DEVICE}: a device with that name exists but is not pn's veth pair`, {
      hint: `rename or delete that device yourself (\`ip link show ${host ? HOST_DEVICE : NET_DEVICE}\`): pn, reset included, leaves devices it did not make alone`,
    })
  } else {
    for (const d of [host, net] as LinkInfo[]) {
      if (d.mtu !== mtu) {
        ops.push({kind: 'link.set', name: d.ifname, mtu})
        actions.push(`set ${d.ifname} mtu ${mtu}`)
      }
    }
  }
  for (const [name, d] of [[HOST_DEVICE, host], [NET_DEVICE, net]] as const) {
    if (!d || !(d.flags ?? []).includes('UP')) ops.push({kind: 'link.set', name, up: true})
  }
  if (ops.length === 0) return actions
  if (host && net && ops.some((o) => o.kind === 'link.set' && o.up)) actions.push(`set ${HOST_DEVICE}/${NET_DEVICE} up`)
  await kernelFor(runner).apply(ops)
  return actions
}

export interface RouterAddressing {
  podCidrs: string[]
  routerIps: string[]
  /** The previous configuration, when reconfiguring (--force): what is no longer wanted goes. */
  previous?: {podCidrs: string[]; routerIps: string[]}
}

/** Router IPs on pn_host and the pod CIDR routes via them, in one `ip -batch`. */
export async function setupRouterAddressing(runner: Runner, want: RouterAddressing, undo: UndoStack): Promise<string[]> {
  const actions: string[] = []
  const have = await hostAddresses(runner)
  const wanted = want.routerIps.map((r) => `${r}/${hostPrefix(r)}`)
  const ops: KernelOp[] = []
  const prev = want.previous
  if (prev) {
    prev.podCidrs.forEach((c, i) => {
      if (!want.podCidrs.includes(c)) ops.push({kind: 'route.del', dst: c, dev: HOST_DEVICE})
      const old = `${prev.routerIps[i]}/${hostPrefix(prev.routerIps[i])}`
      if (!wanted.includes(old) && have.includes(old)) ops.push({kind: 'addr.del', address: old, dev: HOST_DEVICE})
    })
  }
  for (const a of wanted) {
    if (!have.includes(a)) {
      ops.push({kind: 'addr.add', replace: true, address: a, dev: HOST_DEVICE, scope: 'link', ...(a.includes(':') ? {nodad: true} : {})})
      actions.push(`added ${a} to ${HOST_DEVICE}`)
    }
  }
  const routeOps = podCidrRouteOps(want.podCidrs, want.routerIps)
  const routes = podCidrRoutes(want.podCidrs, want.routerIps)
  const kernel = kernelFor(runner)
  for (let i = 0; i < want.podCidrs.length; i++) {
    if (!(await podCidrRouteOk(runner, want.podCidrs[i], want.routerIps[i])) || ops.length > 0) {
      ops.push(routeOps[i])
      actions.push(`route ${routes[i]}`)
      const cidr = want.podCidrs[i]
      undo.push(`delete route ${cidr}`, () => kernel.apply([{kind: 'route.del', dst: cidr, dev: HOST_DEVICE, missingOk: true}]).catch(() => undefined))
    }
  }
  if (ops.length > 0) await kernel.apply(ops)
  return actions
}

/** Write the node sysctls that differ; returns `key=value` of what was written. */
export async function setupHostSysctls(runner: Runner, podCidrs: string[]): Promise<string[]> {
  const wanted = nodeSysctls(podCidrs)
  const current = await readSysctls(runner, Object.keys(wanted))
  const written = await writeSysctls(runner, wanted, {current})
  return written.map((k) => `${k}=${wanted[k]}`)
}

/** pn_host and pn_net as they are now (absent ones left out). */
export async function hostDevices(runner: Runner): Promise<DeviceState[]> {
  const devs = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE)])
  return devs.filter((d): d is LinkInfo => !!d).map((d) => ({name: d.ifname, ifindex: d.ifindex, mac: d.address, mtu: d.mtu}))
}

/**
 * Delete pn_host ↔ pn_net, only when they are pn's veth pair (created together, they never exist
 * apart): a device of that name pn did not make is left alone, with its addresses and routes.
 */
export async function deleteHostDevices(runner: Runner): Promise<{removed: string[]; kept: string[]}> {
  const [host, net] = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE)])
  if (!host && !net) return {removed: [], kept: []}
  if (!isVethPairOf(host, net)) return {removed: [], kept: [host?.ifname, net?.ifname].filter((x): x is string => !!x)}
  const removed: string[] = []
  if (await deleteLinkByName(runner, HOST_DEVICE)) removed.push(`${HOST_DEVICE} <-> ${NET_DEVICE}`)
  if (await deleteLinkByName(runner, NET_DEVICE)) removed.push(NET_DEVICE)
  return {removed, kept: []}
}
