/** pn_endpoints (bpf/include/endpoints.h): every local address the datapath can deliver to, by IP. */
import {f, familyCode, familyOf, ipBytes, ipFromBytes, macBytes, macFromBytes, put, readU32, slice, writeU32, BPF_F_NO_PREALLOC, type MapDef} from './layout.js'

export const ENDPOINT_KEY_IPV4 = 1
export const ENDPOINT_KEY_IPV6 = 2
/** The address is the node itself (router IP): hand it to the stack. */
export const ENDPOINT_F_HOST = 1

const KEY = {name: 'endpoint_key', size: 20, fields: {addr: f(0, 16), family: f(16, 1), pad: f(17, 3)}}
const VALUE = {
  name: 'endpoint_info',
  size: 24,
  fields: {ifindex: f(0, 4), endpoint_id: f(4, 4), flags: f(8, 4), mac: f(12, 6), node_mac: f(18, 6)},
}

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
  const buf = Buffer.alloc(KEY.size)
  const {family, bytes} = ipBytes(ip)
  put(buf, KEY, 'addr', bytes)
  buf[KEY.fields.family.offset] = familyCode(family)
  return buf
}

export function decodeEndpointKey(buf: Buffer): {ip: string} {
  const family = familyOf(buf[KEY.fields.family.offset])
  return {ip: ipFromBytes(slice(buf, KEY, 'addr').subarray(0, family === 4 ? 4 : 16), family)}
}

export function encodeEndpointInfo(e: Omit<EndpointEntry, 'ip'>): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU32(buf, e.ifindex, VALUE.fields.ifindex.offset)
  writeU32(buf, e.endpointId, VALUE.fields.endpoint_id.offset)
  writeU32(buf, e.flags, VALUE.fields.flags.offset)
  put(buf, VALUE, 'mac', macBytes(e.podMac))
  put(buf, VALUE, 'node_mac', macBytes(e.lxcMac))
  return buf
}

export function decodeEndpointInfo(buf: Buffer): Omit<EndpointEntry, 'ip'> {
  return {
    ifindex: readU32(buf, VALUE.fields.ifindex.offset),
    endpointId: readU32(buf, VALUE.fields.endpoint_id.offset),
    flags: readU32(buf, VALUE.fields.flags.offset),
    podMac: macFromBytes(slice(buf, VALUE, 'mac')),
    lxcMac: macFromBytes(slice(buf, VALUE, 'node_mac')),
  }
}

export const endpointsMap: MapDef = {
  name: 'pn_endpoints',
  header: 'endpoints.h',
  type: 'hash',
  maxEntries: 65536,
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeEndpointKey(k), value: decodeEndpointInfo(v[0])}),
}
