/**
 * Map operations encoded straight into one Buffer, the frame the addon writes
 * (mapWriteFrame in native/pn-sys.c, which is handed this layout with every frame: it is
 * defined here only): a u32 LE count, then 28-byte records
 *
 *   u8 op (1 update, 2 delete) | u8 map index | u16 0 | key[12] | value[12]
 *
 * (key and value are the first key-size/value-size bytes of their fields). A 10,000-service
 * apply is 20,000 operations (and as many inverses): one object and two Buffers per operation
 * cost more than writing the maps. Runs of records with one op on one map are one batch syscall.
 */
import {PnError} from '../../errors.js'
import {acquireFlock, type HeldLock, type Locker} from '../../exec/flock.js'
import {sys, type FrameResult} from '../../exec/sys.js'
import {mapPath} from './bpffs.js'
import type {MapOp} from './map-io.js'

export const OP_UPDATE = 1
export const OP_DELETE = 2
export const RECORD_SIZE = 28
export const KEY_OFFSET = 4
export const VALUE_OFFSET = 16
/** The layout as the addon takes it: [record size, key offset, value offset]. */
export const RECORD_LAYOUT: readonly [number, number, number] = [RECORD_SIZE, KEY_OFFSET, VALUE_OFFSET]
/** Records in one frame, at most. */
export const MAX_RECORDS = 1 << 20
const HEADER = 4

/** A map a record can address: its index in the list is the record's map byte. */
export interface OpMap {
  name: string
  keySize: number
  valueSize: number
}

export class OpList {
  buf: Buffer
  length = 0

  constructor(readonly maps: readonly OpMap[], capacity = 16) {
    this.buf = Buffer.alloc(HEADER + capacity * RECORD_SIZE)
  }

  /** Append a zeroed record; returns its byte offset (key at +KEY_OFFSET, value at +VALUE_OFFSET). */
  add(op: number, map: number): number {
    const off = HEADER + this.length * RECORD_SIZE
    if (off + RECORD_SIZE > this.buf.length) {
      const bigger = Buffer.alloc(HEADER + Math.max(16, this.length * 2) * RECORD_SIZE)
      this.buf.copy(bigger, 0, 0, off)
      this.buf = bigger
    }
    this.buf[off] = op
    this.buf[off + 1] = map
    this.length++
    return off
  }

  /** Copy record `i` of `from` to the end of this list. */
  addFrom(from: OpList, i: number): void {
    const off = this.add(0, 0)
    from.buf.copy(this.buf, off, HEADER + i * RECORD_SIZE, HEADER + (i + 1) * RECORD_SIZE)
  }

  /** The frame the addon writes (no copy). */
  frame(): Buffer {
    this.buf.writeUInt32LE(this.length, 0)
    return this.buf.subarray(0, HEADER + this.length * RECORD_SIZE)
  }

  /** Record i decoded (tests, messages). */
  at(i: number): MapOp {
    const off = HEADER + i * RECORD_SIZE
    const m = this.maps[this.buf[off + 1]]
    const key = Buffer.from(this.buf.subarray(off + KEY_OFFSET, off + KEY_OFFSET + m.keySize))
    if (this.buf[off] === OP_DELETE) return {op: 'delete', map: m.name, key}
    return {op: 'update', map: m.name, key, value: Buffer.from(this.buf.subarray(off + VALUE_OFFSET, off + VALUE_OFFSET + m.valueSize))}
  }

  toArray(): MapOp[] {
    return Array.from({length: this.length}, (_, i) => this.at(i))
  }
}

/** Writes frames of records into maps; the real one is the addon's, tests use an in-memory one. */
export interface MapWriter {
  write(ops: OpList): Promise<FrameResult>
  close(): Promise<void>
}

export type {FrameResult}

/**
 * A writer for the maps of `maps` pinned under `root`, holding the exclusive flock `lock` (taken
 * by `locker`, default this process) until close(). The addon keeps the maps' fds between
 * writers, re-opened when a pin's inode changes.
 */
export async function openMapWriter(root: string, maps: readonly OpMap[], opts: {lock?: {path: string; timeoutMs: number}; locker?: Locker} = {}): Promise<MapWriter> {
  const paths = maps.map((m) => mapPath(root, m.name))
  let held: HeldLock | undefined
  if (opts.lock) {
    held = opts.locker ? await opts.locker.acquire([{path: opts.lock.path, timeoutMs: opts.lock.timeoutMs}]) : await acquireFlock(opts.lock.path, opts.lock.timeoutMs)
  }
  try {
    // Every map is pinned (PN_BPF_NOT_LOADED before anything is written) and fits a record.
    for (const p of paths) callAddon(() => sys().mapInfo(p), 'open bpf maps')
  } catch (err) {
    await held?.release()
    throw err
  }
  return {
    async write(ops) {
      return callAddon(() => sys().mapWriteFrame(paths, ops.frame(), RECORD_LAYOUT), 'write bpf maps')
    },
    async close() {
      await held?.release()
    },
  }
}

/** The addon's exceptions in pn's words: a missing pin is an unloaded datapath, a bad frame a bad argument. */
function callAddon<T>(fn: () => T, action: string): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof PnError) throw err
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT') throw new PnError('PN_BPF_NOT_LOADED', `${action}: ${e.message}`, {hint: 'load the datapath with `pn bpf load --host`'})
    if (e instanceof TypeError) throw new PnError('PN_INVALID_ARGUMENT', `${action}: ${e.message.replace(/^write maps: /, '')}`, {hint: `send at most ${MAX_RECORDS} records of ops 1 and 2 a frame`})
    throw new PnError(e.code === 'EPERM' || e.code === 'EACCES' ? 'PN_NOT_ROOT' : 'PN_COMMAND_FAILED', `${action}: ${e.message}`, {cause: err})
  }
}
