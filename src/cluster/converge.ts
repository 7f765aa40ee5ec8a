/**
 * What one node must change so its kernel matches the cluster: pure, from the desired state
 * (the store's nodes and endpoints) and what the node has applied (its remote pn_ipcache
 * entries and the routes it manages) to the typed kernel ops of src/kernel/ops.ts. Only the
 * differences: an entry or route that is already right produces no op, so a full resync after a
 * compacted watch or an agent restart never deletes and re-adds what did not change.
 *
 * - Remote endpoints become pn_ipcache entries `<ip>/32` (or /128): identity as published (0
 *   until policy assigns one), flags 0 (not IPCACHE_F_LOCAL), and the IP of the node that hosts
 *   them (its node IP of the same family, else its first). Entries flagged local belong to the
 *   node's own pods (src/datapath/bpf/endpoint.ts) and are never touched; a remote endpoint whose
 *   IP this node holds locally is ignored, as is one whose node is not registered (its lease is
 *   gone, or it never was).
 * - Services go to the service layer whole, when the table's digest changed (serviceTableToApply).
 * - With auto direct routes (nodes on one L2, like Cilium's auto-direct-node-routes), every
 *   other node reached `direct` gets a route to each of its pod CIDRs via its node IP on the
 *   uplink (`replace`, so a changed next hop is one op), marked with pn's route protocol so
 *   that they are read back exactly (appliedFromKernel). Nodes reached by BGP keep bird's
 *   routes; nodes reached by `tunnel` get none: their pods' entries carry the node IP, which
 *   from-container in tunnel mode encapsulates to (bpf/include/tunnel.h). The routes are a
 *   function of the nodes alone, so the agent diffs them only when the nodes key space changed
 *   (ConvergeParts): an endpoint event diffs the ipcache only.
 * - With BPF masquerade, every other node's IPs go into pn_nonmasq (`<ip>/32` or /128, flag
 *   NONMASQ_F_NODE): it never rewrites a pod's packet to another node (a NodePort backend's reply to the
 *   node that SNATed its client must keep the pod's address), as Cilium never masquerades to a
 *   remote-node identity. A function of the nodes too, diffed with the routes.
 */
import {canonicalIp, formatCidr, ipFamily, parseCidr} from '../cidr/cidr.js'
import {mapPath} from '../datapath/bpf/bpffs.js'
import {decodeIpcacheInfo, decodeIpcacheKey, encodeIpcacheInfo, encodeIpcacheKey, IPCACHE_F_LOCAL, type IpcacheEntry} from '../datapath/bpf/maps/ipcache.js'
import {decodeNonMasqKey, encodeNonMasqInfo, encodeNonMasqKey, nonMasqMap, NONMASQ_F_NODE} from '../datapath/bpf/maps/nat.js'
import {ROUTE_PROTOCOLS, type KernelOp, type MapEntry, type RouteEntry} from '../kernel/ops.js'
import type {ServiceSpec} from '../service/model.js'
import {servicesDigest, type ClusterEndpoint, type ClusterNode} from './layout.js'
import type {ServicesView} from './state.js'

/** The node being converged. */
export interface ConvergeSelf {
  name: string
  /** Device the direct routes leave by. */
  uplink: string
  bpffsRoot: string
  /** `--auto-direct-routes`: program routes to `direct` peers' pod CIDRs. */
  autoDirectRoutes: boolean
  /** The node's own pod CIDRs (never routed elsewhere). */
  podCidrs?: string[]
  /** BPF masquerade on: the other nodes' IPs go into pn_nonmasq. */
  masquerade?: boolean
}

/** The part of the cluster convergence reads (a ClusterState satisfies it). */
export interface DesiredCluster {
  nodes: ReadonlyMap<string, ClusterNode>
  endpoints: ReadonlyMap<string, ClusterEndpoint>
}

/** A route this node manages towards another node's pod CIDR. */
export interface PeerRoute {
  dst: string
  via: string
  dev: string
}

/** What the node has applied: every pn_ipcache entry (local ones are left alone) and the peer routes it manages. */
export interface NodeApplied {
  ipcache: IpcacheEntry[]
  routes: PeerRoute[]
  /** The other nodes' IPs in pn_nonmasq (host prefixes, flag NONMASQ_F_NODE); absent = none. */
  nodeIps?: string[]
}

export interface ConvergeSummary {
  ipcacheAdded: number
  ipcacheUpdated: number
  ipcacheDeleted: number
  routesAdded: number
  routesReplaced: number
  routesDeleted: number
}

export interface ConvergePlan {
  ops: KernelOp[]
  summary: ConvergeSummary
  /** What the node will have applied once the ops ran (the next call's `applied`). */
  applied: NodeApplied
}

const hostPrefix = (ip: string) => `${canonicalIp(ip)}/${ipFamily(ip) === 4 ? 32 : 128}`

function canonicalPrefix(prefix: string): string {
  const [ip, len] = prefix.split('/')
  return `${canonicalIp(ip)}/${len ?? (ipFamily(ip) === 4 ? 32 : 128)}`
}

/** The node IP to reach `node` at for an address of `family`: same family first, else the first. */
function nodeIpFor(node: ClusterNode, family: 4 | 6): string | undefined {
  return node.nodeIps.find((ip) => ipFamily(ip) === family) ?? node.nodeIps[0]
}

/** The remote pn_ipcache entries the cluster wants on `self`, by prefix: O(endpoints), one node lookup each. */
export function desiredIpcache(cluster: DesiredCluster, self: ConvergeSelf, localPrefixes: ReadonlySet<string> = new Set()): Map<string, IpcacheEntry> {
  const ipcache = new Map<string, IpcacheEntry>()
  for (const ep of cluster.endpoints.values()) {
    if (ep.node === self.name) continue
    const node = cluster.nodes.get(ep.node)
    if (!node) continue
    const prefix = hostPrefix(ep.ip)
    if (localPrefixes.has(prefix)) continue
    const nodeIp = nodeIpFor(node, ipFamily(ep.ip))
    ipcache.set(prefix, {prefix, identity: ep.identity ?? 0, flags: 0, ...(nodeIp ? {nodeIp: canonicalIp(nodeIp)} : {})})
  }
  return ipcache
}

/**
 * The peer routes the cluster wants on `self`, by destination: every node sorted, every pod CIDR
 * parsed (about 3 ms at 500 nodes), and a function of the nodes alone, so the agent runs it only
 * when the nodes key space changed.
 */
export function desiredRoutes(nodes: ReadonlyMap<string, ClusterNode>, self: ConvergeSelf): Map<string, PeerRoute> {
  const routes = new Map<string, PeerRoute>()
  if (!self.autoDirectRoutes) return routes
  const own = new Set((self.podCidrs ?? []).map((c) => formatCidr(parseCidr(c).cidr)))
  for (const node of [...nodes.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (node.name === self.name || node.reach !== 'direct') continue
    for (const c of node.podCidrs) {
      const cidr = parseCidr(c).cidr
      const dst = formatCidr(cidr)
      if (own.has(dst) || routes.has(dst)) continue
      const via = node.nodeIps.find((ip) => ipFamily(ip) === cidr.family)
      if (via) routes.set(dst, {dst, via: canonicalIp(via), dev: self.uplink})
    }
  }
  return routes
}

/** The other nodes' IPs as pn_nonmasq host prefixes: never masqueraded to. */
export function desiredNodeIps(nodes: ReadonlyMap<string, ClusterNode>, self: ConvergeSelf): Set<string> {
  const out = new Set<string>()
  for (const node of nodes.values()) if (node.name !== self.name) for (const ip of node.nodeIps) out.add(hostPrefix(ip))
  return out
}

const sameEntry = (a: IpcacheEntry, b: IpcacheEntry) => a.identity === b.identity && a.flags === b.flags && (a.nodeIp ? canonicalIp(a.nodeIp) : '') === (b.nodeIp ? canonicalIp(b.nodeIp) : '')

/**
 * Which parts of the node to diff. The ipcache depends on endpoints and nodes (a node's IP, its
 * registration); the peer routes on nodes alone. A part left out keeps what `applied` has and
 * yields no op, and its desired state is not computed at all.
 */
export interface ConvergeParts {
  ipcache: boolean
  routes: boolean
}

/** Both parts: a full diff (start, restart, resync, a node change). */
export const ALL_PARTS: Readonly<ConvergeParts> = Object.freeze({ipcache: true, routes: true})

/** The ops that take `applied` to what `cluster` wants on `self` (the parts asked for), and nothing else. */
export function convergeNode(cluster: DesiredCluster, applied: NodeApplied, self: ConvergeSelf, parts: Readonly<ConvergeParts> = ALL_PARTS): ConvergePlan {
  const map = mapPath(self.bpffsRoot, 'pn_ipcache')
  const summary: ConvergeSummary = {ipcacheAdded: 0, ipcacheUpdated: 0, ipcacheDeleted: 0, routesAdded: 0, routesReplaced: 0, routesDeleted: 0}
  const ops: KernelOp[] = []
  const byKey = <T>(m: Map<string, T>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))

  let ipcache = applied.ipcache
  if (parts.ipcache) {
    const local = new Set<string>()
    const remote = new Map<string, IpcacheEntry>()
    for (const e of applied.ipcache) {
      const prefix = canonicalPrefix(e.prefix)
      if ((e.flags & IPCACHE_F_LOCAL) !== 0) local.add(prefix)
      // Flags 0 are the cluster's remote endpoints; any other flag is another writer's entry (a
      // policy CIDR, a peer added by hand): left alone.
      else if (e.flags === 0) remote.set(prefix, {...e, prefix})
    }
    const want = desiredIpcache(cluster, self, local)
    for (const [prefix] of byKey(remote)) {
      if (want.has(prefix)) continue
      ops.push({kind: 'map.delete', map, key: encodeIpcacheKey(prefix), missingOk: true})
      summary.ipcacheDeleted++
    }
    for (const [prefix, e] of byKey(want)) {
      const have = remote.get(prefix)
      if (have && sameEntry(have, e)) continue
      ops.push({kind: 'map.update', map, key: encodeIpcacheKey(prefix), value: encodeIpcacheInfo(e)})
      if (have) summary.ipcacheUpdated++
      else summary.ipcacheAdded++
    }
    ipcache = [...applied.ipcache.filter((e) => e.flags !== 0), ...byKey(want).map(([, e]) => e)]
  }

  let routes = applied.routes
  if (parts.routes) {
    const want = desiredRoutes(cluster.nodes, self)
    const have = new Map(applied.routes.map((r) => [formatCidr(parseCidr(r.dst).cidr), r]))
    for (const [dst, r] of byKey(want)) {
      const h = have.get(dst)
      if (h && canonicalIp(h.via) === r.via && h.dev === r.dev) continue
      ops.push({kind: 'route.add', dst, via: r.via, dev: r.dev, replace: true, proto: 'pn'})
      if (h) summary.routesReplaced++
      else summary.routesAdded++
    }
    for (const [dst, r] of byKey(have)) {
      if (want.has(dst)) continue
      ops.push({kind: 'route.del', dst, dev: r.dev, missingOk: true})
      summary.routesDeleted++
    }
    routes = byKey(want).map(([, r]) => r)
  }

  let nodeIps = applied.nodeIps ?? []
  if (parts.routes && (self.masquerade || nodeIps.length > 0)) {
    const nonmasq = mapPath(self.bpffsRoot, 'pn_nonmasq')
    const want = self.masquerade ? desiredNodeIps(cluster.nodes, self) : new Set<string>()
    const have = new Set(nodeIps)
    for (const p of [...want].sort()) if (!have.has(p)) ops.push({kind: 'map.update', map: nonmasq, key: encodeNonMasqKey(p), value: encodeNonMasqInfo(NONMASQ_F_NODE)})
    for (const p of [...have].sort()) if (!want.has(p)) ops.push({kind: 'map.delete', map: nonmasq, key: encodeNonMasqKey(p), missingOk: true})
    nodeIps = [...want].sort()
  }

  return {ops, summary, applied: {ipcache, routes, ...(nodeIps.length > 0 ? {nodeIps} : {})}}
}

export type ServiceTableDecision =
  | {apply: true; services: ServiceSpec[]; digest: string}
  | {apply: false; reason: 'unchanged' | 'inconsistent'}

/**
 * Whether the node hands the cluster's service table to the service layer (the same table and
 * writer as `pn service apply`, which diffs it against the node's maps): only a whole table (its
 * shards add up to the table key's digest), and only when it differs from the digest last applied.
 */
export function serviceTableToApply(view: ServicesView, appliedDigest?: string): ServiceTableDecision {
  if (!view.consistent) return {apply: false, reason: 'inconsistent'}
  const digest = view.mark?.digest ?? servicesDigest([])
  if (digest === appliedDigest) return {apply: false, reason: 'unchanged'}
  return {apply: true, services: view.services, digest}
}

/**
 * What the node has applied, read back from its kernel (an agent that restarts, or checks): every
 * pn_ipcache entry as dumped (`map.dump`), and the routes it manages (`route.list`): exactly those
 * pn made, marked with pn's route protocol (ROUTE_PROTOCOLS.pn, `proto 112` in `ip route`), on the
 * uplink through a gateway. Routes of anyone else (by hand: boot; bird's; the kernel's) are never
 * read as pn's, whatever their prefix. Without auto direct routes pn manages none. And the node
 * IPs it wrote into pn_nonmasq (its flag: `pn node init` and peers write others).
 */
export function appliedFromKernel(ipcache: MapEntry[], routes: RouteEntry[], self: ConvergeSelf, nonMasq: MapEntry[] = []): NodeApplied {
  const pn = String(ROUTE_PROTOCOLS.pn)
  const peer: PeerRoute[] = []
  for (const r of self.autoDirectRoutes ? routes : []) {
    if (r.protocol !== pn || r.dev !== self.uplink || !r.gateway || !r.dst.includes('/')) continue
    peer.push({dst: formatCidr(parseCidr(r.dst).cidr), via: canonicalIp(r.gateway), dev: r.dev})
  }
  const nodeIps = nonMasq.filter((e) => e.value && nonMasqMap.decode(e.key, [e.value]).value.flags === NONMASQ_F_NODE).map((e) => canonicalPrefix(decodeNonMasqKey(e.key).prefix)).sort()
  return {
    ipcache: ipcache.filter((e) => e.value).map((e) => ({...decodeIpcacheKey(e.key), ...decodeIpcacheInfo(e.value!)})),
    routes: peer,
    ...(nodeIps.length > 0 ? {nodeIps} : {}),
  }
}
