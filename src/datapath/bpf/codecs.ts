/**
 * Byte layouts of the pn_ map keys and values, the TypeScript side of the contract in
 * bpf/include/*.h. Offsets live in one table per struct (checked against the compiled object's
 * BTF by test/unit/bpf-layout.test.ts); encoders write and decoders read through that table.
 * Integers are host byte order (the kernel's), addresses network order, as in the C structs.
 */
import os from 'node:os'
import {formatIp, parseIp, type Family} from '../../cidr/cidr.js'
import {PnError} from '../../errors.js'
import {DIRECTIONS, POINTS, reasonFromMetricByte} from './drop-reasons.js'

export interface FieldLayout {
  offset: number
  size: number
}

export interface StructLayout {
  /** C struct name, as in BTF. */
  name: string
  size: number
  fields: Record<string, FieldLayout>
}

const f = (offset: number, size: number): FieldLayout => ({offset, size})

export const LAYOUTS = {
  endpoint_key: {name: 'endpoint_key', size: 20, fields: {addr: f(0, 16), family: f(16, 1), pad: f(17, 3)}},
  endpoint_info: {
    name: 'endpoint_info',
    size: 24,
    fields: {ifindex: f(0, 4), endpoint_id: f(4, 4), flags: f(8, 4), mac: f(12, 6), node_mac: f(18, 6)},
  },
  lxc_key: {name: 'lxc_key', size: 4, fields: {ifindex: f(0, 4)}},
  lxc_info: {
    name: 'lxc_info',
    size: 40,
    fields: {ip4: f(0, 4), endpoint_id: f(4, 4), ip6: f(8, 16), mac: f(24, 6), pod_mac: f(30, 6), flags: f(36, 4)},
  },
  ipcache_key: {name: 'ipcache_key', size: 24, fields: {prefixlen: f(0, 4), family: f(4, 1), pad: f(5, 3), addr: f(8, 16)}},
  ipcache_info: {
    name: 'ipcache_info',
    size: 28,
    fields: {identity: f(0, 4), flags: f(4, 4), node_ip: f(8, 16), node_family: f(24, 1), pad: f(25, 3)},
  },
  metrics_key: {name: 'metrics_key', size: 4, fields: {reason: f(0, 1), dir: f(1, 1), point: f(2, 1), pad: f(3, 1)}},
  metrics_value: {name: 'metrics_value', size: 16, fields: {packets: f(0, 8), bytes: f(8, 8)}},
} as const satisfies Record<string, StructLayout>

export type LayoutName = keyof typeof LAYOUTS

export const ENDPOINT_KEY_IPV4 = 1
export const ENDPOINT_KEY_IPV6 = 2
export const ENDPOINT_F_HOST = 1
export const IPCACHE_F_LOCAL = 1

const LE = os.endianness() === 'LE'

function writeU32(buf: Buffer, v: number, off: number): void {
  if (LE) buf.writeUInt32LE(v >>> 0, off)
  else buf.writeUInt32BE(v >>> 0, off)
}

function readU32(buf: Buffer, off: number): number {
  return LE ? buf.readUInt32LE(off) : buf.readUInt32BE(off)
}

function readU64(buf: Buffer, off: number): bigint {
  return LE ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off)
}

/** An address as network-order bytes (4 or 16). */
export function ipBytes(ip: string): {family: Family; bytes: Buffer} {
  const p = parseIp(ip)
  const n = p.family === 4 ? 4 : 16
  const bytes = Buffer.alloc(n)
  for (let i = 0; i < n; i++) bytes[i] = Number((p.value >> BigInt(8 * (n - 1 - i))) & 0xffn)
  return {family: p.family, bytes}
}

export function ipFromBytes(bytes: Buffer, family: Family): string {
  let v = 0n
  for (const b of bytes) v = (v << 8n) | BigInt(b)
  return formatIp(v, family)
}

export function macBytes(mac: string): Buffer {
  const parts = mac.split(':')
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new PnError('PN_INVALID_ARGUMENT', `parse mac ${JSON.stringify(mac)}: not a MAC address`, {hint: 'write it like 02:11:22:33:44:55'})
  }
  return Buffer.from(parts.map((p) => parseInt(p, 16)))
}

export function macFromBytes(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

function put(buf: Buffer, layout: StructLayout, field: string, bytes: Buffer): void {
  const fl = layout.fields[field]
  bytes.copy(buf, fl.offset, 0, Math.min(bytes.length, fl.size))
}

function slice(buf: Buffer, layout: StructLayout, field: string): Buffer {
  const fl = layout.fields[field]
  return buf.subarray(fl.offset, fl.offset + fl.size)
}

function familyCode(family: Family): number {
  return family === 4 ? ENDPOINT_KEY_IPV4 : ENDPOINT_KEY_IPV6
}

function familyOf(code: number): Family {
  return code === ENDPOINT_KEY_IPV6 ? 6 : 4
}

// ---- pn_endpoints ---------------------------------------------------------------------------

export interface EndpointEntry {
  ip: string
  ifindex: number
  endpointId: number
  flags: number
  /** The pod's MAC (new L2 destination). */
  podMac: string
  /** The lxc MAC (new L2 source). */
  lxcMac: string
}

export function encodeEndpointKey(ip: string): Buffer {
  const L = LAYOUTS.endpoint_key
  const buf = Buffer.alloc(L.size)
  const {family, bytes} = ipBytes(ip)
  put(buf, L, 'addr', bytes)
  buf[L.fields.family.offset] = familyCode(family)
  return buf
}

export function decodeEndpointKey(buf: Buffer): {ip: string} {
  const L = LAYOUTS.endpoint_key
  const family = familyOf(buf[L.fields.family.offset])
  return {ip: ipFromBytes(slice(buf, L, 'addr').subarray(0, family === 4 ? 4 : 16), family)}
}

export function encodeEndpointInfo(e: Omit<EndpointEntry, 'ip'>): Buffer {
  const L = LAYOUTS.endpoint_info
  const buf = Buffer.alloc(L.size)
  writeU32(buf, e.ifindex, L.fields.ifindex.offset)
  writeU32(buf, e.endpointId, L.fields.endpoint_id.offset)
  writeU32(buf, e.flags, L.fields.flags.offset)
  put(buf, L, 'mac', macBytes(e.podMac))
  put(buf, L, 'node_mac', macBytes(e.lxcMac))
  return buf
}

export function decodeEndpointInfo(buf: Buffer): Omit<EndpointEntry, 'ip'> {
  const L = LAYOUTS.endpoint_info
  return {
    ifindex: readU32(buf, L.fields.ifindex.offset),
    endpointId: readU32(buf, L.fields.endpoint_id.offset),
    flags: readU32(buf, L.fields.flags.offset),
    podMac: macFromBytes(slice(buf, L, 'mac')),
    lxcMac: macFromBytes(slice(buf, L, 'node_mac')),
  }
}

// ---- pn_lxc ---------------------------------------------------------------------------------

export interface LxcEntry {
  ifindex: number
  ip4?: string
  ip6?: string
  endpointId: number
  lxcMac: string
  podMac: string
  flags: number
}

export function encodeLxcKey(ifindex: number): Buffer {
  const buf = Buffer.alloc(LAYOUTS.lxc_key.size)
  writeU32(buf, ifindex, LAYOUTS.lxc_key.fields.ifindex.offset)
  return buf
}

export function decodeLxcKey(buf: Buffer): {ifindex: number} {
  return {ifindex: readU32(buf, LAYOUTS.lxc_key.fields.ifindex.offset)}
}

export function encodeLxcInfo(e: Omit<LxcEntry, 'ifindex'>): Buffer {
  const L = LAYOUTS.lxc_info
  const buf = Buffer.alloc(L.size)
  if (e.ip4) put(buf, L, 'ip4', ipBytes(e.ip4).bytes)
  writeU32(buf, e.endpointId, L.fields.endpoint_id.offset)
  if (e.ip6) put(buf, L, 'ip6', ipBytes(e.ip6).bytes)
  put(buf, L, 'mac', macBytes(e.lxcMac))
  put(buf, L, 'pod_mac', macBytes(e.podMac))
  writeU32(buf, e.flags, L.fields.flags.offset)
  return buf
}

export function decodeLxcInfo(buf: Buffer): Omit<LxcEntry, 'ifindex'> {
  const L = LAYOUTS.lxc_info
  const ip4 = slice(buf, L, 'ip4')
  const ip6 = slice(buf, L, 'ip6')
  return {
    ...(ip4.some((b) => b !== 0) ? {ip4: ipFromBytes(ip4, 4)} : {}),
    ...(ip6.some((b) => b !== 0) ? {ip6: ipFromBytes(ip6, 6)} : {}),
    endpointId: readU32(buf, L.fields.endpoint_id.offset),
    lxcMac: macFromBytes(slice(buf, L, 'mac')),
    podMac: macFromBytes(slice(buf, L, 'pod_mac')),
    flags: readU32(buf, L.fields.flags.offset),
  }
}

// ---- pn_ipcache -----------------------------------------------------------------------------

export interface IpcacheEntry {
  prefix: string
  identity: number
  flags: number
  nodeIp?: string
}

/** LPM key: prefixlen counts the 32 bits of family+pad before the address. */
export function encodeIpcacheKey(prefix: string): Buffer {
  const L = LAYOUTS.ipcache_key
  const [ip, len] = prefix.split('/')
  const {family, bytes} = ipBytes(ip)
  const bits = len === undefined ? bytes.length * 8 : Number(len)
  const buf = Buffer.alloc(L.size)
  writeU32(buf, 32 + bits, L.fields.prefixlen.offset)
  buf[L.fields.family.offset] = familyCode(family)
  put(buf, L, 'addr', bytes)
  return buf
}

export function decodeIpcacheKey(buf: Buffer): {prefix: string} {
  const L = LAYOUTS.ipcache_key
  const family = familyOf(buf[L.fields.family.offset])
  const ip = ipFromBytes(slice(buf, L, 'addr').subarray(0, family === 4 ? 4 : 16), family)
  return {prefix: `${ip}/${readU32(buf, L.fields.prefixlen.offset) - 32}`}
}

export function encodeIpcacheInfo(e: Omit<IpcacheEntry, 'prefix'>): Buffer {
  const L = LAYOUTS.ipcache_info
  const buf = Buffer.alloc(L.size)
  writeU32(buf, e.identity, L.fields.identity.offset)
  writeU32(buf, e.flags, L.fields.flags.offset)
  if (e.nodeIp) {
    const {family, bytes} = ipBytes(e.nodeIp)
    put(buf, L, 'node_ip', bytes)
    buf[L.fields.node_family.offset] = familyCode(family)
  }
  return buf
}

export function decodeIpcacheInfo(buf: Buffer): Omit<IpcacheEntry, 'prefix'> {
  const L = LAYOUTS.ipcache_info
  const fam = buf[L.fields.node_family.offset]
  const family = familyOf(fam)
  return {
    identity: readU32(buf, L.fields.identity.offset),
    flags: readU32(buf, L.fields.flags.offset),
    ...(fam ? {nodeIp: ipFromBytes(slice(buf, L, 'node_ip').subarray(0, family === 4 ? 4 : 16), family)} : {}),
  }
}

// ---- pn_metrics -----------------------------------------------------------------------------

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
  const L = LAYOUTS.metrics_key
  const r = reasonFromMetricByte(buf[L.fields.reason.offset])
  const dir = buf[L.fields.dir.offset]
  const point = buf[L.fields.point.offset]
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
  const L = LAYOUTS.metrics_value
  let packets = 0n
  let bytes = 0n
  for (const v of values) {
    packets += readU64(v, L.fields.packets.offset)
    bytes += readU64(v, L.fields.bytes.offset)
  }
  return {packets: Number(packets), bytes: Number(bytes)}
}

/** `bpftool … key hex 0a 00 …` words for a buffer. */
export function hexWords(buf: Buffer): string[] {
  return ['hex', ...[...buf].map((b) => b.toString(16).padStart(2, '0'))]
}

/** bpftool -j prints bytes as ["0x0a", …]. */
export function bufferFromBpftool(bytes: string[]): Buffer {
  return Buffer.from(bytes.map((b) => parseInt(b, 16)))
}
