/**
 * pn_lb4_services (bpf/include/lb.h): a service frontend {VIP, port, proto} and its slots.
 * Slot 0 holds the backend count, the service's rev-NAT index, the bank in use and backend 1's
 * id; slot `bank + i` holds the id of backend i ≥ 2 (banks: 0 and LB_SLOT_BANK, so an update
 * writes the new set beside the old one and switches slot 0 in one map update). A service with
 * one backend is one entry.
 */
import {IPPROTO, f, ip4Bytes, ip4FromBytes, protoName, put, readU16, readU32, slice, writeU16, writeU32, BPF_F_NO_PREALLOC, type L4Proto, type MapDef, type StructLayout} from './layout.js'

/** Bank size: bank b holds slots b*LB_SLOT_BANK + 1 … + count (lb.h). */
export const LB_SLOT_BANK = 32768
/** Backends one service can have: a bank's slots (lb.h LB_MAX_BACKENDS). */
export const LB_MAX_BACKENDS = 32767
export const LB4_SERVICES_MAX_ENTRIES = 524288

const KEY = {name: 'lb4_key', size: 12, fields: {address: f(0, 4), dport: f(4, 2), slot: f(6, 2), proto: f(8, 1), pad: f(9, 3)}}
const VALUE = {name: 'lb4_service', size: 12, fields: {backend_id: f(0, 4), rev_nat_index: f(4, 4), count: f(8, 2), slot_base: f(10, 2)}}

export type Lb4Key = {
  vip: string
  port: number
  proto: L4Proto
  slot: number
}

export type Lb4Service = {
  backendId: number
  revNatIndex: number
  count: number
  slotBase: number
}

export function encodeLb4Key(k: Lb4Key): Buffer {
  const buf = Buffer.alloc(KEY.size)
  put(buf, KEY, 'address', ip4Bytes(k.vip))
  buf.writeUInt16BE(k.port, KEY.fields.dport.offset)
  writeU16(buf, k.slot, KEY.fields.slot.offset)
  buf[KEY.fields.proto.offset] = IPPROTO[k.proto]
  return buf
}

export function decodeLb4Key(buf: Buffer): Lb4Key {
  return {
    vip: ip4FromBytes(slice(buf, KEY, 'address')),
    port: buf.readUInt16BE(KEY.fields.dport.offset),
    proto: protoName(buf[KEY.fields.proto.offset]) as L4Proto,
    slot: readU16(buf, KEY.fields.slot.offset),
  }
}

export function encodeLb4Service(v: Lb4Service): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU32(buf, v.backendId, VALUE.fields.backend_id.offset)
  writeU32(buf, v.revNatIndex, VALUE.fields.rev_nat_index.offset)
  writeU16(buf, v.count, VALUE.fields.count.offset)
  writeU16(buf, v.slotBase, VALUE.fields.slot_base.offset)
  return buf
}

export function decodeLb4Service(buf: Buffer): Lb4Service {
  return {
    backendId: readU32(buf, VALUE.fields.backend_id.offset),
    revNatIndex: readU32(buf, VALUE.fields.rev_nat_index.offset),
    count: readU16(buf, VALUE.fields.count.offset),
    slotBase: readU16(buf, VALUE.fields.slot_base.offset),
  }
}

export const lb4ServicesMap: MapDef = {
  name: 'pn_lb4_services',
  header: 'lb.h',
  type: 'hash',
  maxEntries: LB4_SERVICES_MAX_ENTRIES,
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => {
    const key = decodeLb4Key(k)
    const value = decodeLb4Service(v[0])
    // Slot 0 is the service (and backend 1); other slots only carry a backend id.
    return key.slot === 0 ? {key, value} : {key, value: {backendId: value.backendId}}
  },
}

const U32: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}

/**
 * pn_lb4_gate (lb.h): slot 0 is 1 once a service has been written into this node's maps; while
 * it is 0 the datapath skips its service lookups. The service writer sets it (never clears it).
 */
export const lb4GateMap: MapDef = {
  name: 'pn_lb4_gate',
  header: 'lb.h',
  type: 'array',
  maxEntries: 1,
  flags: 0,
  key: U32,
  value: U32,
  decode: (k, v) => ({key: {index: readU32(k, 0)}, value: {enabled: readU32(v[0], 0) !== 0}}),
}
