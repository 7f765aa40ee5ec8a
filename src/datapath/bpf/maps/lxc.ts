/** pn_lxc (bpf/include/lxc.h): the pod behind a host-side lxc ifindex, for from-container. */
import {f, ipBytes, ipFromBytes, macBytes, macFromBytes, put, readU32, slice, writeU32, BPF_F_NO_PREALLOC, type MapDef} from './layout.js'

const KEY = {name: 'lxc_key', size: 4, fields: {ifindex: f(0, 4)}}
const VALUE = {
  name: 'lxc_info',
  size: 40,
  fields: {ip4: f(0, 4), endpoint_id: f(4, 4), ip6: f(8, 16), mac: f(24, 6), pod_mac: f(30, 6), flags: f(36, 4)},
}

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
  const buf = Buffer.alloc(KEY.size)
  writeU32(buf, ifindex, KEY.fields.ifindex.offset)
  return buf
}

export function decodeLxcKey(buf: Buffer): {ifindex: number} {
  return {ifindex: readU32(buf, KEY.fields.ifindex.offset)}
}

export function encodeLxcInfo(e: Omit<LxcEntry, 'ifindex'>): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  if (e.ip4) put(buf, VALUE, 'ip4', ipBytes(e.ip4).bytes)
  writeU32(buf, e.endpointId, VALUE.fields.endpoint_id.offset)
  if (e.ip6) put(buf, VALUE, 'ip6', ipBytes(e.ip6).bytes)
  put(buf, VALUE, 'mac', macBytes(e.lxcMac))
  put(buf, VALUE, 'pod_mac', macBytes(e.podMac))
  writeU32(buf, e.flags, VALUE.fields.flags.offset)
  return buf
}

export function decodeLxcInfo(buf: Buffer): Omit<LxcEntry, 'ifindex'> {
  const ip4 = slice(buf, VALUE, 'ip4')
  const ip6 = slice(buf, VALUE, 'ip6')
  return {
    ...(ip4.some((b) => b !== 0) ? {ip4: ipFromBytes(ip4, 4)} : {}),
    ...(ip6.some((b) => b !== 0) ? {ip6: ipFromBytes(ip6, 6)} : {}),
    endpointId: readU32(buf, VALUE.fields.endpoint_id.offset),
    lxcMac: macFromBytes(slice(buf, VALUE, 'mac')),
    podMac: macFromBytes(slice(buf, VALUE, 'pod_mac')),
    flags: readU32(buf, VALUE.fields.flags.offset),
  }
}

export const lxcMap: MapDef = {
  name: 'pn_lxc',
  header: 'lxc.h',
  type: 'hash',
  maxEntries: 65536,
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeLxcKey(k), value: decodeLxcInfo(v[0])}),
}
