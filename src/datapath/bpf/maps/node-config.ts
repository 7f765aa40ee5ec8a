/**
 * pn_node_config (bpf/include/node_config.h): node-wide settings the programs read at run time,
 * one slot. `pn bpf load --host` writes the uplink's ifindex and MTU, which BPF host routing
 * (bpf/include/fib.h) redirects to; an all-zero slot turns host routing off. In tunnel mode
 * flags has NODE_F_TUNNEL and tunnel_ifindex names pn_vxlan (bpf/include/tunnel.h).
 */
import {f, readU32, writeU32, type MapDef, type StructLayout} from './layout.js'

const KEY: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}
const VALUE: StructLayout = {
  name: 'node_config',
  size: 20,
  fields: {uplink_ifindex: f(0, 4), uplink_mtu: f(4, 4), flags: f(8, 4), pad: f(12, 4), tunnel_ifindex: f(16, 4)},
}

/** flags: the node runs in tunnel mode (NODE_F_TUNNEL in bpf/include/tunnel.h); tunnelIfindex is pn_vxlan. */
export const NODE_F_TUNNEL = 0x2

export interface NodeConfigEntry {
  uplinkIfindex: number
  uplinkMtu: number
  flags: number
  /** pn_vxlan's ifindex in tunnel mode, else 0. */
  tunnelIfindex?: number
}

export function encodeNodeConfigKey(): Buffer {
  return Buffer.alloc(KEY.size)
}

export function encodeNodeConfig(c: NodeConfigEntry): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU32(buf, c.uplinkIfindex, VALUE.fields.uplink_ifindex.offset)
  writeU32(buf, c.uplinkMtu, VALUE.fields.uplink_mtu.offset)
  writeU32(buf, c.flags, VALUE.fields.flags.offset)
  writeU32(buf, c.tunnelIfindex ?? 0, VALUE.fields.tunnel_ifindex.offset)
  return buf
}

export function decodeNodeConfig(buf: Buffer): NodeConfigEntry {
  const tunnelIfindex = readU32(buf, VALUE.fields.tunnel_ifindex.offset)
  return {
    uplinkIfindex: readU32(buf, VALUE.fields.uplink_ifindex.offset),
    uplinkMtu: readU32(buf, VALUE.fields.uplink_mtu.offset),
    flags: readU32(buf, VALUE.fields.flags.offset),
    ...(tunnelIfindex ? {tunnelIfindex} : {}),
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
