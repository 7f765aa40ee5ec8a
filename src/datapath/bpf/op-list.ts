/**
 * Map operations encoded straight into one Buffer, in the record format native/pn-mapbatch.c
 * reads: a u32 LE count, then 28-byte records
 *
 *   u8 op (1 update, 2 delete) | u8 map index | u16 0 | key[12] | value[12]
 *
 * A 10,000-service apply is 20,000 operations (and as many inverses): one object and two
 * Buffers per operation, then a hex line each for bpftool, cost more than writing the maps.
 */
import {openMapBatch, type FrameResult} from '../../exec/mapbatch.js'
import {mapPath} from './bpffs.js'
import type {MapOp} from './map-io.js'

export const OP_UPDATE = 1
export const OP_DELETE = 2
export const RECORD_SIZE = 28
export const KEY_OFFSET = 4
export const VALUE_OFFSET = 16
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

  /** The frame pn-mapbatch reads (no copy). */
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

/** Writes frames of records into maps; the real one is pn-mapbatch, tests use an in-memory one. */
export interface MapWriter {
  write(ops: OpList): Promise<FrameResult>
  close(): Promise<void>
}

export type {FrameResult}

/**
 * A writer for the maps of `maps` pinned under `root`, holding the exclusive flock `lock` until
 * close() (one process for lock and writes).
 */
export async function openMapWriter(root: string, maps: readonly OpMap[], opts: {lock?: {path: string; timeoutMs: number}} = {}): Promise<MapWriter> {
  const p = await openMapBatch(maps.map((m) => mapPath(root, m.name)), opts)
  return {
    write: (ops) => p.write(ops.frame()),
    close: () => p.close(),
  }
}
