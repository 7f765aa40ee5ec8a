/** pn_lb4_stats (bpf/include/lb.h): per-service packets, bytes, new connections and replies, per CPU. */
import {f, readU32, readU64, writeU32, type MapDef} from './layout.js'

const KEY = {name: 'lb4_stats_key', size: 4, fields: {rev_nat_index: f(0, 4)}}
const VALUE = {name: 'lb4_stats', size: 32, fields: {packets: f(0, 8), bytes: f(8, 8), connections: f(16, 8), replies: f(24, 8)}}

export type Lb4Stats = {
  packets: number
  bytes: number
  connections: number
  replies: number
}

export function encodeLb4StatsKey(revNatIndex: number): Buffer {
  const buf = Buffer.alloc(KEY.size)
  writeU32(buf, revNatIndex, KEY.fields.rev_nat_index.offset)
  return buf
}

export function decodeLb4StatsKey(buf: Buffer): {revNatIndex: number} {
  return {revNatIndex: readU32(buf, KEY.fields.rev_nat_index.offset)}
}

/** Sum of the per-CPU values. */
export function decodeLb4Stats(values: Buffer[]): Lb4Stats {
  const sum = {packets: 0n, bytes: 0n, connections: 0n, replies: 0n}
  for (const v of values) {
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += readU64(v, VALUE.fields[k].offset)
  }
  return {packets: Number(sum.packets), bytes: Number(sum.bytes), connections: Number(sum.connections), replies: Number(sum.replies)}
}

export const lb4StatsMap: MapDef = {
  name: 'pn_lb4_stats',
  header: 'lb.h',
  type: 'lru_percpu_hash',
  resettable: true,
  maxEntries: 131072,
  flags: 0,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeLb4StatsKey(k), value: decodeLb4Stats(v)}),
}
