/**
 * Per-pod datapath: map entries (pn_endpoints by IP, pn_lxc by ifindex, pn_ipcache /32) in one
 * bpftool batch, then a tc filter on the lxc's ingress referencing the pinned from-container.
 * Never compiles or loads anything. Removing an endpoint also removes its policy (policy.ts).
 */
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import type {DatapathNode} from '../devices.js'
import {mapPath, pathExists, programPath, qdiscMarker} from './bpffs.js'
import {kernelFor} from '../../kernel/tools.js'
import {applyMapOps, dumpMapEntries, mapKernelOps, type MapOp} from './map-io.js'
import {
  IPCACHE_F_LOCAL,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeIpcacheInfo,
  encodeIpcacheKey,
  encodeLxcInfo,
  encodeLxcKey,
  ipBytes,
} from './maps/index.js'
import {forgetEndpointPolicy, forgetPolicyStateOp, POLICY_EP_MAP, removeEndpointPolicyEntries} from './policy.js'
import {attachTcProgram, detachTcProgram, releaseQdisc} from './tc.js'

/** The subset of an endpoint record the datapath needs. */
export interface DatapathEndpoint {
  containerId: string
  ifname: string
  endpointId: number
  ips: string[]
  hostIfname: string
  hostIfindex: number
  hostMac: string
  podMac: string
  /** The pod's security identity in pn_ipcache (0 or absent: none yet; `writeEndpointIdentity` sets it later). */
  identity?: number
}

function hostPrefix(ip: string): string {
  return `${ip}/${ipBytes(ip).family === 4 ? 32 : 128}`
}

/** The map writes that describe one endpoint (exported for golden tests). */
export function endpointMapOps(ep: DatapathEndpoint): MapOp[] {
  const ip4 = ep.ips.find((ip) => ipBytes(ip).family === 4)
  const ip6 = ep.ips.find((ip) => ipBytes(ip).family === 6)
  const ops: MapOp[] = []
  for (const ip of ep.ips) {
    ops.push({
      op: 'update',
      map: 'pn_endpoints',
      key: encodeEndpointKey(ip),
      value: encodeEndpointInfo({ifindex: ep.hostIfindex, endpointId: ep.endpointId, flags: 0, podMac: ep.podMac, lxcMac: ep.hostMac}),
    })
    ops.push({op: 'update', map: 'pn_ipcache', key: encodeIpcacheKey(hostPrefix(ip)), value: encodeIpcacheInfo({identity: ep.identity ?? 0, flags: IPCACHE_F_LOCAL})})
  }
  ops.push({
    op: 'update',
    map: 'pn_lxc',
    key: encodeLxcKey(ep.hostIfindex),
    value: encodeLxcInfo({ip4, ip6, endpointId: ep.endpointId, lxcMac: ep.hostMac, podMac: ep.podMac, flags: 0}),
  })
  return ops
}

/** `freshDevice`: the caller just created the host veth (no qdisc on it yet): one tc spawn, not two. */
export async function attachPod(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, ep: DatapathEndpoint, opts: {freshDevice?: boolean} = {}): Promise<{changed: boolean}> {
  const root = node.bpffsRoot
  if (!(await pathExists(programPath(root, 'from_container'))) || !(await pathExists(mapPath(root, 'pn_lxc')))) {
    throw new PnError('PN_BPF_NOT_LOADED', `attach endpoint ${ep.containerId}:${ep.ifname}: the datapath is not loaded under ${root}`, {
      hint: 'run `pn bpf load --host` (or `pn node init` in bpf routing mode) first',
    })
  }
  // Entries first: from-container drops packets of interfaces it has no pn_lxc entry for.
  await applyMapOps(runner, root, endpointMapOps(ep))
  const r = await attachTcProgram(runner, {root, device: ep.hostIfname, ifindex: ep.hostIfindex, direction: 'ingress', program: 'from_container', freshDevice: opts.freshDevice === true})
  return {changed: r.changed}
}

/**
 * Remove the filter, the qdisc pn made, and the map entries that still point at THIS endpoint's
 * ifindex — an IP already reused by a newer pod keeps its entry (Cilium #19958: deleting by key
 * alone dropped the new pod's traffic).
 */
export async function detachPod(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, ep: DatapathEndpoint): Promise<{changed: boolean; warnings: string[]}> {
  const root = node.bpffsRoot
  const warnings: string[] = []
  let changed = (await detachTcProgram(runner, {device: ep.hostIfname, direction: 'ingress'})).changed
  const q = await releaseQdisc(runner, root, ep.hostIfname, ep.hostIfindex)
  if (q.warning) warnings.push(q.warning)
  changed = (await removeEntriesFound(runner, root, ep)) || changed
  changed = (await forgetEndpointPolicy(kernelFor(runner), root, ep.endpointId)).removed > 0 || changed
  return {changed, warnings}
}

/**
 * After the caller deleted this endpoint's host veth itself (the kernel took the clsact qdisc and
 * filter with it): drop the qdisc marker and delete the map entries by the keys the record
 * knows, in one bpftool batch — no tc, no dumps. Safe by key because the veth still existed: the
 * attachment was live, so its IPs are still held by it in IPAM (released only after teardown)
 * and no newer pod can own them yet. When a key is already gone (a half-removed endpoint),
 * bpftool stops the batch; the entries are then found by dumping the maps, as detachPod does.
 */
export async function forgetPod(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, ep: DatapathEndpoint): Promise<{changed: boolean}> {
  const root = node.bpffsRoot
  const marker = qdiscMarker(root, ep.hostIfname, ep.hostIfindex)
  if (await pathExists(marker)) await runner.remove(marker)
  if (!(await pathExists(mapPath(root, 'pn_endpoints')))) return {changed: false}
  const ops: MapOp[] = []
  for (const ip of ep.ips) {
    ops.push({op: 'delete', map: 'pn_endpoints', key: encodeEndpointKey(ip)})
    ops.push({op: 'delete', map: 'pn_ipcache', key: encodeIpcacheKey(hostPrefix(ip))})
  }
  ops.push({op: 'delete', map: 'pn_lxc', key: encodeLxcKey(ep.hostIfindex)})
  // The endpoint's policy state goes in the same batch (missingOk); its answer says whether
  // there are policy entries to find and delete.
  const kernel = kernelFor(runner)
  const policy = await pathExists(mapPath(root, POLICY_EP_MAP))
  const kops = mapKernelOps(root, ops)
  if (policy) kops.push(forgetPolicyStateOp(root, ep.endpointId))
  try {
    const results = await kernel.apply(kops)
    if (policy && (results[results.length - 1] as {deleted?: boolean}).deleted) await removeEndpointPolicyEntries(kernel, root, ep.endpointId)
    return {changed: true}
  } catch {
    const found = await removeEntriesFound(runner, root, ep)
    return {changed: (await forgetEndpointPolicy(kernel, root, ep.endpointId)).removed > 0 || found}
  }
}

/** Delete the map entries that still point at this endpoint, found by dumping the three maps. */
async function removeEntriesFound(runner: Runner, root: string, ep: DatapathEndpoint): Promise<boolean> {
  if (!(await pathExists(mapPath(root, 'pn_endpoints')))) return false
  const [eps, lxcs, ipc] = await Promise.all([
    dumpMapEntries(runner, root, 'pn_endpoints'),
    dumpMapEntries(runner, root, 'pn_lxc'),
    dumpMapEntries(runner, root, 'pn_ipcache'),
  ])
  const ours = new Set(ep.ips.map((ip) => encodeEndpointKey(ip).toString('hex')))
  const ops: MapOp[] = []
  const ownedIps: string[] = []
  for (const e of eps) {
    const key = encodeEndpointKey(String(e.key.ip))
    if (ours.has(key.toString('hex')) && e.value.ifindex === ep.hostIfindex) {
      ops.push({op: 'delete', map: 'pn_endpoints', key})
      ownedIps.push(String(e.key.ip))
    }
  }
  // pn_ipcache: every prefix of this endpoint's IPs, unless pn_endpoints gives the IP to another
  // endpoint now (a reused IP). An IP whose pn_endpoints entry is already gone still loses its
  // prefix, so a half-removed endpoint leaves nothing behind.
  const taken = new Set(eps.filter((e) => e.value.ifindex !== ep.hostIfindex).map((e) => encodeEndpointKey(String(e.key.ip)).toString('hex')))
  const prefixes = new Set([...ownedIps, ...ep.ips.filter((ip) => !taken.has(encodeEndpointKey(ip).toString('hex')))].map(hostPrefix))
  for (const e of ipc) if (prefixes.has(String(e.key.prefix))) ops.push({op: 'delete', map: 'pn_ipcache', key: encodeIpcacheKey(String(e.key.prefix))})
  if (lxcs.some((e) => e.key.ifindex === ep.hostIfindex)) ops.push({op: 'delete', map: 'pn_lxc', key: encodeLxcKey(ep.hostIfindex)})
  await applyMapOps(runner, root, ops)
  return ops.length > 0
}
