/** Host-scope IPAM of this node: the pod CIDRs from the flags (standalone) or from node.json. */
import {canonicalIp, normalizeCidr} from '../cidr/cidr.js'
import {listEndpoints, type EndpointRecord} from '../endpoint/store.js'
import {PnError} from '../errors.js'
import {releaseIp, type HostIpamTarget, type IpAllocation, type ReleaseResult, type Selector} from '../ipam/host.js'
import type {LockOptions} from '../state/files.js'
import {nodeFile, readNodeContext, requireNodeContext, type NodeContext} from './context.js'

/** The IPAM target for a node that is known. */
export function ipamOf(node: Pick<NodeContext, 'podCidrs' | 'routerIps'>, stateDir: string, lock?: LockOptions): HostIpamTarget {
  return {stateDir, podCidrs: node.podCidrs, routerIps: node.routerIps, source: 'node', ...(lock ? {lock} : {})}
}

const sortedCidrs = (list: string[]) => list.map((c) => normalizeCidr(c, 'pod cidr').text).sort().join(',')

/**
 * node.json's pod CIDRs on an initialised node (no flags needed); `--pod-cidr`/`--router-ip`
 * for standalone use (no node.json). On an initialised node a `--pod-cidr` must be the node's:
 * its IPAM state holds that CIDR, and another one would only fail further down with a less
 * helpful message. Without either: PN_NODE_NOT_INITIALIZED.
 */
export async function nodeIpamTarget(
  stateDir: string,
  opts: {podCidrs?: string[]; routerIps?: string[]; lock?: LockOptions} = {},
): Promise<HostIpamTarget> {
  const routers = opts.routerIps && opts.routerIps.length > 0 ? {routerIps: opts.routerIps} : {}
  if (opts.podCidrs && opts.podCidrs.length > 0) {
    // Standalone use never depended on node.json: an unreadable one does not stop it.
    const node = await readNodeContext(stateDir).catch(() => undefined)
    if (!node) return {stateDir, podCidrs: opts.podCidrs, routerIps: opts.routerIps, source: 'standalone', ...(opts.lock ? {lock: opts.lock} : {})}
    if (sortedCidrs(opts.podCidrs) !== sortedCidrs(node.podCidrs)) {
      throw new PnError('PN_NODE_CONFLICT', `open ipam of node ${node.name}: it is initialised with pod cidr ${node.podCidrs.join(', ')}, not ${opts.podCidrs.join(', ')}`, {
        hint: `drop --pod-cidr: on an initialised node pn ipam works on node.json's pod CIDR (${nodeFile(stateDir)}); use another --state-dir for standalone IPAM`,
        details: {node: node.podCidrs, requested: opts.podCidrs},
      })
    }
    return {...ipamOf(node, stateDir, opts.lock), ...routers}
  }
  const node = await requireNodeContext(stateDir)
  return {...ipamOf(node, stateDir, opts.lock), ...routers}
}

/** How a live endpoint is named in PN_IPAM_IN_USE: what `pn endpoint show` and `pn veth delete` take. */
export function describeEndpoint(rec: EndpointRecord): string {
  return `endpoint ${rec.id} (container ${rec.containerId}, ifname ${rec.ifname}, endpoint id ${rec.endpointId})`
}

/**
 * The live-endpoint guard of a hand-run release: an allocation whose owner has an endpoint record
 * (CNI owners are `<containerId>:<ifname>`, the record's id), or whose address an endpoint record
 * lists (`pn veth create --ip` under another owner), is in use.
 */
export function endpointInUse(endpoints: EndpointRecord[]): (a: IpAllocation) => string | undefined {
  const byId = new Map(endpoints.map((e) => [e.id, e]))
  const byIp = new Map<string, EndpointRecord>()
  for (const e of endpoints) {
    for (const ip of e.ips) {
      try {
        byIp.set(canonicalIp(ip), e)
      } catch {
        // A record with an unparsable address names no allocation.
      }
    }
  }
  return (a) => {
    const rec = byId.get(a.owner) ?? byIp.get(a.ip)
    return rec ? describeEndpoint(rec) : undefined
  }
}

/**
 * `pn ipam release`: release by addresses or owner, refusing (PN_IPAM_IN_USE) what a live
 * endpoint holds unless `force`. Freeing a live pod's address lets the next pod take it, and
 * deleting that pod then removes the first pod's datapath entries. The check runs inside the
 * IPAM lock, on the allocations actually released.
 */
export async function releaseNodeIps(t: HostIpamTarget, sel: Selector, opts: {force?: boolean} = {}): Promise<ReleaseResult> {
  if (opts.force) return releaseIp(t, sel)
  return releaseIp(t, sel, {inUse: endpointInUse(await listEndpoints(t.stateDir))})
}
