/**
 * Reading and writing the pinned pn_ maps as kernel ops (src/kernel): writes go in one apply
 * (the tools backend: one `bpftool -j batch file -` for any number of entries), reads as a
 * map.dump, decoded with each map's descriptor so users see IPs, MACs and ifindexes, not hex.
 */
import {fsp as fs} from '../../exec/fs.js'
import {editDistance, PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import {applyOne} from '../../kernel/backend.js'
import {KernelError} from '../../kernel/errors.js'
import type {KernelOp, MapEntry, OpOf} from '../../kernel/ops.js'
import {kernelFor} from '../../kernel/tools.js'
import {mapPath, mapsDir, pathExists} from './bpffs.js'
import {MAP_NAMES, MAPS, mapDef, readU32, type DecodedEntry, type MapDef} from './maps/index.js'

export type {DecodedEntry} from './maps/index.js'

export type MapOp = {op: 'update'; map: string; key: Buffer; value: Buffer} | {op: 'delete'; map: string; key: Buffer}

/** The kernel ops of map operations against maps pinned under `root`. */
export function mapKernelOps(root: string, ops: MapOp[]): KernelOp[] {
  const pins = new Map<string, string>()
  const pin = (map: string) => {
    let p = pins.get(map)
    if (p === undefined) pins.set(map, (p = mapPath(root, map)))
    return p
  }
  return ops.map((o) => (o.op === 'update' ? {kind: 'map.update', map: pin(o.map), key: o.key, value: o.value} : {kind: 'map.delete', map: pin(o.map), key: o.key}))
}

/**
 * Identity of a pinned map that needs no process: its bpffs inode. A map re-created (node reset,
 * unload --force and load) gets a new inode, so state written for the old one is known stale.
 * Undefined when not pinned.
 */
export async function pinnedMapIdentity(root: string, name: string): Promise<string | undefined> {
  const st = await fs.stat(mapPath(root, name)).catch(() => undefined)
  return st ? `${st.dev}:${st.ino}` : undefined
}

/**
 * Apply operations in one apply; it stops at the first failing one (a KernelError: its index and
 * errno; PN_BPF_NOT_LOADED when a map is not pinned).
 */
export async function applyMapOps(runner: Runner, root: string, ops: MapOp[]): Promise<void> {
  if (ops.length === 0) return
  await kernelFor(runner).apply(mapKernelOps(root, ops))
}

/** PN_INVALID_ARGUMENT for a map name pn does not know, with the closest known names. */
export function unknownMapError(action: string, name: string): PnError {
  const ranked = MAP_NAMES.map((n) => ({n, d: editDistance(name, n)})).sort((a, b) => a.d - b.d)
  const near = ranked.filter((r) => r.d <= Math.max(3, Math.floor(name.length / 3))).slice(0, 2).map((r) => r.n)
  return new PnError('PN_INVALID_ARGUMENT', `${action} ${name}: unknown map${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}`, {
    hint: `pn's maps are ${MAP_NAMES.join(', ')}; \`pn bpf map list\` shows what is pinned (drop counters are in pn_metrics)`,
    details: {map: name, known: MAP_NAMES, ...(near.length ? {didYouMean: near} : {})},
  })
}

/** Entries of a pinned map (empty when the map is empty); for a sparse array (pn_metrics),
 * only the slots in use (any CPU's value not all zero). */
export async function dumpRaw(runner: Runner, root: string, name: string): Promise<MapEntry[]> {
  // A name is a pin under maps/, never a path elsewhere on the bpffs.
  if (name.includes('/') || name.startsWith('.')) throw unknownMapError('dump map', name)
  const p = mapPath(root, name)
  if (!(await pathExists(p))) {
    // A typo is not a missing datapath: an unknown name is said to be unknown (a pinned map pn
    // does not describe, e.g. from another pn version, still dumps as hex).
    if (!mapDef(name)) throw unknownMapError('dump map', name)
    throw new PnError('PN_BPF_NOT_LOADED', `dump map ${name}: not pinned at ${p}`, {
      hint: 'load the datapath first: `pn bpf load --host` (or `pn node init` in bpf mode); `pn bpf map list` shows what is pinned',
    })
  }
  const {entries} = await applyOne(kernelFor(runner), {kind: 'map.dump', map: p})
  if (!mapDef(name)?.sparse) return entries
  return entries.filter((e) => (e.values ?? (e.value ? [e.value] : [])).some((v) => v.some((b) => b !== 0)))
}

/** Decode one map's entries with its descriptor (unknown maps stay hex). */
export function decodeEntries(name: string, raw: MapEntry[]): DecodedEntry[] {
  const def = mapDef(name)
  return raw.map((e) => {
    if (e.unreadable !== undefined) {
      // The kernel keeps the value to itself (a perf event array's fds): show the slot, not a crash.
      const slot = def && def.key.scalar ? {[def.type === 'perf_event_array' ? 'cpu' : 'index']: readU32(e.key, 0)} : {hex: e.key.toString('hex')}
      return {key: slot, value: {unreadable: e.unreadable}}
    }
    const values = e.values ?? [e.value ?? Buffer.alloc(0)]
    if (!def) return {key: {hex: e.key.toString('hex')}, value: {hex: values[0].toString('hex')}}
    return def.decode(e.key, values)
  })
}

/** The `map.create` op of a descriptor, pinned at `pinned` (`cpus`: the entries of a map whose maxEntries is 0, one per CPU). */
export function createMapOp(def: MapDef, pinned: string, cpus = 1): OpOf<'map.create'> {
  return {kind: 'map.create', map: pinned, name: def.name, type: def.type, keySize: def.key.size, valueSize: def.value.size, maxEntries: def.maxEntries || cpus, ...(def.flags ? {flags: def.flags} : {})}
}

/** Number of possible CPUs (`0-3` → 4), what libbpf sizes a perf event array with. */
export async function possibleCpus(): Promise<number> {
  const text = await fs.readFile('/sys/devices/system/cpu/possible', 'utf8').catch(() => '0')
  let n = 0
  for (const part of text.trim().split(',')) {
    const [a, b] = part.split('-').map(Number)
    n = Math.max(n, (b ?? a) + 1)
  }
  return n || 1
}

/**
 * Create and pin every map of the current set that is missing under `root` (a node loaded by
 * an older pn that had fewer maps), so the new programs can share the pinned ones. Returns the
 * names created.
 */
export async function createMissingMaps(runner: Runner, root: string): Promise<string[]> {
  const created: string[] = []
  await runner.makeDir(mapsDir(root))
  for (const def of MAPS) {
    const pinned = mapPath(root, def.name)
    if (await pathExists(pinned)) continue
    const op = createMapOp(def, pinned, await possibleCpus())
    await applyOne(kernelFor(runner), op).catch((err: unknown) => {
      throw new PnError('PN_BPF_LOAD_FAILED', `create map ${def.name} under ${mapsDir(root)}: ${err instanceof KernelError ? err.why : (err as Error).message}`, {
        hint: 'remove the leftovers with `pn bpf unload --host --force`, then load again',
        details: {op, ...(err instanceof KernelError ? (err.details as Record<string, unknown>) : {})},
        cause: err,
      })
    })
    created.push(def.name)
  }
  return created
}

export async function dumpMapEntries(runner: Runner, root: string, name: string): Promise<DecodedEntry[]> {
  return decodeEntries(name, await dumpRaw(runner, root, name))
}

export interface MapInfo {
  name: string
  pinned: string
  id?: number
  type?: string
  keySize?: number
  valueSize?: number
  maxEntries?: number
  entries: number
}

/** The maps pinned under the node's root, with kernel info and entry counts. */
export async function listPinnedMaps(runner: Runner, root: string): Promise<MapInfo[]> {
  const names = (await fs.readdir(mapsDir(root)).catch(() => [] as string[])).sort((a, b) => {
    const ia = MAP_NAMES.indexOf(a as never)
    const ib = MAP_NAMES.indexOf(b as never)
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b)
  })
  const out: MapInfo[] = []
  for (const name of names) {
    const p = mapPath(root, name)
    const {info} = await applyOne(kernelFor(runner), {kind: 'map.info', map: p}).catch(() => ({info: undefined}))
    const entries = (await dumpRaw(runner, root, name).catch(() => [])).length
    out.push({name, pinned: p, ...(info ? {id: info.id, type: info.type, keySize: info.keySize, valueSize: info.valueSize, maxEntries: info.maxEntries} : {}), entries})
  }
  return out
}

/** What `pn bpf map dump` shows: the decoded entries, and for an event stream what it is. */
export interface MapDump {
  map: string
  type?: string
  entries: DecodedEntry[]
  /** Set for a perf event array: its slots hold reader fds the kernel does not read out. */
  note?: string
}

export async function dumpMapView(runner: Runner, root: string, name: string): Promise<MapDump> {
  const def = mapDef(name)
  const entries = await dumpMapEntries(runner, root, name)
  if (def?.type !== 'perf_event_array') return {map: name, ...(def ? {type: def.type} : {}), entries}
  const readers = entries.filter((e) => e.value.unreadable === undefined && Number(e.value.fd) > 0).length
  return {
    map: name,
    type: def.type,
    entries,
    note: `${name} is a perf event array: an event stream with one slot per CPU (${entries.length}), not a table; ` +
      `the kernel does not read out a slot's reader fd${readers ? '' : ' (shown as unreadable)'}. Read its events with \`pn monitor\``,
  }
}
