/**
 * pn_policy, pn_policy_ep and pn_polct4 (bpf/include/policy.h): the allow rules of every local
 * endpoint in one LPM trie, each endpoint's enforcement state, and the policy conntrack. A rule's
 * port range becomes port/mask blocks (`portBlocks`), one trie entry each.
 */
import {PnError} from '../../../errors.js'
import {f, ip4FromBytes, readU16, readU32, slice, writeU16, writeU32, BPF_F_NO_PREALLOC, type MapDef} from './layout.js'

/** Bits after prefixlen always matched: endpoint_id, identity, egress. */
export const POLICY_PREFIX_FIXED = 72
/** … plus protocol and the full port. */
export const POLICY_PREFIX_FULL = 96

export const POLICY_F_INGRESS = 1
export const POLICY_F_EGRESS = 2

const KEY = {
  name: 'policy_key',
  size: 16,
  fields: {prefixlen: f(0, 4), endpoint_id: f(4, 4), identity: f(8, 4), egress: f(12, 1), protocol: f(13, 1), dport: f(14, 2)},
}
const VALUE = {name: 'policy_entry', size: 8, fields: {port: f(0, 2), end_port: f(2, 2), flags: f(4, 4)}}

/**
 * One trie entry. `port`/`prefixBits` is the block the key matches: `prefixBits` of the port
 * count (16 = one port, 0 = every port); `protocol` 0 = any protocol (then every port).
 * `rulePort`/`ruleEndPort` is the (merged) rule range the block came from.
 */
export interface PolicyKey {
  endpointId: number
  identity: number
  direction: 'ingress' | 'egress'
  protocol: number
  port: number
  prefixBits: number
}

export interface PolicyValue {
  rulePort: number
  ruleEndPort: number
}

export function encodePolicyKey(k: PolicyKey): Buffer {
  const buf = Buffer.alloc(KEY.size)
  const prefixlen = k.protocol === 0 ? POLICY_PREFIX_FIXED : POLICY_PREFIX_FIXED + 8 + k.prefixBits
  writeU32(buf, prefixlen, KEY.fields.prefixlen.offset)
  writeU32(buf, k.endpointId, KEY.fields.endpoint_id.offset)
  writeU32(buf, k.identity, KEY.fields.identity.offset)
  buf[KEY.fields.egress.offset] = k.direction === 'egress' ? 1 : 0
  buf[KEY.fields.protocol.offset] = k.protocol
  // Network order: a prefix of the field is a block of ports. Bits past the prefix are zero, as the trie stores them.
  buf.writeUInt16BE(k.protocol === 0 ? 0 : k.port, KEY.fields.dport.offset)
  return buf
}

export function decodePolicyKey(buf: Buffer): PolicyKey {
  const prefixlen = readU32(buf, KEY.fields.prefixlen.offset)
  const protocol = prefixlen <= POLICY_PREFIX_FIXED ? 0 : buf[KEY.fields.protocol.offset]
  return {
    endpointId: readU32(buf, KEY.fields.endpoint_id.offset),
    identity: readU32(buf, KEY.fields.identity.offset),
    direction: buf[KEY.fields.egress.offset] === 1 ? 'egress' : 'ingress',
    protocol,
    port: protocol === 0 ? 0 : buf.readUInt16BE(KEY.fields.dport.offset),
    prefixBits: protocol === 0 ? 0 : Math.max(0, prefixlen - POLICY_PREFIX_FIXED - 8),
  }
}

export function encodePolicyValue(v: PolicyValue): Buffer {
  const buf = Buffer.alloc(VALUE.size)
  writeU16(buf, v.rulePort, VALUE.fields.port.offset)
  writeU16(buf, v.ruleEndPort, VALUE.fields.end_port.offset)
  return buf
}

export function decodePolicyValue(buf: Buffer): PolicyValue {
  return {rulePort: readU16(buf, VALUE.fields.port.offset), ruleEndPort: readU16(buf, VALUE.fields.end_port.offset)}
}

/**
 * The aligned port blocks that cover [lo, hi] exactly (inclusive): each is a port and the number
 * of leading bits that are fixed (16 = the port alone). [0, 65535] is one block of 0 bits.
 * At most 30 blocks for any range (16 for 1–65535).
 */
export function portBlocks(lo: number, hi: number): {port: number; prefixBits: number}[] {
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi > 65535 || lo > hi) {
    throw new PnError('PN_INVALID_ARGUMENT', `encode port range ${lo}-${hi}: not a range of ports 0..65535`, {hint: 'a policy port range needs port ≤ endPort, both in 1..65535'})
  }
  const out: {port: number; prefixBits: number}[] = []
  let p = lo
  while (p <= hi) {
    // The largest block starting at p (aligned to its size) that stays within hi.
    let size = p === 0 ? 65536 : p & -p
    while (p + size - 1 > hi) size >>= 1
    out.push({port: p, prefixBits: 16 - Math.log2(size)})
    p += size
  }
  return out
}

export const policyMap: MapDef = {
  name: 'pn_policy',
  header: 'policy.h',
  type: 'lpm_trie',
  maxEntries: 262144,
  // LPM tries must not be preallocated.
  flags: BPF_F_NO_PREALLOC,
  key: KEY,
  value: VALUE,
  decode: (k, v) => {
    const key = decodePolicyKey(k)
    const value = decodePolicyValue(v[0])
    return {
      key: {...key, ports: key.protocol === 0 || key.prefixBits === 0 ? 'any' : key.prefixBits === 16 ? `${key.port}` : `${key.port}/${key.prefixBits}`},
      value: {...value},
    }
  },
}

const EP_KEY = {name: 'policy_ep_key', size: 4, fields: {endpoint_id: f(0, 4)}}
const EP_VALUE = {name: 'policy_ep_info', size: 8, fields: {flags: f(0, 4), revision: f(4, 4)}}

export interface PolicyEpState {
  ingressEnforced: boolean
  egressEnforced: boolean
  revision: number
}

export function encodePolicyEpKey(endpointId: number): Buffer {
  const buf = Buffer.alloc(EP_KEY.size)
  writeU32(buf, endpointId, EP_KEY.fields.endpoint_id.offset)
  return buf
}

export function decodePolicyEpKey(buf: Buffer): {endpointId: number} {
  return {endpointId: readU32(buf, EP_KEY.fields.endpoint_id.offset)}
}

export function encodePolicyEpInfo(s: PolicyEpState): Buffer {
  const buf = Buffer.alloc(EP_VALUE.size)
  writeU32(buf, (s.ingressEnforced ? POLICY_F_INGRESS : 0) | (s.egressEnforced ? POLICY_F_EGRESS : 0), EP_VALUE.fields.flags.offset)
  writeU32(buf, s.revision, EP_VALUE.fields.revision.offset)
  return buf
}

export function decodePolicyEpInfo(buf: Buffer): PolicyEpState {
  const flags = readU32(buf, EP_VALUE.fields.flags.offset)
  return {ingressEnforced: (flags & POLICY_F_INGRESS) !== 0, egressEnforced: (flags & POLICY_F_EGRESS) !== 0, revision: readU32(buf, EP_VALUE.fields.revision.offset)}
}

export const policyEpMap: MapDef = {
  name: 'pn_policy_ep',
  header: 'policy.h',
  type: 'hash',
  maxEntries: 65536,
  flags: BPF_F_NO_PREALLOC,
  key: EP_KEY,
  value: EP_VALUE,
  decode: (k, v) => ({key: decodePolicyEpKey(k), value: {...decodePolicyEpInfo(v[0])}}),
}

const CT_KEY = {
  name: 'polct4_key',
  size: 16,
  fields: {saddr: f(0, 4), daddr: f(4, 4), sport: f(8, 2), dport: f(10, 2), proto: f(12, 1), egress: f(13, 1), pad: f(14, 2)},
}
const CT_VALUE = {name: 'polct4_entry', size: 16, fields: {endpoint_id: f(0, 4), revision: f(4, 4), peer: f(8, 4), pol_dport: f(12, 2), orig_egress: f(14, 1), pad: f(15, 1)}}

export const polct4Map: MapDef = {
  name: 'pn_polct4',
  header: 'policy.h',
  type: 'lru_hash',
  maxEntries: 65536,
  flags: 0,
  key: CT_KEY,
  value: CT_VALUE,
  decode: (k, v) => ({
    key: {
      saddr: ip4FromBytes(slice(k, CT_KEY, 'saddr')),
      daddr: ip4FromBytes(slice(k, CT_KEY, 'daddr')),
      sport: k.readUInt16BE(CT_KEY.fields.sport.offset),
      dport: k.readUInt16BE(CT_KEY.fields.dport.offset),
      proto: k[CT_KEY.fields.proto.offset],
      direction: k[CT_KEY.fields.egress.offset] === 1 ? 'egress' : 'ingress',
    },
    value: {
      endpointId: readU32(v[0], CT_VALUE.fields.endpoint_id.offset),
      revision: readU32(v[0], CT_VALUE.fields.revision.offset),
      peer: ip4FromBytes(slice(v[0], CT_VALUE, 'peer')),
      policyPort: v[0].readUInt16BE(CT_VALUE.fields.pol_dport.offset),
      checkedIn: v[0][CT_VALUE.fields.orig_egress.offset] === 1 ? 'egress' : 'ingress',
    },
  }),
}
