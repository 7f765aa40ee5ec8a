/**
 * The map and program ops (map.update, map.delete, map.lookup, map.dump, prog.get) on pinned
 * objects, through pn's addon (src/exec/sys.ts, native/pn-sys.c): bpf(2) from this process, no
 * tool and no text. Consecutive updates (or deletes) of one map are one BPF_MAP_UPDATE_BATCH
 * (BPF_MAP_DELETE_BATCH) syscall; a map type without batch ops gets one syscall per entry. Maps
 * are opened by pin path and their fds kept, re-opened when the pin's inode changes (a map
 * re-created and re-pinned is never written through the old fd).
 *
 * Another backend delegates these kinds here; any other kind is refused. Pin paths name the
 * objects, so `netns` does not matter to them.
 */
import {PnError} from '../errors.js'
import {errnoName, sys, type SysAddon} from '../exec/sys.js'
import {checkAbort, type ApplyOptions, type KernelBackend} from './backend.js'
import {KernelError, STRERROR, type Errno} from './errors.js'
import type {KernelOp, KernelResult, MapEntry, OpOf} from './ops.js'

/** The op kinds this backend handles. */
export const MAP_OP_KINDS = ['map.update', 'map.delete', 'map.lookup', 'map.dump', 'map.info', 'prog.get'] as const
export type MapOpKind = (typeof MAP_OP_KINDS)[number]

export function isMapOp(op: KernelOp): op is OpOf<MapOpKind> {
  return (MAP_OP_KINDS as readonly string[]).includes(op.kind)
}

const UPDATE = 1
const DELETE = 2

export class MapBackend implements KernelBackend {
  /** `addon`: the syscalls (tests may pass a fake); default pn's addon, loaded on first use. */
  constructor(private readonly addon: () => SysAddon = sys) {}

  async apply(ops: readonly KernelOp[], opts: ApplyOptions = {}): Promise<KernelResult[]> {
    const results: KernelResult[] = []
    for (let i = 0; i < ops.length; ) {
      checkAbort(opts.signal, ops[i])
      const op = ops[i]
      if (!isMapOp(op)) throw new PnError('PN_INVALID_ARGUMENT', `apply ${op.kind}: the map backend handles ${MAP_OP_KINDS.join(', ')} only`)
      if (op.kind === 'map.update' || op.kind === 'map.delete') {
        // The run of writes of one kind to one map (and, for deletes, one missingOk): one batch.
        let end = i + 1
        while (end < ops.length && sameRun(op, ops[end])) end++
        this.write(ops.slice(i, end) as OpOf<'map.update' | 'map.delete'>[], i, results)
        i = end
        continue
      }
      results.push(this.one(op, i))
      i++
    }
    return results
  }

  private write(run: OpOf<'map.update' | 'map.delete'>[], base: number, results: KernelResult[]): void {
    const first = run[0]
    const update = first.kind === 'map.update'
    const keys = Buffer.concat(run.map((o) => o.key))
    const values = update ? Buffer.concat((run as OpOf<'map.update'>[]).map((o) => o.value)) : null
    const missingOk = first.kind === 'map.delete' && Boolean(first.missingOk)
    const r = this.call(first, base, () => this.addon().mapWrite(first.map, update ? UPDATE : DELETE, keys, values, run.length, missingOk))
    const skipped = new Set(r.skipped)
    for (let k = 0; k < r.done; k++) results.push(update ? {kind: 'map.update'} : {kind: 'map.delete', deleted: !skipped.has(k)})
    if (r.errno !== 0) throw kernelError(run[r.done], base + r.done, r.errno)
  }

  private one(op: OpOf<'map.lookup' | 'map.dump' | 'map.info' | 'prog.get'>, index: number): KernelResult {
    const a = this.addon()
    switch (op.kind) {
      case 'map.lookup': {
        const {valueBytes, valueSize} = this.call(op, index, () => a.mapInfo(op.map))
        const v = this.call(op, index, () => a.mapLookup(op.map, op.key))
        if (!v) return {kind: 'map.lookup', value: undefined}
        return valueBytes === valueSize ? {kind: 'map.lookup', value: v} : {kind: 'map.lookup', values: perCpu(v, valueSize, valueBytes)}
      }
      case 'map.dump': {
        const {keySize, valueBytes, valueSize} = this.call(op, index, () => a.mapInfo(op.map))
        const d = this.call(op, index, () => a.mapDump(op.map))
        const entries: MapEntry[] = []
        for (let k = 0; k < d.count; k++) {
          const key = Buffer.from(d.keys.subarray(k * keySize, (k + 1) * keySize))
          if (d.errs[k]) {
            entries.push({key, unreadable: errnoName(d.errs[k])})
            continue
          }
          const v = d.values.subarray(k * valueBytes, (k + 1) * valueBytes)
          entries.push(valueBytes === valueSize ? {key, value: Buffer.from(v)} : {key, values: perCpu(v, valueSize, valueBytes)})
        }
        return {kind: 'map.dump', entries}
      }
      case 'map.info': {
        let m: ReturnType<SysAddon['mapInfo']>
        try {
          m = a.mapInfo(op.map)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {kind: 'map.info', info: undefined}
          return this.call(op, index, () => {
            throw err
          })
        }
        return {kind: 'map.info', info: {id: m.id, type: MAP_TYPE_NAMES[m.type] ?? String(m.type), keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries}}
      }
      case 'prog.get': {
        const p = this.call(op, index, () => a.progGet(op.pinned))
        return {kind: 'prog.get', prog: p ? {id: p.id, ...(p.name ? {name: p.name} : {}), tag: p.tag} : undefined}
      }
    }
  }

  /** An addon call; its exceptions as KernelError (the errno), or PN_INVALID_ARGUMENT for a key or value of the wrong size. */
  private call<T>(op: KernelOp, index: number, fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      if (err instanceof PnError) throw err
      const e = err as NodeJS.ErrnoException
      if (e instanceof TypeError) {
        throw new PnError('PN_INVALID_ARGUMENT', `${e.message}`, {hint: 'keys and values must have the sizes of the map (`pn bpf map list`)', details: {op, index}})
      }
      throw kernelError(op, index, undefined, e)
    }
  }
}

/** A per-CPU value (8-byte aligned slots) split into one Buffer per possible CPU. */
function perCpu(v: Buffer, size: number, bytes: number): Buffer[] {
  const slot = (size + 7) & ~7
  return Array.from({length: bytes / slot}, (_, c) => Buffer.from(v.subarray(c * slot, c * slot + size)))
}

function sameRun(a: KernelOp, b: KernelOp): boolean {
  if (b.kind !== a.kind || (a.kind !== 'map.update' && a.kind !== 'map.delete')) return false
  const x = a as OpOf<'map.update' | 'map.delete'>
  const y = b as OpOf<'map.update' | 'map.delete'>
  return x.map === y.map && (x.kind !== 'map.delete' || Boolean(x.missingOk) === Boolean((y as OpOf<'map.delete'>).missingOk))
}

function kernelError(op: KernelOp, index: number, errno: number | undefined, cause?: NodeJS.ErrnoException): KernelError {
  const name = errno !== undefined ? errnoName(errno) : (cause?.code ?? 'EIO')
  const known = name in STRERROR ? (name as Errno) : undefined
  return new KernelError({
    op,
    index,
    ...(known ? {errno: known} : {reason: cause ? cause.message : name}),
    detail: {errnoName: name, ...(op.kind === 'map.update' || op.kind === 'map.delete' || op.kind === 'map.lookup' || op.kind === 'map.dump' ? {map: op.map} : {})},
    ...(cause ? {cause} : {}),
  })
}

/** enum bpf_map_type → the name bpftool prints (and `map.create` takes). */
const MAP_TYPE_NAMES: readonly string[] = [
  'unspec', 'hash', 'array', 'prog_array', 'perf_event_array', 'percpu_hash', 'percpu_array', 'stack_trace', 'cgroup_array', 'lru_hash',
  'lru_percpu_hash', 'lpm_trie', 'array_of_maps', 'hash_of_maps', 'devmap', 'sockmap', 'cpumap', 'xskmap', 'sockhash', 'cgroup_storage',
  'reuseport_sockarray', 'percpu_cgroup_storage', 'queue', 'stack', 'sk_storage', 'devmap_hash', 'struct_ops', 'ringbuf', 'inode_storage',
  'task_storage', 'bloom_filter', 'user_ringbuf', 'cgrp_storage',
]
