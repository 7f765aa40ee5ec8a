/** pn_ipcache (bpf/include/ipcache.h): longest-prefix map from a prefix to its identity and node. */
import {f, familyCode, familyOf, ipBytes, ipFromBytes, put, readU32, slice, writeU32, BPF_F_NO_PREALLOC, type MapDef} from './layout.js'

export const IPCACHE_F_LOCAL = 1
/** A CIDR a network policy names (ipBlock), written by the policy writer with its CIDR identity. */
export const IPCACHE_F_CIDR = 2
/** A peer's pod CIDR added by hand (`pn node peer add`): the cluster agent leaves it alone. */
export const IPCACHE_F_PEER = 4

const KEY = {name: 'ipcache_key', size: 24, fields: {prefixlen: f(0, 4), family: f(4, 1), pad: f(5, 3), addr: f(8, 16)}}
const VALUE = {
  name: 'ipcache_info',
  size: 28,
  fields: {identity: f(0, 4), flags: f(4, 4), node_ip: f(8, 16), node_family: f(24, 1), pad: f(25, 3)},
}

export interface IpcacheEntry {
  prefix: string
  identity: number
  flags: number
  nodeIp?: string
}

/** LPM key: prefixlen counts the 32 bits of family+pad before the address. */
export function encodeIpcacheKey(prefix: string): Buffer {
  const [ip, len] = prefix.split('/')
  const {family, bytes} = ipBytes(ip)
  const bits = len === undefined ? bytes.length * 8 : Number(len)
  const buf = Buffer.alloc(KEY.size)
  writeU32(buf, 32 + bits, KEY.fields.prefixlen.offset)
  buf[KEY.fields.family.offset] = familyCode(family)
  put(buf, KEY, 'addr', bytes)
  return buf
}

export function decodeIpcacheKey(buf: Buffer): {prefix: string} {
  const family = familyOf(buf[KEY.fields.family.offset])
  const ip = ipFromBytes(slice(buf, KEY, 'addr').subarray(0, family === 4 ? 4 : 16), family)
  return {prefix: `${ip}/${readU32(buf, KEY.fields.prefixlen.offset) - 32}`}
}

export function encodeIpcacheInfo(e: Omit<IpcacheEntry, 'prefix'>): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU32(buf, e.identity, VALUE.fields.identity.offset)
  writeU32(buf, e.flags, VALUE.fields.flags.offset)
  if (e.nodeIp) {
    const {family, bytes} = ipBytes(e.nodeIp)
    put(buf, VALUE, 'node_ip', bytes)
    buf[VALUE.fields.node_family.offset] = familyCode(family)
  }
  return buf
}

export function decodeIpcacheInfo(buf: Buffer): Omit<IpcacheEntry, 'prefix'> {
  const fam = buf[VALUE.fields.node_family.offset]
  const family = familyOf(fam)
  return {
    identity: readU32(buf, VALUE.fields.identity.offset),
    flags: readU32(buf, VALUE.fields.flags.offset),
    ...(fam ? {nodeIp: ipFromBytes(slice(buf, VALUE, 'node_ip').subarray(0, family === 4 ? 4 : 16), family)} : {}),
  }
}

export const ipcacheMap: MapDef = {
  name: 'pn_ipcache',
  header: 'ipcache.h',
  type: 'lpm_trie',
  maxEntries: 65536,
  // LPM tries must not be preallocated (the kernel rejects the map otherwise).
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => ({key: decodeIpcacheKey(k), value: decodeIpcacheInfo(v[0])}),
}
