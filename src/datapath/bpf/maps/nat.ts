/**
 * BPF masquerade's maps (bpf/include/nat.h, nat6.h): pn_snat4 and pn_snat6, the LRU tables of
 * translated flows (two entries per flow, OUT keyed by the pod's tuple, IN by the reply's), and
 * pn_nonmasq, the prefixes of both families never masqueraded (the pod CIDRs and
 * --non-masquerade-cidr), an LPM trie shaped like pn_ipcache.
 */
import {f, familyCode, familyOf, ip4Bytes, ip4FromBytes, ipBytes, ipFromBytes, put, readU32, readU64, slice, writeU32, writeU64, BPF_F_NO_PREALLOC, type MapDef} from './layout.js'

export const NAT_DIR_OUT = 1
export const NAT_DIR_IN = 2

/** TCP state in an IN entry's flags (nat.h): only SYNs seen; a FIN or RST seen. Neither: established. */
export const NAT_F_TCP_SYN = 0x1
export const NAT_F_TCP_CLOSING = 0x2
/** Seconds a SYN-only / closing TCP flow lives unused (nat.h; never more than the TCP timeout). */
export const NAT_TCP_SYN_TIMEOUT = 60
export const NAT_TCP_CLOSE_TIMEOUT = 10

export type NatTcpState = 'syn-sent' | 'established' | 'closing'

/** The TCP state an IN entry's flags record. */
export function natTcpState(flags: number): NatTcpState {
  return flags & NAT_F_TCP_CLOSING ? 'closing' : flags & NAT_F_TCP_SYN ? 'syn-sent' : 'established'
}

/** What a map dump shows of an entry's flags: the TCP state of a TCP flow's IN entry. */
function stateOf(k: Nat4Key, e: Nat4Entry): {state?: NatTcpState} {
  return k.proto === 'tcp' && k.dir === 'in' ? {state: natTcpState(e.flags ?? 0)} : {}
}

/** pn_snat4 entries: 131,072 flows, two entries each. */
export const SNAT4_MAX_ENTRIES = 262144
/** pn_snat6 entries: 65,536 flows, two entries each (an entry is twice pn_snat4's). */
export const SNAT6_MAX_ENTRIES = 131072
export const NONMASQ_MAX_ENTRIES = 1024

const PROTOS: Record<number, string> = {1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6'}
const PROTO_NUM: Record<string, number> = {icmp: 1, tcp: 6, udp: 17, icmpv6: 58}

const NAT_KEY = {
  name: 'nat4_key',
  size: 16,
  fields: {saddr: f(0, 4), daddr: f(4, 4), sport: f(8, 2), dport: f(10, 2), proto: f(12, 1), dir: f(13, 1), pad: f(14, 2)},
}
const NAT_VALUE = {
  name: 'nat4_entry',
  size: 24,
  fields: {last_seen_ns: f(0, 8), packets: f(8, 8), to_addr: f(16, 4), to_port: f(20, 2), flags: f(22, 1), pad: f(23, 1)},
}

export interface Nat4Key {
  saddr: string
  daddr: string
  /** Ports, or for ICMP echo the identifier (sport on a request, dport on a reply). */
  sport: number
  dport: number
  proto: 'tcp' | 'udp' | 'icmp' | string
  dir: 'out' | 'in'
}

export interface Nat4Entry {
  /** CLOCK_MONOTONIC nanoseconds of the last packet. */
  lastSeenNs: bigint
  packets: number
  toAddr: string
  toPort: number
  /** IN entries of TCP flows: NAT_F_TCP_* (0 when absent). */
  flags?: number
}

export function encodeNat4Key(k: Nat4Key): Buffer {
  const buf = Buffer.alloc(NAT_KEY.size)
  put(buf, NAT_KEY, 'saddr', ip4Bytes(k.saddr))
  put(buf, NAT_KEY, 'daddr', ip4Bytes(k.daddr))
  buf.writeUInt16BE(k.sport, NAT_KEY.fields.sport.offset)
  buf.writeUInt16BE(k.dport, NAT_KEY.fields.dport.offset)
  buf[NAT_KEY.fields.proto.offset] = PROTO_NUM[k.proto] ?? Number(k.proto.replace('proto-', ''))
  buf[NAT_KEY.fields.dir.offset] = k.dir === 'out' ? NAT_DIR_OUT : NAT_DIR_IN
  return buf
}

export function decodeNat4Key(buf: Buffer): Nat4Key {
  const p = buf[NAT_KEY.fields.proto.offset]
  return {
    saddr: ip4FromBytes(slice(buf, NAT_KEY, 'saddr')),
    daddr: ip4FromBytes(slice(buf, NAT_KEY, 'daddr')),
    sport: buf.readUInt16BE(NAT_KEY.fields.sport.offset),
    dport: buf.readUInt16BE(NAT_KEY.fields.dport.offset),
    proto: PROTOS[p] ?? `proto-${p}`,
    dir: buf[NAT_KEY.fields.dir.offset] === NAT_DIR_OUT ? 'out' : 'in',
  }
}

export function encodeNat4Entry(e: Nat4Entry): Buffer {
  const buf = Buffer.alloc(NAT_VALUE.size)
  writeU64(buf, e.lastSeenNs, NAT_VALUE.fields.last_seen_ns.offset)
  writeU64(buf, BigInt(e.packets), NAT_VALUE.fields.packets.offset)
  put(buf, NAT_VALUE, 'to_addr', ip4Bytes(e.toAddr))
  buf.writeUInt16BE(e.toPort, NAT_VALUE.fields.to_port.offset)
  buf[NAT_VALUE.fields.flags.offset] = e.flags ?? 0
  return buf
}

export function decodeNat4Entry(buf: Buffer): Nat4Entry {
  return {
    lastSeenNs: readU64(buf, NAT_VALUE.fields.last_seen_ns.offset),
    packets: Number(readU64(buf, NAT_VALUE.fields.packets.offset)),
    toAddr: ip4FromBytes(slice(buf, NAT_VALUE, 'to_addr')),
    toPort: buf.readUInt16BE(NAT_VALUE.fields.to_port.offset),
    flags: buf[NAT_VALUE.fields.flags.offset],
  }
}

export const snat4Map: MapDef = {
  name: 'pn_snat4',
  header: 'nat.h',
  type: 'lru_hash',
  maxEntries: SNAT4_MAX_ENTRIES,
  flags: 0,
  key: NAT_KEY,
  value: NAT_VALUE,
  decode: (k, v) => {
    const key = decodeNat4Key(k)
    const e = decodeNat4Entry(v[0])
    return {key: {...key}, value: {...e, lastSeenNs: e.lastSeenNs.toString(), ...stateOf(key, e)}}
  },
}

const NAT6_KEY = {
  name: 'nat6_key',
  size: 40,
  fields: {saddr: f(0, 16), daddr: f(16, 16), sport: f(32, 2), dport: f(34, 2), proto: f(36, 1), dir: f(37, 1), pad: f(38, 2)},
}
const NAT6_VALUE = {
  name: 'nat6_entry',
  size: 40,
  fields: {last_seen_ns: f(0, 8), packets: f(8, 8), to_addr: f(16, 16), to_port: f(32, 2), flags: f(34, 1), pad: f(35, 5)},
}

/** A pn_snat6 key: as Nat4Key with IPv6 addresses ('icmpv6' for echo). */
export type Nat6Key = Nat4Key
export type Nat6Entry = Nat4Entry

export function encodeNat6Key(k: Nat6Key): Buffer {
  const buf = Buffer.alloc(NAT6_KEY.size)
  put(buf, NAT6_KEY, 'saddr', ipBytes(k.saddr).bytes)
  put(buf, NAT6_KEY, 'daddr', ipBytes(k.daddr).bytes)
  buf.writeUInt16BE(k.sport, NAT6_KEY.fields.sport.offset)
  buf.writeUInt16BE(k.dport, NAT6_KEY.fields.dport.offset)
  buf[NAT6_KEY.fields.proto.offset] = PROTO_NUM[k.proto] ?? Number(k.proto.replace('proto-', ''))
  buf[NAT6_KEY.fields.dir.offset] = k.dir === 'out' ? NAT_DIR_OUT : NAT_DIR_IN
  return buf
}

export function decodeNat6Key(buf: Buffer): Nat6Key {
  const p = buf[NAT6_KEY.fields.proto.offset]
  return {
    saddr: ipFromBytes(slice(buf, NAT6_KEY, 'saddr'), 6),
    daddr: ipFromBytes(slice(buf, NAT6_KEY, 'daddr'), 6),
    sport: buf.readUInt16BE(NAT6_KEY.fields.sport.offset),
    dport: buf.readUInt16BE(NAT6_KEY.fields.dport.offset),
    proto: PROTOS[p] ?? `proto-${p}`,
    dir: buf[NAT6_KEY.fields.dir.offset] === NAT_DIR_OUT ? 'out' : 'in',
  }
}

export function encodeNat6Entry(e: Nat6Entry): Buffer {
  const buf = Buffer.alloc(NAT6_VALUE.size)
  writeU64(buf, e.lastSeenNs, NAT6_VALUE.fields.last_seen_ns.offset)
  writeU64(buf, BigInt(e.packets), NAT6_VALUE.fields.packets.offset)
  put(buf, NAT6_VALUE, 'to_addr', ipBytes(e.toAddr).bytes)
  buf.writeUInt16BE(e.toPort, NAT6_VALUE.fields.to_port.offset)
  buf[NAT6_VALUE.fields.flags.offset] = e.flags ?? 0
  return buf
}

export function decodeNat6Entry(buf: Buffer): Nat6Entry {
  return {
    lastSeenNs: readU64(buf, NAT6_VALUE.fields.last_seen_ns.offset),
    packets: Number(readU64(buf, NAT6_VALUE.fields.packets.offset)),
    toAddr: ipFromBytes(slice(buf, NAT6_VALUE, 'to_addr'), 6),
    toPort: buf.readUInt16BE(NAT6_VALUE.fields.to_port.offset),
    flags: buf[NAT6_VALUE.fields.flags.offset],
  }
}

export const snat6Map: MapDef = {
  name: 'pn_snat6',
  header: 'nat6.h',
  type: 'lru_hash',
  maxEntries: SNAT6_MAX_ENTRIES,
  flags: 0,
  key: NAT6_KEY,
  value: NAT6_VALUE,
  decode: (k, v) => {
    const key = decodeNat6Key(k)
    const e = decodeNat6Entry(v[0])
    return {key: {...key}, value: {...e, lastSeenNs: e.lastSeenNs.toString(), ...stateOf(key, e)}}
  },
}

const NONMASQ_KEY = {name: 'nonmasq_key', size: 24, fields: {prefixlen: f(0, 4), family: f(4, 1), pad: f(5, 3), addr: f(8, 16)}}
const NONMASQ_VALUE = {name: 'nonmasq_info', size: 4, fields: {flags: f(0, 4)}}

/** LPM key: prefixlen counts the 32 bits of family+pad before the address. */
export function encodeNonMasqKey(prefix: string): Buffer {
  const [ip, len] = prefix.split('/')
  const {family, bytes} = ipBytes(ip)
  const bits = len === undefined ? bytes.length * 8 : Number(len)
  const buf = Buffer.alloc(NONMASQ_KEY.size)
  writeU32(buf, 32 + bits, NONMASQ_KEY.fields.prefixlen.offset)
  buf[NONMASQ_KEY.fields.family.offset] = familyCode(family)
  put(buf, NONMASQ_KEY, 'addr', bytes)
  return buf
}

export function decodeNonMasqKey(buf: Buffer): {prefix: string} {
  const family = familyOf(buf[NONMASQ_KEY.fields.family.offset])
  const ip = ipFromBytes(slice(buf, NONMASQ_KEY, 'addr').subarray(0, family === 4 ? 4 : 16), family)
  return {prefix: `${ip}/${readU32(buf, NONMASQ_KEY.fields.prefixlen.offset) - 32}`}
}

/** pn_nonmasq entry owners (nonmasq_info.flags): 0 is the node's configuration (`pn node init`). */
export const NONMASQ_F_NODE = 1
export const NONMASQ_F_PEER = 2

export function encodeNonMasqInfo(flags = 0): Buffer {
  const buf = Buffer.alloc(NONMASQ_VALUE.size)
  writeU32(buf, flags, NONMASQ_VALUE.fields.flags.offset)
  return buf
}

/** A node IP as its pn_nonmasq prefix: /32 or /128. */
export function nodeIpPrefix(ip: string): string {
  return `${ip}/${ip.includes(':') ? 128 : 32}`
}

export const nonMasqMap: MapDef = {
  name: 'pn_nonmasq',
  header: 'nat.h',
  type: 'lpm_trie',
  maxEntries: NONMASQ_MAX_ENTRIES,
  flags: BPF_F_NO_PREALLOC,
  key: NONMASQ_KEY,
  value: NONMASQ_VALUE,
  decode: (k, v) => ({key: decodeNonMasqKey(k), value: {flags: readU32(v[0], 0)}}),
}
