/** pn_ct4 (bpf/include/conntrack.h): LRU conntrack of service flows (forward and reply entries). */
import {f, ip4Bytes, ip4FromBytes, protoName, put, readU16, readU32, readU64, slice, writeU16, writeU32, writeU64, IPPROTO, type L4Proto, type MapDef} from './layout.js'

export const CT_SERVICE = 1
export const CT_REPLY = 2
export const CT_F_LOOPBACK = 1

const KEY = {
  name: 'ct4_key',
  size: 16,
  fields: {saddr: f(0, 4), daddr: f(4, 4), sport: f(8, 2), dport: f(10, 2), proto: f(12, 1), dir: f(13, 1), pad: f(14, 2)},
}
const VALUE = {
  name: 'ct4_entry',
  size: 40,
  fields: {
    packets: f(0, 8), bytes: f(8, 8), backend_id: f(16, 4), rev_nat_index: f(20, 4),
    client_addr: f(24, 4), vip: f(28, 4), vport: f(32, 2), flags: f(34, 2), pad: f(36, 4),
  },
}

export type Ct4Key = {
  saddr: string
  daddr: string
  sport: number
  dport: number
  proto: L4Proto
  dir: 'service' | 'reply'
}

export type Ct4Entry = {
  packets: number
  bytes: number
  backendId: number
  revNatIndex: number
  clientAddr: string
  vip: string
  vport: number
  flags: number
}

export function encodeCt4Key(k: Ct4Key): Buffer {
  const buf = Buffer.alloc(KEY.size)
  put(buf, KEY, 'saddr', ip4Bytes(k.saddr))
  put(buf, KEY, 'daddr', ip4Bytes(k.daddr))
  buf.writeUInt16BE(k.sport, KEY.fields.sport.offset)
  buf.writeUInt16BE(k.dport, KEY.fields.dport.offset)
  buf[KEY.fields.proto.offset] = IPPROTO[k.proto]
  buf[KEY.fields.dir.offset] = k.dir === 'service' ? CT_SERVICE : CT_REPLY
  return buf
}

export function decodeCt4Key(buf: Buffer): Ct4Key {
  return {
    saddr: ip4FromBytes(slice(buf, KEY, 'saddr')),
    daddr: ip4FromBytes(slice(buf, KEY, 'daddr')),
    sport: buf.readUInt16BE(KEY.fields.sport.offset),
    dport: buf.readUInt16BE(KEY.fields.dport.offset),
    proto: protoName(buf[KEY.fields.proto.offset]) as L4Proto,
    dir: buf[KEY.fields.dir.offset] === CT_SERVICE ? 'service' : 'reply',
  }
}

export function encodeCt4Entry(e: Ct4Entry): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU64(buf, BigInt(e.packets), VALUE.fields.packets.offset)
  writeU64(buf, BigInt(e.bytes), VALUE.fields.bytes.offset)
  writeU32(buf, e.backendId, VALUE.fields.backend_id.offset)
  writeU32(buf, e.revNatIndex, VALUE.fields.rev_nat_index.offset)
  put(buf, VALUE, 'client_addr', ip4Bytes(e.clientAddr))
  put(buf, VALUE, 'vip', ip4Bytes(e.vip))
  buf.writeUInt16BE(e.vport, VALUE.fields.vport.offset)
  writeU16(buf, e.flags, VALUE.fields.flags.offset)
  return buf
}

export function decodeCt4Entry(buf: Buffer): Ct4Entry {
  return {
    packets: Number(readU64(buf, VALUE.fields.packets.offset)),
    bytes: Number(readU64(buf, VALUE.fields.bytes.offset)),
    backendId: readU32(buf, VALUE.fields.backend_id.offset),
    revNatIndex: readU32(buf, VALUE.fields.rev_nat_index.offset),
    clientAddr: ip4FromBytes(slice(buf, VALUE, 'client_addr')),
    vip: ip4FromBytes(slice(buf, VALUE, 'vip')),
    vport: buf.readUInt16BE(VALUE.fields.vport.offset),
    flags: readU16(buf, VALUE.fields.flags.offset),
  }
}

export const ct4Map: MapDef = {
  name: 'pn_ct4',
  header: 'conntrack.h',
  type: 'lru_hash',
  maxEntries: 262144,
  flags: 0,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeCt4Key(k), value: decodeCt4Entry(v[0])}),
}
