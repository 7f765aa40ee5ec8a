/**
 * pn_trace_config and pn_events (bpf/include/trace.h): the gate `pn monitor` opens, and the
 * trace/drop events the datapath emits while it is open. The event struct is part of the
 * C ↔ TypeScript contract like every key and value (checked against BTF).
 */
import {DIRECTIONS, POINTS, reasonFromMetricByte, type ReasonInfo} from '../drop-reasons.js'
import {f, ipFromBytes, readU16, readU32, readU64, slice, writeU32, type MapDef, type StructLayout} from './layout.js'

/** Observation points (OBS_* in trace.h; a unit test parses the header). Cilium's names. */
export const OBSERVATION_POINTS: Record<number, string> = {
  1: 'from-endpoint',
  2: 'to-endpoint',
  3: 'from-network',
  4: 'to-network',
  5: 'from-host',
  6: 'to-host',
  7: 'to-stack',
  8: 'to-overlay',
  9: 'from-overlay',
}

/** OBS_* names as in the header, for the header test. */
export const OBS_DEFINES: Record<string, number> = {
  OBS_FROM_ENDPOINT: 1,
  OBS_TO_ENDPOINT: 2,
  OBS_FROM_NETWORK: 3,
  OBS_TO_NETWORK: 4,
  OBS_FROM_HOST: 5,
  OBS_TO_HOST: 6,
  OBS_TO_STACK: 7,
  OBS_TO_OVERLAY: 8,
  OBS_FROM_OVERLAY: 9,
}

export const EVENT_TRACE = 1

/** trace_event.xlate (TRACE_XLATE_* in trace.h): what orig_daddr/orig_dport hold. */
export const TRACE_XLATE_SVC = 1
export const TRACE_XLATE_SNAT = 2
export const TRACE_XLATE_REV_SNAT = 3
export const EVENT_DROP = 2

/** pn_trace_config flags (TRACE_CFG_*). */
export const TRACE_CFG_TRACE = 1
export const TRACE_CFG_DROP = 2

const CONFIG_KEY: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}
const CONFIG_VALUE: StructLayout = {name: 'trace_config', size: 4, fields: {flags: f(0, 4)}}

export function encodeTraceConfigKey(): Buffer {
  return Buffer.alloc(4)
}

export function encodeTraceConfig(flags: number): Buffer {
  const buf = Buffer.alloc(CONFIG_VALUE.size)
  writeU32(buf, flags, CONFIG_VALUE.fields.flags.offset)
  return buf
}

export function decodeTraceConfig(buf: Buffer): {flags: number; trace: boolean; drop: boolean} {
  const flags = readU32(buf, CONFIG_VALUE.fields.flags.offset)
  return {flags, trace: (flags & TRACE_CFG_TRACE) !== 0, drop: (flags & TRACE_CFG_DROP) !== 0}
}

export const traceConfigMap: MapDef = {
  name: 'pn_trace_config',
  header: 'trace.h',
  type: 'array',
  maxEntries: 1,
  flags: 0,
  key: CONFIG_KEY,
  value: CONFIG_VALUE,
  decode: (k, v) => ({key: {index: readU32(k, 0)}, value: decodeTraceConfig(v[0])}),
}

export const TRACE_EVENT: StructLayout = {
  name: 'trace_event',
  size: 96,
  fields: {
    ktime_ns: f(0, 8),
    ifindex: f(8, 4),
    len: f(12, 4),
    type: f(16, 1),
    obs: f(17, 1),
    point: f(18, 1),
    reason: f(19, 1),
    dir: f(20, 1),
    family: f(21, 1),
    proto: f(22, 1),
    xlate: f(23, 1),
    l4: f(24, 8),
    ethertype: f(32, 2),
    orig_dport: f(34, 2),
    pad2: f(36, 4),
    saddr: f(40, 16),
    daddr: f(56, 16),
    orig_daddr: f(72, 16),
    src_identity: f(88, 4),
    dst_identity: f(92, 4),
  },
}

const CPU_SLOT: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}

export const eventsMap: MapDef = {
  name: 'pn_events',
  header: 'trace.h',
  type: 'perf_event_array',
  maxEntries: 0,
  flags: 0,
  key: CPU_SLOT,
  value: CPU_SLOT,
  record: TRACE_EVENT,
  decode: (k, v) => ({key: {cpu: readU32(k, 0)}, value: {fd: v[0]?.length >= 4 ? readU32(v[0], 0) : 0}}),
}

const PROTOCOLS: Record<number, string> = {1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp'}
const ETHERTYPES: Record<number, string> = {0x0800: 'ipv4', 0x0806: 'arp', 0x86dd: 'ipv6'}

/** One event as the datapath reported it (names resolved from the shared tables, no kernel lookups). */
export interface DatapathEvent {
  type: 'trace' | 'drop'
  /** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns). */
  ktimeNs: bigint
  /** Observation point (trace), or the point of the program that dropped (drop). */
  observationPoint: string
  program: string
  reason: ReasonInfo
  direction: string
  ifindex: number
  length: number
  ethertype: string
  family?: 4 | 6
  protocol?: string
  srcIp?: string
  dstIp?: string
  srcPort?: number
  dstPort?: number
  icmp?: {type: number; code: number; id?: number; seq?: number}
  arp?: 'request' | 'reply' | number
  /** Service translation: the address:port the packet was sent to before load balancing. */
  service?: {ip: string; port?: number}
  /**
   * Security identities of source and destination as the policy check saw them (IPv4 on a
   * pod's path). Labels are for the caller to resolve (`srcLabels`/`dstLabels`): the datapath
   * knows only numbers.
   */
  identities?: {src: number; dst: number; srcLabels?: string[]; dstLabels?: string[]}
  /**
   * Masquerade: `snat` — the source (pod IP, port or echo id) before to-netdev rewrote it to the
   * node's; `rev-snat` — the destination (node IP, NAT port) before from-netdev restored the pod's.
   */
  nat?: {kind: 'snat' | 'rev-snat'; ip: string; port?: number}
}

/** Decode one pn_events record (at least TRACE_EVENT.size bytes; perf pads the tail). */
export function decodeTraceEvent(buf: Buffer): DatapathEvent {
  const F = TRACE_EVENT.fields
  const u8 = (name: string) => buf[F[name].offset]
  const type = u8('type') === EVENT_DROP ? 'drop' : 'trace'
  const ethertypeNum = readU16(buf, F.ethertype.offset)
  const family = u8('family')
  const l4 = slice(buf, TRACE_EVENT, 'l4')
  const ev: DatapathEvent = {
    type,
    ktimeNs: readU64(buf, F.ktime_ns.offset),
    observationPoint: OBSERVATION_POINTS[u8('obs')] ?? `obs-${u8('obs')}`,
    program: POINTS[u8('point')] ?? `point-${u8('point')}`,
    reason: reasonFromMetricByte(u8('reason')),
    direction: DIRECTIONS[u8('dir')] ?? `dir-${u8('dir')}`,
    ifindex: readU32(buf, F.ifindex.offset),
    length: readU32(buf, F.len.offset),
    ethertype: ETHERTYPES[ethertypeNum] ?? `0x${ethertypeNum.toString(16).padStart(4, '0')}`,
  }
  if (family !== 4 && family !== 6) return ev
  const n = family === 4 ? 4 : 16
  ev.family = family
  const srcId = readU32(buf, F.src_identity.offset)
  const dstId = readU32(buf, F.dst_identity.offset)
  if (srcId !== 0 || dstId !== 0) ev.identities = {src: srcId, dst: dstId}
  ev.srcIp = ipFromBytes(slice(buf, TRACE_EVENT, 'saddr').subarray(0, n), family)
  ev.dstIp = ipFromBytes(slice(buf, TRACE_EVENT, 'daddr').subarray(0, n), family)
  if (ethertypeNum === 0x0806) {
    const op = l4.readUInt16BE(0)
    ev.protocol = 'arp'
    ev.arp = op === 1 ? 'request' : op === 2 ? 'reply' : op
    return ev
  }
  const proto = u8('proto')
  ev.protocol = PROTOCOLS[proto] ?? `proto-${proto}`
  if (proto === 6 || proto === 17 || proto === 132) {
    ev.srcPort = l4.readUInt16BE(0)
    ev.dstPort = l4.readUInt16BE(2)
  } else if (proto === 1 || proto === 58) {
    const t = l4[0]
    const echo = proto === 1 ? t === 0 || t === 8 : t === 128 || t === 129
    ev.icmp = {type: t, code: l4[1], ...(echo ? {id: l4.readUInt16BE(4), seq: l4.readUInt16BE(6)} : {})}
  }
  const orig = slice(buf, TRACE_EVENT, 'orig_daddr').subarray(0, n)
  if (orig.some((b) => b !== 0)) {
    const port = slice(buf, TRACE_EVENT, 'orig_dport').readUInt16BE(0)
    const at = {ip: ipFromBytes(orig, family), ...(port ? {port} : {})}
    const xlate = u8('xlate')
    if (xlate === TRACE_XLATE_SNAT || xlate === TRACE_XLATE_REV_SNAT) ev.nat = {kind: xlate === TRACE_XLATE_SNAT ? 'snat' : 'rev-snat', ...at}
    else if (xlate === TRACE_XLATE_SVC || xlate === 0) ev.service = at
  }
  return ev
}
