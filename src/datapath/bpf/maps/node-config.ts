/**
 * pn_node_config (bpf/include/node_config.h): node-wide settings the programs read at run time,
 * one slot. `pn bpf load --host` writes the uplink's ifindex and MTU, which BPF host routing
 * (bpf/include/fib.h) redirects to; an all-zero slot turns host routing off.
 */
import {f, readU32, writeU32, type MapDef, type StructLayout} from './layout.js'

const KEY: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}
const VALUE: StructLayout = {
  name: 'node_config',
  size: 16,
  fields: {uplink_ifindex: f(0, 4), uplink_mtu: f(4, 4), flags: f(8, 4), pad: f(12, 4)},
}

export interface NodeConfigEntry {
  uplinkIfindex: number
  uplinkMtu: number
  flags: number
}

export function encodeNodeConfigKey(): Buffer {
  return Buffer.alloc(KEY.size)
}

export function encodeNodeConfig(c: NodeConfigEntry): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU32(buf, c.uplinkIfindex, VALUE.fields.uplink_ifindex.offset)
  writeU32(buf, c.uplinkMtu, VALUE.fields.uplink_mtu.offset)
  writeU32(buf, c.flags, VALUE.fields.flags.offset)
  return buf
}

export function decodeNodeConfig(buf: Buffer): NodeConfigEntry {
  return {
    uplinkIfindex: readU32(buf, VALUE.fields.uplink_ifindex.offset),
    uplinkMtu: readU32(buf, VALUE.fields.uplink_mtu.offset),
    flags: readU32(buf, VALUE.fields.flags.offset),
  }
}

export const nodeConfigMap: MapDef = {
  name: 'pn_node_config',
  header: 'node_config.h',
  type: 'array',
  maxEntries: 1,
  flags: 0,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: {index: readU32(k, 0)}, value: {...decodeNodeConfig(v[0])}}),
}
