/** pn_lb4_backends (bpf/include/lb.h): backend id → {address, port, proto}, shared by services. */
import {IPPROTO, f, ip4Bytes, ip4FromBytes, protoName, put, readU32, slice, writeU32, BPF_F_NO_PREALLOC, type L4Proto, type MapDef} from './layout.js'

export const LB4_BACKENDS_MAX_ENTRIES = 524288

const KEY = {name: 'lb4_backend_key', size: 4, fields: {backend_id: f(0, 4)}}
const VALUE = {name: 'lb4_backend', size: 8, fields: {address: f(0, 4), port: f(4, 2), proto: f(6, 1), flags: f(7, 1)}}

export type Lb4Backend = {
  ip: string
  port: number
  proto: L4Proto
}

export function encodeLb4BackendKey(id: number): Buffer {
  const buf = Buffer.alloc(KEY.size)
  writeU32(buf, id, KEY.fields.backend_id.offset)
  return buf
}

export function decodeLb4BackendKey(buf: Buffer): {backendId: number} {
  return {backendId: readU32(buf, KEY.fields.backend_id.offset)}
}

export function encodeLb4Backend(b: Lb4Backend): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  put(buf, VALUE, 'address', ip4Bytes(b.ip))
  buf.writeUInt16BE(b.port, VALUE.fields.port.offset)
  buf[VALUE.fields.proto.offset] = IPPROTO[b.proto]
  return buf
}

export function decodeLb4Backend(buf: Buffer): Lb4Backend {
  return {
    ip: ip4FromBytes(slice(buf, VALUE, 'address')),
    port: buf.readUInt16BE(VALUE.fields.port.offset),
    proto: protoName(buf[VALUE.fields.proto.offset]) as L4Proto,
  }
}

export const lb4BackendsMap: MapDef = {
  name: 'pn_lb4_backends',
  header: 'lb.h',
  type: 'hash',
  maxEntries: LB4_BACKENDS_MAX_ENTRIES,
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeLb4BackendKey(k), value: decodeLb4Backend(v[0])}),
}
