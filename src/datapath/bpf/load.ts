/**
 * Node-level load/unload: programs and maps are loaded ONCE per node with `bpftool prog
 * loadall` and pinned under the node's bpffs root; the host hooks (uplink, pn_host) then get
 * tc filters referencing the pinned programs. Pods only ever add a filter and map entries.
 */
import {fsp as fs} from '../../exec/fs.js'
import path from 'node:path'
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import {applyOne} from '../../kernel/backend.js'
import {KernelError} from '../../kernel/errors.js'
import type {OpOf} from '../../kernel/ops.js'
import {kernelFor} from '../../kernel/tools.js'
import {HOST_DEVICE, TUNNEL_DEVICE, type DatapathNode} from '../devices.js'
import {natNodeConfig, nonMasqOps} from '../masquerade.js'
import {getLink} from '../link.js'
import {
  PROGRAMS,
  ensureBpffs,
  mapPath,
  mapsDir,
  pathExists,
  programPath,
  progsDir,
  qdiscMarkersDir,
  type ProgramName,
} from './bpffs.js'
import {compileDatapath} from './compile.js'
import {applyMapOps, createMissingMaps, dumpMapEntries, type MapOp} from './map-io.js'
import {ENDPOINT_F_HOST, MAPS, MAP_NAMES, encodeEndpointInfo, encodeEndpointKey, encodeNodeConfig, encodeNodeConfigKey, NODE_F_TUNNEL} from './maps/index.js'
import {attachTcProgram, detachTcProgram, listQdiscMarkers, releaseQdisc, type Direction, type TcAttachment} from './tc.js'

/** Which pinned program goes on which host hook (Cilium's bpf_host attach points). */
export function hostHooks(node: Pick<DatapathNode, 'uplink' | 'tunnel'>): {device: string; direction: Direction; program: ProgramName}[] {
  return [
    {device: node.uplink, direction: 'ingress', program: 'from_netdev'},
    {device: node.uplink, direction: 'egress', program: 'to_netdev'},
    {device: HOST_DEVICE, direction: 'ingress', program: 'to_host'},
    {device: HOST_DEVICE, direction: 'egress', program: 'from_host'},
    // Tunnel mode: what other nodes send through the tunnel (Cilium's bpf_overlay on cilium_vxlan).
    ...(node.tunnel === 'vxlan' ? [{device: TUNNEL_DEVICE, direction: 'ingress' as const, program: 'from_overlay' as const}] : []),
  ]
}

/** Where to build the object: the cache folder, and the bpf/ sources when not the repo's. */
export interface BuildOptions {
  cacheDir: string
  sourceDir?: string
}

export async function programsLoaded(root: string): Promise<boolean> {
  for (const p of Object.keys(PROGRAMS) as ProgramName[]) if (!(await pathExists(programPath(root, p)))) return false
  return true
}

/**
 * Load every program of the object and pin programs + maps under `root`. Maps already pinned
 * (a reload after `unload --host` kept them for attached pods) are reused by name, so old and
 * new programs keep sharing one pn_endpoints. When only some are pinned (a node loaded by a pn
 * with fewer maps), the missing ones are created from their descriptors first, so a new map
 * joins a running node without unloading it.
 */
export async function loadPrograms(
  runner: Runner,
  root: string,
  object: string,
): Promise<{loaded: boolean; reusedMaps: boolean; createdMaps: string[]; replacedMaps: string[]}> {
  if (await programsLoaded(root)) return {loaded: false, reusedMaps: false, createdMaps: [], replacedMaps: []}
  await runner.remove(progsDir(root)) // a half-finished earlier load
  const replacedMaps = await checkPinnedLayouts(runner, root)
  const pinnedMaps = []
  for (const m of MAP_NAMES) if (await pathExists(mapPath(root, m))) pinnedMaps.push(m)
  const load: OpOf<'obj.load'> = {kind: 'obj.load', object, pinDir: progsDir(root), progType: 'classifier'}
  let createdMaps: string[] = []
  if (pinnedMaps.length > 0) {
    if (pinnedMaps.length < MAP_NAMES.length) createdMaps = await createMissingMaps(runner, root)
    load.maps = MAP_NAMES.map((m) => ({name: m, pinned: mapPath(root, m)}))
  } else {
    await runner.remove(mapsDir(root))
    load.pinMaps = mapsDir(root)
  }
  try {
    await applyOne(kernelFor(runner), load)
  } catch (err) {
    await runner.remove(progsDir(root))
    if (pinnedMaps.length === 0) await runner.remove(mapsDir(root))
    for (const m of createdMaps) await runner.remove(mapPath(root, m))
    if (!(err instanceof KernelError)) throw err
    throw new PnError('PN_BPF_LOAD_FAILED', `load bpf programs ${path.basename(object)}: ${err.why}`, {
      hint: 'the verifier log is in details.log; after changing map layouts run `pn bpf unload --host --force` first',
      details: {...(err.details as Record<string, unknown>)},
      cause: err,
    })
  }
  return {loaded: true, reusedMaps: pinnedMaps.length > 0, createdMaps: createdMaps.filter((m) => !replacedMaps.includes(m)), replacedMaps}
}

/**
 * Pinned maps whose kernel layout (type, key and value size, entries) is not the one this pn
 * defines — a node loaded by an older pn. A map that only holds counters (`resettable`) is
 * unpinned, to be created anew (its counts restart); any other is refused before anything is
 * loaded, since its entries are state the node needs.
 */
async function checkPinnedLayouts(runner: Runner, root: string): Promise<string[]> {
  const replaced: string[] = []
  for (const def of MAPS) {
    const pinned = mapPath(root, def.name)
    if (!(await pathExists(pinned))) continue
    const {info} = await applyOne(kernelFor(runner), {kind: 'map.info', map: pinned}).catch(() => ({info: undefined})) // an unreadable pin: the load reports it
    if (!info) continue
    const want = {type: def.type as string, key: def.key.size, value: def.value.size, entries: def.maxEntries}
    const have = {type: info.type, key: info.keySize, value: info.valueSize, entries: def.maxEntries ? info.maxEntries : 0}
    if (JSON.stringify(have) === JSON.stringify(want)) continue
    const show = (x: typeof want) => `${x.type} key ${x.key} value ${x.value}${x.entries ? ` entries ${x.entries}` : ''}`
    if (!def.resettable) {
      throw new PnError('PN_BPF_LOAD_FAILED', `load bpf programs: the pinned map ${def.name} is ${show(have)}, this pn needs ${show(want)}`, {
        hint: 'the node was loaded by another pn version; `pn bpf unload --host --force`, then load again (pods need `pn bpf load --container-id` again)',
        details: {map: def.name, pinned, have, want},
      })
    }
    await runner.remove(pinned)
    replaced.push(def.name)
  }
  return replaced
}

export interface HostLoadOutcome {
  changed: boolean
  attachments: TcAttachment[]
  bpffsRoot: string
  object: string
  cacheHit: boolean
  loaded: boolean
  /** Maps the node lacked and this load created (a newer pn on a running node). */
  createdMaps: string[]
  /** Counter maps pinned with an older layout, replaced by this load (their counts restart). */
  replacedMaps: string[]
  warnings: string[]
}

export async function loadHost(runner: Runner, node: DatapathNode, build: BuildOptions): Promise<HostLoadOutcome> {
  const root = node.bpffsRoot
  const {warnings} = await ensureBpffs(runner, root)
  const compiled = await compileDatapath(runner, build)
  const object = compiled.objects.datapath
  const {loaded, createdMaps, replacedMaps} = await loadPrograms(runner, root, object)
  for (const m of replacedMaps) warnings.push(`replaced ${m}: it was pinned with an older layout; its counters restart`)
  let changed = loaded
  const attachments: TcAttachment[] = []
  const ifindexes = new Map<string, number>()
  const macs = new Map<string, string>()
  const mtus = new Map<string, number>()
  for (const hook of hostHooks(node)) {
    if (!ifindexes.has(hook.device)) {
      const link = await getLink(runner, hook.device)
      if (!link) {
        throw new PnError('PN_LINK_NOT_FOUND', `attach ${PROGRAMS[hook.program]} to ${hook.device}: device does not exist`, {
          hint: hook.device === HOST_DEVICE || hook.device === TUNNEL_DEVICE ? 'run `pn node init` first' : `check the node's uplink (${node.uplink})`,
        })
      }
      ifindexes.set(hook.device, link.ifindex)
      macs.set(hook.device, link.address)
      mtus.set(hook.device, link.mtu)
    }
    const r = await attachTcProgram(runner, {root, device: hook.device, ifindex: ifindexes.get(hook.device)!, direction: hook.direction, program: hook.program})
    changed ||= r.changed
    attachments.push({device: hook.device, direction: hook.direction, program: PROGRAMS[hook.program]})
  }
  // The router IPs are the node itself: entries flagged HOST make every program hand them to
  // the stack, and make `pn bpf map dump pn_endpoints` show the node like `cilium bpf endpoint list`.
  const hostMac = macs.get(HOST_DEVICE)!
  const ops: MapOp[] = node.routerIps.map((ip) => ({
    op: 'update',
    map: 'pn_endpoints',
    key: encodeEndpointKey(ip),
    value: encodeEndpointInfo({ifindex: ifindexes.get(HOST_DEVICE)!, endpointId: 0, flags: ENDPOINT_F_HOST, podMac: hostMac, lxcMac: hostMac}),
  }))
  // BPF host routing (bpf/include/fib.h) redirects to this ifindex only; rewritten on every
  // load, so a recreated uplink (new ifindex) is picked up by the next `pn bpf load --host`.
  // Tunnel mode: from-container encapsulates into pn_vxlan (bpf/include/tunnel.h).
  const tunnelIfindex = node.tunnel === 'vxlan' ? ifindexes.get(TUNNEL_DEVICE)! : 0
  const nat = await natNodeConfig(runner, node.uplink, node.masquerade)
  ops.push({
    op: 'update',
    map: 'pn_node_config',
    key: encodeNodeConfigKey(),
    // iptables masquerade needs the stack's POSTROUTING: host routing off, as Cilium does (masquerade.ts).
    value: encodeNodeConfig({
      uplinkIfindex: node.masquerade?.mode === 'iptables' ? 0 : ifindexes.get(node.uplink)!,
      uplinkMtu: mtus.get(node.uplink)!,
      ...nat,
      flags: nat.flags | (tunnelIfindex ? NODE_F_TUNNEL : 0),
      tunnelIfindex,
    }),
  })
  ops.push(...(await nonMasqOps(runner, root, node.masquerade ? [...(node.podCidrs ?? []), ...node.masquerade.nonMasqueradeCidrs] : [])))
  await applyMapOps(runner, root, ops)
  return {changed, attachments, bpffsRoot: root, object, cacheHit: compiled.cacheHit, loaded, createdMaps, replacedMaps, warnings}
}

export interface HostUnloadOutcome {
  changed: boolean
  detached: TcAttachment[]
  unpinned: boolean
  warnings: string[]
}

/**
 * Detach the host hooks, delete the qdiscs pn created, and unpin programs and maps — unless
 * pods are still attached (pn_lxc has entries): then the pins stay so a later load reuses the
 * same maps, unless `force`.
 */
export async function unloadHost(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot' | 'uplink' | 'tunnel'>, opts: {force?: boolean} = {}): Promise<HostUnloadOutcome> {
  const root = node.bpffsRoot
  const warnings: string[] = []
  const detached: TcAttachment[] = []
  let changed = false
  for (const hook of hostHooks(node)) {
    const r = await detachTcProgram(runner, {device: hook.device, direction: hook.direction})
    if (r.changed) detached.push({device: hook.device, direction: hook.direction, program: PROGRAMS[hook.program]})
    changed ||= r.changed
  }
  const markers = await listQdiscMarkers(qdiscMarkersDir(root))
  for (const dev of new Set(hostHooks(node).map((h) => h.device))) {
    for (const m of markers.filter((x) => x.device === dev)) {
      const r = await releaseQdisc(runner, root, m.device, m.ifindex)
      if (r.warning) warnings.push(r.warning)
      changed ||= r.deleted
    }
  }
  if (!(await pathExists(mapPath(root, 'pn_endpoints')))) {
    const had = await pathExists(progsDir(root))
    await runner.remove(progsDir(root))
    return {changed: changed || had, detached, unpinned: had, warnings}
  }
  const pods = await dumpMapEntries(runner, root, 'pn_lxc')
  if (pods.length > 0 && !opts.force) {
    warnings.push(`${pods.length} endpoint(s) still attached: kept the pinned programs and maps under ${root} (detach them with \`pn bpf unload --container-id\`, or pass --force)`)
    const hostEntries = (await dumpMapEntries(runner, root, 'pn_endpoints')).filter((e) => (Number(e.value.flags) & ENDPOINT_F_HOST) !== 0)
    const ops: MapOp[] = hostEntries.map((e) => ({op: 'delete', map: 'pn_endpoints', key: encodeEndpointKey(String(e.key.ip))}))
    // The uplink hooks are gone: host routing off (the pods' traffic goes to the stack).
    if (await pathExists(mapPath(root, 'pn_node_config'))) ops.push({op: 'update', map: 'pn_node_config', key: encodeNodeConfigKey(), value: encodeNodeConfig({uplinkIfindex: 0, uplinkMtu: 0, flags: 0})})
    await applyMapOps(runner, root, ops)
    return {changed, detached, unpinned: false, warnings}
  }
  if (pods.length > 0) warnings.push(`${pods.length} endpoint(s) were still attached; their filters keep running the old programs until detached`)
  for (const dir of [progsDir(root), mapsDir(root)]) await runner.remove(dir)
  if ((await listQdiscMarkers(qdiscMarkersDir(root))).length === 0) await runner.remove(qdiscMarkersDir(root))
  // The folder itself goes only when empty (another node's files are never in it, but be safe).
  if ((await fs.readdir(root).catch(() => ['?'])).length === 0) await runner.remove(root)
  return {changed: true, detached, unpinned: true, warnings}
}
