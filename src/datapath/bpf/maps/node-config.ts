/**
 * pn_node_config (bpf/include/node_config.h): node-wide settings the programs read at run time,
 * one slot. `pn bpf load --host` writes the uplink's ifindex and MTU, which BPF host routing
 * (bpf/include/fib.h) redirects to; an all-zero slot turns host routing off. With NODE_CFG_MASQ
 * in `flags`, the nat_* fields drive BPF masquerade (bpf/include/nat.h); in tunnel mode flags has
 * NODE_F_TUNNEL and tunnel_ifindex names pn_vxlan (bpf/include/tunnel.h).
 */
import {f, ip4Bytes, ip4FromBytes, ipBytes, ipFromBytes, put, readU16, readU32, slice, writeU16, writeU32, type MapDef, type StructLayout} from './layout.js'

/** flags bit: BPF masquerade on. */
export const NODE_CFG_MASQ = 0x1

const KEY: StructLayout = {name: '__u32', size: 4, fields: {}, scalar: true}
const VALUE: StructLayout = {
  name: 'node_config',
  size: 52,
  fields: {
    uplink_ifindex: f(0, 4), uplink_mtu: f(4, 4), flags: f(8, 4), pad: f(12, 4),
    nat_ip4: f(16, 4), nat_port_min: f(20, 2), nat_port_max: f(22, 2), nat_tcp_timeout: f(24, 4), nat_other_timeout: f(28, 4),
    tunnel_ifindex: f(32, 4),
    // Appended (an older 36-byte slot is replaced on load): earlier offsets never move.
    nat_ip6: f(36, 16),
  },
}

/** flags: the node runs in tunnel mode (NODE_F_TUNNEL in bpf/include/tunnel.h); tunnelIfindex is pn_vxlan. */
export const NODE_F_TUNNEL = 0x2

export interface NodeConfigEntry {
  uplinkIfindex: number
  uplinkMtu: number
  flags: number
  /** BPF masquerade: the SNAT source, its port range and idle timeouts (seconds). */
  natIp4?: string
  /** The IPv6 SNAT source on a dual-stack node (its uplink's global IPv6 address); absent: IPv6 is not masqueraded. */
  natIp6?: string
  natPortMin?: number
  natPortMax?: number
  natTcpTimeout?: number
  natOtherTimeout?: number
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
  if (c.natIp4) put(buf, VALUE, 'nat_ip4', ip4Bytes(c.natIp4))
  if (c.natIp6) put(buf, VALUE, 'nat_ip6', ipBytes(c.natIp6).bytes)
  writeU16(buf, c.natPortMin ?? 0, VALUE.fields.nat_port_min.offset)
  writeU16(buf, c.natPortMax ?? 0, VALUE.fields.nat_port_max.offset)
  writeU32(buf, c.natTcpTimeout ?? 0, VALUE.fields.nat_tcp_timeout.offset)
  writeU32(buf, c.natOtherTimeout ?? 0, VALUE.fields.nat_other_timeout.offset)
  writeU32(buf, c.tunnelIfindex ?? 0, VALUE.fields.tunnel_ifindex.offset)
  return buf
}

export function decodeNodeConfig(buf: Buffer): NodeConfigEntry {
  const tunnelIfindex = buf.length >= VALUE.size ? readU32(buf, VALUE.fields.tunnel_ifindex.offset) : 0
  const c: NodeConfigEntry = {
    uplinkIfindex: readU32(buf, VALUE.fields.uplink_ifindex.offset),
    uplinkMtu: readU32(buf, VALUE.fields.uplink_mtu.offset),
    flags: readU32(buf, VALUE.fields.flags.offset),
    ...(tunnelIfindex ? {tunnelIfindex} : {}),
  }
  const ip6 = buf.length >= VALUE.size ? slice(buf, VALUE, 'nat_ip6') : Buffer.alloc(0)
  const hasIp6 = ip6.some((b) => b !== 0)
  if (buf.length < VALUE.size || (readU32(buf, VALUE.fields.nat_ip4.offset) === 0 && !hasIp6)) return c
  const ip = slice(buf, VALUE, 'nat_ip4')
  return {
    ...c,
    ...(ip.some((b) => b !== 0) ? {natIp4: ip4FromBytes(ip)} : {}),
    ...(hasIp6 ? {natIp6: ipFromBytes(ip6, 6)} : {}),
    natPortMin: readU16(buf, VALUE.fields.nat_port_min.offset),
    natPortMax: readU16(buf, VALUE.fields.nat_port_max.offset),
    natTcpTimeout: readU32(buf, VALUE.fields.nat_tcp_timeout.offset),
    natOtherTimeout: readU32(buf, VALUE.fields.nat_other_timeout.offset),
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
  // Every host load rewrites the slot: one pinned with an older (shorter) layout is replaced.
  resettable: true,
  decode: (k, v) => ({key: {index: readU32(k, 0)}, value: {...decodeNodeConfig(v[0])}}),
}
