/**
 * `pn node peer add|delete|list`: another node by hand, for labs without a cluster store. A
 * peer's pod CIDRs go into pn_ipcache with its node IP (what the cluster agent writes per remote
 * pod, src/cluster/converge.ts, here per CIDR); in tunnel mode that is all routing needs, since
 * from-container encapsulates towards the node IP (bpf/include/tunnel.h). With native routing
 * the entries are information only: the underlay (BGP, routes) still has to carry the CIDR.
 * Tunnel mode also routes the peer's IPv4 pod CIDR into pn_host (Cilium's `<cidr> via
 * <router> dev cilium_host mtu RouteMTU`), so the node's own traffic to those pods reaches
 * from-host, which encapsulates it; pods' traffic never needs the route.
 * The peer's node IP also goes into pn_nonmasq (flag NONMASQ_F_PEER): BPF masquerade never
 * rewrites a pod's packet to another node (the cluster agent does the same for the store's nodes).
 * The peers are remembered in `<state-dir>/peers.json` (names, to list and delete them); the
 * map is the truth the datapath reads, and `list` says whether each entry is in it.
 */
import path from 'node:path'
import {canonicalIp, cidrsOverlap, ipFamily, normalizeCidr, parseCidr, tryParseIp} from '../cidr/cidr.js'
import {applyMapOps, dumpMapEntries, type MapOp} from '../datapath/bpf/map-io.js'
import {encodeIpcacheInfo, encodeIpcacheKey, encodeNonMasqInfo, encodeNonMasqKey, IPCACHE_F_PEER, nodeIpPrefix, NONMASQ_F_PEER} from '../datapath/bpf/maps/index.js'
import {HOST_DEVICE} from '../datapath/devices.js'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {applyOne} from '../kernel/backend.js'
import type {KernelOp} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'
import {checkNodeName} from '../ipam/pool.js'
import {readJsonFile, writeFileAtomic, type JsonFileSpec} from '../state/files.js'
import {requireNodeContext, type NodeContext} from './context.js'
import {withNodeShared} from './lock.js'

export interface NodePeer {
  name: string
  /** Where its pods are: the tunnel endpoint in tunnel mode. */
  nodeIp: string
  podCidrs: string[]
}

export interface PeerState {
  version: 1
  peers: NodePeer[]
}

export const peersFile = (stateDir: string) => path.join(stateDir, 'peers.json')

const spec: JsonFileSpec<PeerState> = {
  what: 'node peers',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v: unknown): v is PeerState => {
    const s = v as PeerState
    return !!s && s.version === 1 && Array.isArray(s.peers) && s.peers.every((p) => typeof p.name === 'string' && typeof p.nodeIp === 'string' && Array.isArray(p.podCidrs))
  },
  corruptHint: 'fix or delete peers.json, then add the peers again (`pn node peer add`)',
}

async function readPeers(stateDir: string): Promise<PeerState> {
  return (await readJsonFile(peersFile(stateDir), spec)) ?? {version: 1, peers: []}
}

/** Peers are pn_ipcache entries: only a node with the BPF datapath has that map. */
function requireBpf(node: NodeContext, action: string): void {
  if (node.routing !== 'bpf') {
    throw new PnError('PN_INVALID_ARGUMENT', `${action}: node ${node.name} runs --routing host-routes, which has no pn_ipcache`, {
      hint: 'peers are for the BPF datapath: `pn node init --routing bpf` (with --tunnel vxlan for tunnel mode)',
    })
  }
}

export interface PeerAddOptions {
  name: string
  nodeIp: string
  podCidrs: string[]
}

export interface PeerChangeResult {
  changed: boolean
  peer?: NodePeer
  /** The pn_ipcache prefixes written (add) or deleted. */
  prefixes: string[]
}

/** The peer after validation: a name as `pn pool alloc` takes it, an address, CIDRs apart from this node's and other peers'. */
function checkPeer(node: NodeContext, state: PeerState, opts: PeerAddOptions): NodePeer {
  const action = `add peer ${opts.name}`
  checkNodeName(opts.name)
  if (opts.name === node.name) throw new PnError('PN_INVALID_ARGUMENT', `${action}: that is this node's own name`, {hint: 'name the other node'})
  if (!tryParseIp(opts.nodeIp ?? '')) throw new PnError('PN_INVALID_IP', `${action}: node ip ${JSON.stringify(opts.nodeIp)} is not an IP address`, {hint: 'pass the peer\'s uplink address, e.g. --node-ip 192.168.2.10'})
  if (opts.podCidrs.length === 0) throw new PnError('PN_INVALID_ARGUMENT', `${action}: no pod cidr`, {hint: 'pass --pod-cidr CIDR (one per family)'})
  const podCidrs = [...new Set(opts.podCidrs.map((c) => normalizeCidr(c, 'pod cidr').text))]
  for (const c of podCidrs) {
    const cidr = parseCidr(c).cidr
    const mine = node.podCidrs.find((o) => cidrsOverlap(parseCidr(o).cidr, cidr))
    if (mine) throw new PnError('PN_CIDR_CONFLICT', `${action}: pod cidr ${c} overlaps this node's ${mine}`, {hint: 'a peer\'s pod CIDR must be its own; see `pn node show`'})
    const other = state.peers.find((p) => p.name !== opts.name && p.podCidrs.some((o) => cidrsOverlap(parseCidr(o).cidr, cidr)))
    if (other) throw new PnError('PN_CIDR_CONFLICT', `${action}: pod cidr ${c} overlaps peer ${other.name}'s ${other.podCidrs.join(', ')}`, {hint: `delete that peer first (\`pn node peer delete ${other.name}\`) if it moved`})
  }
  const nodeIp = canonicalIp(opts.nodeIp)
  if (ipFamily(nodeIp) !== 4 && node.tunnel === 'vxlan') {
    throw new PnError('PN_INVALID_IP', `${action}: node ip ${nodeIp} is IPv6; the tunnel runs over IPv4`, {hint: 'pass the peer\'s IPv4 uplink address'})
  }
  return {name: opts.name, nodeIp, podCidrs}
}

/** Tunnel mode: the peer's IPv4 pod CIDRs routed into pn_host (from-host encapsulates), at the pod MTU. */
function peerRouteOps(node: NodeContext, peer: NodePeer): OpOfRoute[] {
  const i = node.podCidrs.findIndex((c) => ipFamily(c.split('/')[0]) === 4)
  if (node.tunnel !== 'vxlan' || i < 0) return []
  const router = node.routerIps[i]
  return peer.podCidrs.filter((c) => ipFamily(c.split('/')[0]) === 4).map((dst) => ({kind: 'route.add', replace: true, dst, via: router, dev: HOST_DEVICE, src: router, mtu: node.mtu}))
}
type OpOfRoute = Extract<KernelOp, {kind: 'route.add'}>

/** The route ops of `want` that the kernel lacks (a route to that prefix via pn_host). */
async function missingRoutes(runner: Runner, want: OpOfRoute[]): Promise<OpOfRoute[]> {
  const out: OpOfRoute[] = []
  for (const r of want) {
    const {routes} = await applyOne(kernelFor(runner), {kind: 'route.list', family: 4, exact: r.dst})
    if (!routes.some((x) => x.dev === r.dev && x.gateway === r.via)) out.push(r)
  }
  return out
}

/** pn_nonmasq ops for peers' node IPs: add `add` if absent; delete each of `drop` that is a peer entry no remaining peer uses. */
async function peerNonMasqOps(runner: Runner, node: NodeContext, remaining: NodePeer[], add: string | undefined, drop: string[]): Promise<MapOp[]> {
  const have = new Map((await dumpMapEntries(runner, node.bpffsRoot, 'pn_nonmasq').catch(() => [])).map((e) => [String(e.key.prefix), Number(e.value.flags)]))
  const ops: MapOp[] = []
  if (add && !have.has(nodeIpPrefix(add))) ops.push({op: 'update', map: 'pn_nonmasq', key: encodeNonMasqKey(nodeIpPrefix(add)), value: encodeNonMasqInfo(NONMASQ_F_PEER)})
  for (const ip of drop) {
    if (ip === add || have.get(nodeIpPrefix(ip)) !== NONMASQ_F_PEER || remaining.some((p) => p.nodeIp === ip)) continue
    ops.push({op: 'delete', map: 'pn_nonmasq', key: encodeNonMasqKey(nodeIpPrefix(ip))})
  }
  return ops
}

/** Add (or update) a peer: its pod CIDRs into pn_ipcache with its node IP, the node IP into pn_nonmasq. Idempotent. */
export async function addPeer(runner: Runner, stateDir: string, opts: PeerAddOptions): Promise<PeerChangeResult> {
  const node = await requireNodeContext(stateDir)
  requireBpf(node, `add peer ${opts.name}`)
  return withNodeShared(stateDir, `add peer ${opts.name}`, async () => {
    const state = await readPeers(stateDir)
    const peer = checkPeer(node, state, opts)
    const before = state.peers.find((p) => p.name === peer.name)
    const value = encodeIpcacheInfo({identity: 0, flags: IPCACHE_F_PEER, nodeIp: peer.nodeIp})
    const present = new Set((await dumpMapEntries(runner, node.bpffsRoot, 'pn_ipcache'))
      .filter((e) => e.value.nodeIp === peer.nodeIp && Number(e.value.flags) === IPCACHE_F_PEER)
      .map((e) => String(e.key.prefix)))
    const ops: MapOp[] = peer.podCidrs.filter((c) => !present.has(c)).map((c) => ({op: 'update', map: 'pn_ipcache', key: encodeIpcacheKey(c), value}))
    const gone = (before?.podCidrs ?? []).filter((c) => !peer.podCidrs.includes(c))
    ops.push(...gone.map((c): MapOp => ({op: 'delete', map: 'pn_ipcache', key: encodeIpcacheKey(c)})))
    const others = state.peers.filter((p) => p.name !== peer.name)
    ops.push(...(await peerNonMasqOps(runner, node, others, peer.nodeIp, before ? [before.nodeIp] : [])))
    const sameRecord = before && JSON.stringify(before) === JSON.stringify(peer)
    const routes: KernelOp[] = await missingRoutes(runner, peerRouteOps(node, peer))
    routes.push(...peerRouteOps(node, {...peer, podCidrs: gone}).map((r): KernelOp => ({kind: 'route.del', dst: r.dst, dev: r.dev, missingOk: true})))
    if (ops.length === 0 && routes.length === 0 && sameRecord) return {changed: false, peer, prefixes: []}
    await applyMapOps(runner, node.bpffsRoot, ops)
    if (routes.length > 0) await kernelFor(runner).apply(routes)
    await writeFileAtomic(peersFile(stateDir), JSON.stringify({version: 1, peers: [...state.peers.filter((p) => p.name !== peer.name), peer].sort((a, b) => (a.name < b.name ? -1 : 1))}, null, 2) + '\n')
    return {changed: true, peer, prefixes: peer.podCidrs}
  })
}

/** Delete a peer and its pn_ipcache entries; an unknown name is `changed: false` (a repeated delete). */
export async function deletePeer(runner: Runner, stateDir: string, name: string): Promise<PeerChangeResult> {
  const node = await requireNodeContext(stateDir)
  requireBpf(node, `delete peer ${name}`)
  return withNodeShared(stateDir, `delete peer ${name}`, async () => {
    const state = await readPeers(stateDir)
    const peer = state.peers.find((p) => p.name === name)
    if (!peer) return {changed: false, prefixes: []}
    const present = new Set((await dumpMapEntries(runner, node.bpffsRoot, 'pn_ipcache')).map((e) => String(e.key.prefix)))
    const prefixes = peer.podCidrs.filter((c) => present.has(c))
    const ops = prefixes.map((c): MapOp => ({op: 'delete', map: 'pn_ipcache', key: encodeIpcacheKey(c)}))
    ops.push(...(await peerNonMasqOps(runner, node, state.peers.filter((p) => p.name !== name), undefined, [peer.nodeIp])))
    await applyMapOps(runner, node.bpffsRoot, ops)
    const routes = peerRouteOps(node, peer).map((r): KernelOp => ({kind: 'route.del', dst: r.dst, dev: r.dev, missingOk: true}))
    if (routes.length > 0) await kernelFor(runner).apply(routes)
    await writeFileAtomic(peersFile(stateDir), JSON.stringify({version: 1, peers: state.peers.filter((p) => p.name !== name)}, null, 2) + '\n')
    return {changed: true, peer, prefixes}
  })
}

/** Each peer, and whether pn_ipcache holds every one of its CIDRs with its node IP. */
export type PeerListResult = (NodePeer & {inIpcache: boolean})[]

export async function listPeers(runner: Runner, stateDir: string): Promise<PeerListResult> {
  const node = await requireNodeContext(stateDir)
  const state = await readPeers(stateDir)
  const entries = node.routing === 'bpf' ? await dumpMapEntries(runner, node.bpffsRoot, 'pn_ipcache').catch(() => []) : []
  const have = new Map(entries.map((e) => [String(e.key.prefix), e.value.nodeIp]))
  return state.peers.map((p) => ({...p, inIpcache: p.podCidrs.every((c) => have.get(c) === p.nodeIp)}))
}
