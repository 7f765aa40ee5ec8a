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
import {deleteLinkByName, failedBatchLine, getLink, ipBatch, randomMac} from './link.js'
import {devSysctl, writeSysctls} from './sysctl.js'
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
  lines: string[]
}

/** The pod's addresses and the seed's routing table: `R dev eth0 scope link` + `default via R dev eth0 mtu M`. */
export function podAddressing(opts: Pick<SetupVethOptions, 'ifname' | 'ips' | 'routerIps' | 'mtu' | 'routeMtu'>): PodAddressing {
  const out: PodAddressing = {addresses: [], routes: [], lines: []}
  const ips = (opts.ips ?? []).map(normalizeIp)
  if (ips.length === 0) return out
  const routers = (opts.routerIps ?? []).map(normalizeIp)
  const routeMtu = opts.routeMtu ?? opts.mtu
  const dev = opts.ifname
  out.lines.push(`link set dev ${dev} up`)
  const defaults: string[] = []
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
    out.lines.push(`addr add ${ip}/${plen} dev ${dev}${family === 6 ? ' nodad' : ''}`)
    // The pod has no subnet route at all: the router is reachable only through this /32 link
    // route, so every packet (even to a neighbour pod) goes to the host and its datapath.
    out.routes.push({dst: `${router}/${plen}`, scope: 'link'})
    out.lines.push(`route add ${router}/${plen} dev ${dev} scope link`)
    const any = family === 4 ? '0.0.0.0/0' : '::/0'
    out.routes.push({dst: any, gw: router, mtu: routeMtu})
    defaults.push(`route add ${family === 4 ? 'default' : '::/0'} via ${router} dev ${dev} mtu ${routeMtu}`)
  }
  out.lines.push(...defaults)
  out.routes.sort((a, b) => Number(b.dst.split('/')[1]) - Number(a.dst.split('/')[1]))
  return out
}

/** The IPv6 router address a dual-stack (or IPv6-only) pod routes through, if it has an IPv6 address. */
function podRouter6(opts: Pick<SetupVethOptions, 'ips' | 'routerIps'>): string | undefined {
  if (!(opts.ips ?? []).some((ip) => ipFamily(ip) === 6)) return undefined
  return (opts.routerIps ?? []).map(normalizeIp).find((r) => ipFamily(r) === 6)
}

/** Create the pair and configure the pod side; any failure after the pair exists removes the pair. */
export async function setupVeth(runner: Runner, opts: SetupVethOptions): Promise<VethResult> {
  validateContainerId(opts.containerId)
  validateIfname(opts.ifname)
  validateNetnsPath(opts.netns) // it becomes a word of the `ip -batch` line below
  const pod = podAddressing(opts)
  const hostIfname = hostIfnameFor(opts.containerId, opts.ifname)
  const hostMac = randomMac()
  const podMac = randomMac()
  const hostLines = [
    `link add name ${hostIfname} address ${hostMac} mtu ${opts.mtu} txqueuelen 1000 type veth ` +
      `peer name ${opts.ifname} address ${podMac} mtu ${opts.mtu} netns ${opts.netns}`,
    `link set dev ${hostIfname} up`,
  ]
  const hostRoutes = opts.hostRoutes ? pod.addresses.map((a) => a) : []
  for (const r of hostRoutes) hostLines.push(`route replace ${r} dev ${hostIfname} scope link`)
  // Without BPF nothing answers the pod's IPv6 neighbour solicitation for its router: Linux
  // answers ARP for any local address on any device, but NDP only for the receiving device's
  // own addresses. A proxy entry on the lxc answers it (goes with the link).
  const proxyNdp = opts.hostRoutes ? podRouter6(opts) : undefined
  if (proxyNdp) hostLines.push(`neigh add proxy ${proxyNdp} dev ${hostIfname}`)
  // And the node's solicitation for the pod: the kernel sends none until the lxc's own
  // link-local address has passed DAD (a second or two after the link comes up), so IPv6 to a
  // new pod would be lost meanwhile. The pod's MAC is ours to choose: a permanent entry.
  if (opts.hostRoutes) {
    for (const a of pod.addresses.filter((x) => x.includes(':'))) hostLines.push(`neigh replace ${a.split('/')[0]} lladdr ${podMac} dev ${hostIfname} nud permanent`)
  }

  try {
    await ipBatch(runner, hostLines)
  } catch (err) {
    if (failedBatchLine(err) === 1 || failedBatchLine(err) === undefined) {
      // The pair was not created; find out which name was taken (nothing to undo).
      await explainCreateFailure(runner, opts, hostIfname, err)
    }
    await deleteLinkByName(runner, hostIfname).catch(() => undefined)
    throw err
  }
  try {
    // Let pod addresses be used as source when the host stack routes for the pod (Cilium does the same).
    await writeSysctls(runner, {
      [devSysctl('ipv4', hostIfname, 'rp_filter')]: '0',
      // Answer at once: the default proxy_delay holds a multicast solicitation up to 0.8 s.
      ...(proxyNdp ? {[devSysctl('ipv6', hostIfname, 'proxy_ndp')]: '1', [`net.ipv6.neigh.${hostIfname}.proxy_delay`]: '0'} : {}),
    }, {inProcess: true})
    if (pod.lines.length > 0) await ipBatch(runner, pod.lines, opts.netns)
    const host = await getLink(runner, hostIfname)
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
    await deleteLinkByName(runner, hostIfname).catch(() => undefined)
    throw err
  }
}

async function explainCreateFailure(runner: Runner, opts: SetupVethOptions, hostIfname: string, err: unknown): Promise<never> {
  if (await getLink(runner, hostIfname)) {
    throw new PnError('PN_LINK_EXISTS', `create veth ${hostIfname}: host interface already exists`, {
      hint: `a leftover of an earlier ADD for this container? run \`pn veth delete --container-id ${opts.containerId} --ifname ${opts.ifname}\``,
      details: {hostIfname, containerId: opts.containerId, ifname: opts.ifname},
    })
  }
  if (await getLink(runner, opts.ifname, opts.netns)) {
    throw new PnError('PN_LINK_EXISTS', `create veth ${opts.ifname} in ${opts.netns}: interface already exists in the pod netns`, {
      hint: 'pick another --ifname, or delete the existing interface inside the pod netns first',
      details: {ifname: opts.ifname, netns: opts.netns},
    })
  }
  throw err
}

export interface DeleteVethOptions {
  containerId: string
  ifname: string
  netns?: string
}

/** Remove the pair; succeeds when it is already gone (DEL may repeat, kubernetes#43014) or the netns vanished. */
export async function deleteVeth(runner: Runner, opts: DeleteVethOptions): Promise<{deleted: boolean; hostIfname: string; hostSide?: boolean}> {
  validateContainerId(opts.containerId)
  validateIfname(opts.ifname)
  const hostIfname = hostIfnameFor(opts.containerId, opts.ifname)
  if (await deleteLinkByName(runner, hostIfname)) return {deleted: true, hostIfname, hostSide: true}
  // The host side is gone; a pod-side veth can only survive if its peer was renamed or moved.
  if (opts.netns && (await netnsAlive(opts.netns))) {
    const link = await getLink(runner, opts.ifname, opts.netns)
    if (link?.linkinfo?.info_kind === 'veth') {
      return {deleted: await deleteLinkByName(runner, opts.ifname, opts.netns), hostIfname}
    }
  }
  return {deleted: false, hostIfname}
}
