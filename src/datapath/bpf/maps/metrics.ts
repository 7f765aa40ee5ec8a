/** pn_metrics (bpf/include/metrics.h): packets and bytes per (outcome, direction, point), per CPU. */
import {DIRECTIONS, POINTS, reasonFromMetricByte} from '../drop-reasons.js'
import {f, readU64, type MapDef} from './layout.js'

const KEY = {name: 'metrics_key', size: 4, fields: {reason: f(0, 1), dir: f(1, 1), point: f(2, 1), pad: f(3, 1)}}
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

export function decodeMetricsKey(buf: Buffer): Pick<MetricsEntry, 'reason' | 'code' | 'description' | 'direction' | 'point'> {
  const r = reasonFromMetricByte(buf[KEY.fields.reason.offset])
  const dir = buf[KEY.fields.dir.offset]
  const point = buf[KEY.fields.point.offset]
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
  type: 'percpu_hash',
  maxEntries: 1024,
  flags: 0,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeMetricsKey(k), value: decodeMetricsValues(v)}),
}
