/**
 * The veth connector (Cilium's connector.SetupVeth): a host-side `lxc<hash>` and the pod's
 * `eth0`, the pod's /32 (/128) and its two routes via the router IP.
 *
 * pn creates the peer directly inside the pod netns under its final name
 * (`ip link add lxc… type veth peer name eth0 netns PATH`) instead of Cilium's temporary name
 * + move + rename: no tmp-name collisions, and no namespace move, whose synchronize_net() wait
 * cost ~19 ms per pair here (docs/NODE.md has the measurement).
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {canonicalIp as normalizeIp, hostPrefix, ipFamily} from '../cidr/cidr.js'
import {sha256Hex} from '../state/digest.js'
import {applyOne, type KernelBackend} from '../kernel/backend.js'
import {KernelError} from '../kernel/errors.js'
import type {KernelOp} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'
import {randomMac} from './link.js'
import {devSysctl} from './sysctl.js'
import {netnsAlive} from './netns.js'
import {validateContainerId, validateIfname, validateNetnsPath} from './validate.js'

/** `lxc` + 12 hex of sha256(`containerId:ifname`): 15 chars, so DEL/CHECK find it without state. */
export function hostIfnameFor(containerId: string, ifname: string): string {
  return 'lxc' + sha256Hex(`${containerId}:${ifname}`).slice(0, 12)
}

export interface SetupVethOptions {
  containerId: string
  ifname: string
  /** Pod netns path (/run/netns/x, /proc/PID/ns/net), already checked by the flow (requireNetns). */
  netns: string
  mtu: number
  /** Pod addresses (plain IPs, one per family); without them only the link is made. */
  ips?: string[]
  /** Router IP per family (pn_host's address); required with `ips`. */
  routerIps?: string[]
  /** MTU of the pod's default route (default: mtu). */
  routeMtu?: number
  /** Add `podIP/32 dev lxc…` in the host netns (routing mode host-routes: Cilium's endpoint routes). */
  hostRoutes?: boolean
}

export interface VethRoute {
  dst: string
  gw?: string
  mtu?: number
  scope?: 'link'
}

export interface VethResult {
  hostIfname: string
  hostMac: string
  hostIfindex: number
  podIfname: string
  podMac: string
  podIfindex: number
  netns: string
  mtu: number
  /** Pod addresses with prefix (`10.0.1.5/32`). */
  addresses: string[]
  /** Routes inside the pod, most specific first. */
  routes: VethRoute[]
  /** Host-netns routes pointing at the lxc device (host-routes mode). */
  hostRoutes: string[]
}

interface PodAddressing {
  addresses: string[]
  routes: VethRoute[]
  /** The kernel ops inside the pod netns, in order. */
  ops: KernelOp[]
}

/** The pod's addresses and the seed's routing table: `R dev eth0 scope link` + `default via R dev eth0 mtu M`. */
export function podAddressing(opts: Pick<SetupVethOptions, 'ifname' | 'ips' | 'routerIps' | 'mtu' | 'routeMtu'>): PodAddressing {
  const out: PodAddressing = {addresses: [], routes: [], ops: []}
  const ips = (opts.ips ?? []).map(normalizeIp)
  if (ips.length === 0) return out
  const routers = (opts.routerIps ?? []).map(normalizeIp)
  const routeMtu = opts.routeMtu ?? opts.mtu
  const dev = opts.ifname
  out.ops.push({kind: 'link.set', name: dev, up: true})
  const defaults: KernelOp[] = []
  for (const ip of ips) {
    const family = ipFamily(ip)
    const router = routers.find((r) => ipFamily(r) === family)
    if (!router) {
      throw new PnError('PN_INVALID_ARGUMENT', `configure pod address ${ip}: no IPv${family} router IP to route through`, {
        hint: 'run `pn node init` first, or pass --router-ip for standalone use',
      })
    }
    const plen = hostPrefix(ip)
    out.addresses.push(`${ip}/${plen}`)
    // No DAD: the address is unique by IPAM, and DAD would delay the pod's first packets.
    out.ops.push({kind: 'addr.add', dev, address: `${ip}/${plen}`, ...(family === 6 ? {nodad: true} : {})})
    // The pod has no subnet route at all: the router is reachable only through this /32 link
    // route, so every packet (even to a neighbour pod) goes to the host and its datapath.
    out.routes.push({dst: `${router}/${plen}`, scope: 'link'})
    out.ops.push({kind: 'route.add', dst: `${router}/${plen}`, dev, scope: 'link'})
    const any = family === 4 ? '0.0.0.0/0' : '::/0'
    out.routes.push({dst: any, gw: router, mtu: routeMtu})
    defaults.push({kind: 'route.add', dst: any, via: router, dev, mtu: routeMtu})
  }
  out.ops.push(...defaults)
  out.routes.sort((a, b) => Number(b.dst.split('/')[1]) - Number(a.dst.split('/')[1]))
  return out
}

/** The IPv6 router address a dual-stack (or IPv6-only) pod routes through, if it has an IPv6 address. */
function podRouter6(opts: Pick<SetupVethOptions, 'ips' | 'routerIps'>): string | undefined {
  if (!(opts.ips ?? []).some((ip) => ipFamily(ip) === 6)) return undefined
  return (opts.routerIps ?? []).map(normalizeIp).find((r) => ipFamily(r) === 6)
}

/**
 * Create the pair and configure the pod side; any failure after the pair exists removes the pair.
 * `kernel`: the backend (default: the tools backend over `runner`; golden tests record the ops).
 */
export async function setupVeth(runner: Runner, opts: SetupVethOptions, kernel: KernelBackend = kernelFor(runner)): Promise<VethResult> {
  validateContainerId(opts.containerId)
  validateIfname(opts.ifname)
  validateNetnsPath(opts.netns) // it becomes a word of the `ip -batch` line below
  const pod = podAddressing(opts)
  const hostIfname = hostIfnameFor(opts.containerId, opts.ifname)
  const hostMac = randomMac()
  const podMac = randomMac()
  const dev = hostIfname
  const hostOps: KernelOp[] = [
    {kind: 'link.add', type: 'veth', name: hostIfname, address: hostMac, mtu: opts.mtu, txqueuelen: 1000,
      peer: {name: opts.ifname, address: podMac, mtu: opts.mtu, netns: opts.netns}},
    {kind: 'link.set', name: hostIfname, up: true},
  ]
  const hostRoutes = opts.hostRoutes ? pod.addresses.map((a) => a) : []
  for (const dst of hostRoutes) hostOps.push({kind: 'route.add', replace: true, dst, dev, scope: 'link'})
  // Without BPF nothing answers the pod's IPv6 neighbour solicitation for its router: Linux
  // answers ARP for any local address on any device, but NDP only for the receiving device's
  // own addresses. A proxy entry on the lxc answers it (goes with the link).
  const proxyNdp = opts.hostRoutes ? podRouter6(opts) : undefined
  if (proxyNdp) hostOps.push({kind: 'neigh.add', proxy: true, dst: proxyNdp, dev})
  // And the node's solicitation for the pod: the kernel sends none until the lxc's own
  // link-local address has passed DAD (a second or two after the link comes up), so IPv6 to a
  // new pod would be lost meanwhile. The pod's MAC is ours to choose: a permanent entry.
  if (opts.hostRoutes) {
    for (const a of pod.addresses.filter((x) => x.includes(':'))) hostOps.push({kind: 'neigh.add', replace: true, dst: a.split('/')[0], lladdr: podMac, dev, permanent: true})
  }

  try {
    await kernel.apply(hostOps)
  } catch (err) {
    // The pair was not created (the create op failed, or the error came before any op ran): nothing to undo.
    if (!(err instanceof KernelError) || err.index === 0) {
      if (err instanceof KernelError && err.errno === 'EEXIST') await explainCreateFailure(kernel, opts, hostIfname, err)
      throw err
    }
    await deleteHostSide(kernel, hostIfname)
    throw err
  }
  try {
    await kernel.apply([
      // Let pod addresses be used as source when the host stack routes for the pod (Cilium does the same).
      {kind: 'sysctl.set', key: devSysctl('ipv4', hostIfname, 'rp_filter'), value: '0'},
      // Answer at once: the default proxy_delay holds a multicast solicitation up to 0.8 s.
      ...(proxyNdp
        ? ([
            {kind: 'sysctl.set', key: devSysctl('ipv6', hostIfname, 'proxy_ndp'), value: '1'},
            {kind: 'sysctl.set', key: `net.ipv6.neigh.${hostIfname}.proxy_delay`, value: '0'},
          ] satisfies KernelOp[])
        : []),
    ])
    if (pod.ops.length > 0) await kernel.apply(pod.ops, {netns: opts.netns})
    const host = (await applyOne(kernel, {kind: 'link.get', name: hostIfname})).link
    if (!host) throw new PnError('PN_LINK_NOT_FOUND', `create veth ${hostIfname}: link vanished after creation`)
    return {
      hostIfname,
      hostMac,
      hostIfindex: host.ifindex,
      podIfname: opts.ifname,
      podMac,
      podIfindex: host.link_index ?? 0,
      netns: opts.netns,
      mtu: opts.mtu,
      addresses: pod.addresses,
      routes: pod.routes,
      hostRoutes,
    }
  } catch (err) {
    await deleteHostSide(kernel, hostIfname)
    throw err
  }
}

/** Undo of a half-configured pair: deleting the host side takes the peer along. */
async function deleteHostSide(kernel: KernelBackend, hostIfname: string): Promise<void> {
  await kernel.apply([{kind: 'link.del', name: hostIfname, missingOk: true}]).catch(() => undefined)
}

/** A name of the pair is taken (EEXIST on the create): say which one, with what to run next. */
async function explainCreateFailure(kernel: KernelBackend, opts: SetupVethOptions, hostIfname: string, err: KernelError): Promise<void> {
  if ((await applyOne(kernel, {kind: 'link.get', name: hostIfname})).link) {
    throw new PnError('PN_LINK_EXISTS', `create veth ${hostIfname}: host interface already exists`, {
      hint: `a leftover of an earlier ADD for this container? run \`pn veth delete --container-id ${opts.containerId} --ifname ${opts.ifname}\``,
      details: {hostIfname, containerId: opts.containerId, ifname: opts.ifname},
      cause: err,
    })
  }
  if ((await applyOne(kernel, {kind: 'link.get', name: opts.ifname}, {netns: opts.netns})).link) {
    throw new PnError('PN_LINK_EXISTS', `create veth ${opts.ifname} in ${opts.netns}: interface already exists in the pod netns`, {
      hint: 'pick another --ifname, or delete the existing interface inside the pod netns first',
      details: {ifname: opts.ifname, netns: opts.netns},
      cause: err,
    })
  }
}

export interface DeleteVethOptions {
  containerId: string
  ifname: string
  netns?: string
}

/** Remove the pair; succeeds when it is already gone (DEL may repeat, kubernetes#43014) or the netns vanished. */
export async function deleteVeth(
  runner: Runner,
  opts: DeleteVethOptions,
  kernel: KernelBackend = kernelFor(runner),
): Promise<{deleted: boolean; hostIfname: string; hostSide?: boolean}> {
  validateContainerId(opts.containerId)
  validateIfname(opts.ifname)
  const hostIfname = hostIfnameFor(opts.containerId, opts.ifname)
  if ((await applyOne(kernel, {kind: 'link.del', name: hostIfname, missingOk: true})).deleted) return {deleted: true, hostIfname, hostSide: true}
  // The host side is gone; a pod-side veth can only survive if its peer was renamed or moved.
  if (opts.netns && (await netnsAlive(opts.netns))) {
    const {link} = await applyOne(kernel, {kind: 'link.get', name: opts.ifname}, {netns: opts.netns})
    if (link?.linkinfo?.info_kind === 'veth') {
      return {deleted: (await applyOne(kernel, {kind: 'link.del', name: opts.ifname, missingOk: true}, {netns: opts.netns})).deleted, hostIfname}
    }
  }
  return {deleted: false, hostIfname}
}
