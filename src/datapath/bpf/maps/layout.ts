/**
 * The vocabulary of a map descriptor: struct layouts (the TypeScript side of the C structs in
 * bpf/include/*.h, checked against the compiled object's BTF by test/unit/bpf-layout.test.ts)
 * and the byte helpers every codec uses. Integers are host byte order (the kernel's),
 * addresses network order, as in the C structs.
 */
import os from 'node:os'
import {formatIp, parseIp, type Family} from '../../../cidr/cidr.js'
import {PnError} from '../../../errors.js'

export interface FieldLayout {
  offset: number
  size: number
}

export interface StructLayout {
  /** C struct name, as in BTF. */
  name: string
  size: number
  fields: Record<string, FieldLayout>
  /** A plain integer (an array map's `__u32` index), not a struct: no members to check. */
  scalar?: boolean
}

export const f = (offset: number, size: number): FieldLayout => ({offset, size})

/** Map types pn uses, with their BPF_MAP_TYPE_* numbers (what BTF and bpftool report). */
export const MAP_TYPES = {hash: 1, array: 2, perf_event_array: 4, percpu_hash: 5, percpu_array: 6, lru_hash: 9, lru_percpu_hash: 10, lpm_trie: 11, ringbuf: 27} as const
export type MapType = keyof typeof MAP_TYPES

export const BPF_F_NO_PREALLOC = 1

export interface DecodedEntry {
  key: Record<string, unknown>
  value: Record<string, unknown>
}

/**
 * One pinned map, described once: its pin name, the header that defines it, the kernel map
 * parameters (type, size, flags — `pn` creates a missing map from these), key/value layouts
 * and the decoder `pn bpf map dump` shows entries with. Adding a map is one descriptor here
 * plus its C header.
 */
export interface MapDef {
  name: string
  /** bpf/include/<header> defines the map and its structs. */
  header: string
  type: MapType
  /** 0: one slot per possible CPU (a perf event array whose C definition leaves it to libbpf). */
  maxEntries: number
  flags: number
  key: StructLayout
  value: StructLayout
  /** The records a perf event array carries (the map's own key/value are CPU index → fd). */
  record?: StructLayout
  /** An array whose all-zero slots were never used: dumps, listings and entry counts skip them. */
  sparse?: boolean
  /** Holds only counters: pinned with another layout (an older pn), it is replaced on load, not refused. */
  resettable?: boolean
  /** Decode one entry; per-CPU maps pass every CPU's value. */
  decode(key: Buffer, values: Buffer[]): DecodedEntry
}

const LE = os.endianness() === 'LE'

export function writeU32(buf: Buffer, v: number, off: number): void {
  if (LE) buf.writeUInt32LE(v >>> 0, off)
  else buf.writeUInt32BE(v >>> 0, off)
}

export function readU32(buf: Buffer, off: number): number {
  return LE ? buf.readUInt32LE(off) : buf.readUInt32BE(off)
}

export function writeU16(buf: Buffer, v: number, off: number): void {
  if (LE) buf.writeUInt16LE(v & 0xffff, off)
  else buf.writeUInt16BE(v & 0xffff, off)
}

export function readU16(buf: Buffer, off: number): number {
  return LE ? buf.readUInt16LE(off) : buf.readUInt16BE(off)
}

export function readU64(buf: Buffer, off: number): bigint {
  return LE ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off)
}

export function writeU64(buf: Buffer, v: bigint, off: number): void {
  if (LE) buf.writeBigUInt64LE(v, off)
  else buf.writeBigUInt64BE(v, off)
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

export function put(buf: Buffer, layout: StructLayout, field: string, bytes: Buffer): void {
  const fl = layout.fields[field]
  bytes.copy(buf, fl.offset, 0, Math.min(bytes.length, fl.size))
}

export function slice(buf: Buffer, layout: StructLayout, field: string): Buffer {
  const fl = layout.fields[field]
  return buf.subarray(fl.offset, fl.offset + fl.size)
}

/** Family codes shared by every key that carries an address (ENDPOINT_KEY_IPV4/IPV6 in C). */
export const FAMILY_IPV4 = 1
export const FAMILY_IPV6 = 2

export function familyCode(family: Family): number {
  return family === 4 ? FAMILY_IPV4 : FAMILY_IPV6
}

export function familyOf(code: number): Family {
  return code === FAMILY_IPV6 ? 6 : 4
}

/** An IPv4 address as its 4 network-order bytes (keys and values of the lb4/ct4 maps). */
export function ip4Bytes(ip: string): Buffer {
  // Fast path for dotted quads (the service maps encode tens of thousands per apply).
  const parts = ip.split('.')
  if (parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return Buffer.from(parts.map(Number))
  const {family, bytes} = ipBytes(ip)
  if (family !== 4) throw new PnError('PN_INVALID_IP', `encode ${ip}: not an IPv4 address`, {hint: 'services are IPv4 only'})
  return bytes
}

export function ip4FromBytes(b: Buffer): string {
  return ipFromBytes(b.subarray(0, 4), 4)
}

/** Protocol numbers of the lb4/ct4 maps. */
export const IPPROTO = {tcp: 6, udp: 17} as const
export type L4Proto = keyof typeof IPPROTO

export function protoName(n: number): L4Proto | `proto-${number}` {
  return n === 6 ? 'tcp' : n === 17 ? 'udp' : `proto-${n}`
}

/** `bpftool … key hex 0a 00 …` words for a buffer. */
export function hexWords(buf: Buffer): string[] {
  return ['hex', ...buf.toString('hex').match(/../g)!]
}
