/**
 * pn_metrics (bpf/include/metrics.h): packets and bytes per (outcome, direction, point), per CPU,
 * in a per-CPU array whose slot is computed from the three (metricsSlot): no hash walk per packet.
 * Slots never hit stay all-zero, and dumps skip them (`sparse`).
 */
import {DIRECTIONS, POINTS, reasonFromMetricByte} from '../drop-reasons.js'
import {f, readU32, readU64, writeU32, type MapDef, type StructLayout} from './layout.js'

const KEY: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}
/** METRICS_SLOTS in metrics.h: 3 bits of point, 1 of direction, 8 of outcome. */
export const METRICS_SLOTS = 4096
const VALUE = {name: 'metrics_value', size: 16, fields: {packets: f(0, 8), bytes: f(8, 8)}}

export interface MetricsEntry {
  reason: string
  code: number
  description: string
  direction: string
  point: string
  packets: number
  bytes: number
}

/** The slot of (outcome byte, direction, point), as metrics_count() in metrics.h computes it. */
export function metricsSlot(reasonByte: number, dir: number, point: number): number {
  return ((point & 7) << 9) | (((dir - 1) & 1) << 8) | (reasonByte & 0xff)
}

export function encodeMetricsKey(reasonByte: number, dir: number, point: number): Buffer {
  const buf = Buffer.alloc(KEY.size)
  writeU32(buf, metricsSlot(reasonByte, dir, point), 0)
  return buf
}

export function decodeMetricsKey(buf: Buffer): Pick<MetricsEntry, 'reason' | 'code' | 'description' | 'direction' | 'point'> {
  const slot = readU32(buf, 0)
  const r = reasonFromMetricByte(slot & 0xff)
  const dir = ((slot >> 8) & 1) + 1
  const point = (slot >> 9) & 7
  return {
    reason: r.name,
    code: r.code,
    description: r.description,
    direction: DIRECTIONS[dir] ?? `dir-${dir}`,
    point: POINTS[point] ?? `point-${point}`,
  }
}

/** Sum of the per-CPU values. */
export function decodeMetricsValues(values: Buffer[]): {packets: number; bytes: number} {
  let packets = 0n
  let bytes = 0n
  for (const v of values) {
    packets += readU64(v, VALUE.fields.packets.offset)
    bytes += readU64(v, VALUE.fields.bytes.offset)
  }
  return {packets: Number(packets), bytes: Number(bytes)}
}

export const metricsMap: MapDef = {
  name: 'pn_metrics',
  header: 'metrics.h',
  type: 'percpu_array',
  maxEntries: METRICS_SLOTS,
  flags: 0,
  sparse: true,
  resettable: true,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeMetricsKey(k), value: decodeMetricsValues(v)}),
}
