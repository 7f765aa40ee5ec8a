/**
 * pn's one address module, IPv4 and IPv6: parsing, validation, formatting, containment,
 * overlap and subnetting. Pure functions; errors are PnErrors with PN_INVALID_IP/PN_INVALID_CIDR.
 *
 * Hand-written BigInt code, checked against ip-cidr in the unit tests (test/unit/cidr.test.ts,
 * and test/unit/cidr-property.test.ts over thousands of random inputs):
 *  - the address grammar: ip-cidr accepts zone ids (`fe80::1%eth0/64`), `/08`, nine groups when
 *    the last is IPv4 (`1:2:3:4:5:6:7:1.2.3.4`) and rejects embedded IPv4 in a prefix
 *    (`::ffff:1.2.3.4/120`); pn's grammar is strict (no zone, no whitespace, no octal-looking
 *    octet, IPv4 only as the last 32 bits), and it is the per-record hot path of
 *    IPAM (a half-full /16 parses 32k addresses per call), where a regex-free parse matters;
 *  - range math (network, size, last address): three shifts (rangeOf), where ip-cidr cost every
 *    standalone pn-cni call ≈ 10 ms of module loading;
 *  - RFC 5952 text from a BigInt (ip-address formats from its own objects only);
 *  - subnetting (k8s cidrset's block index ↔ prefix) and bitmap offsets in a /64, which
 *    ip-cidr has no operation for.
 */
import {PnError} from '../errors.js'

export type Family = 4 | 6

/** A normalised prefix: `network` has no host bits set. */
export interface Cidr {
  family: Family
  network: bigint
  prefix: number
}

export interface ParsedIp {
  family: Family
  value: bigint
}

export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128
}

const V4_OCTET = /^(0|[1-9][0-9]{0,2})$/
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/

function parseV4(text: string): bigint | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let value = 0n
  for (const p of parts) {
    if (!V4_OCTET.test(p)) return undefined
    const n = Number(p)
    if (n > 255) return undefined
    value = (value << 8n) | BigInt(n)
  }
  return value
}

/** Colon-separated groups; `lastMayBeV4` when these are the address's last 32 bits or more. */
function parseV6Groups(text: string, lastMayBeV4: boolean): number[] | undefined {
  if (text === '') return []
  const groups: number[] = []
  const parts = text.split(':')
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]
    if (lastMayBeV4 && i === parts.length - 1 && p.includes('.')) {
      // Embedded IPv4 (::ffff:10.0.0.1) occupies the last two groups, and only those
      // (`1.2.3.4::1` puts it before the `::`).
      const v4 = parseV4(p)
      if (v4 === undefined) return undefined
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn))
      continue
    }
    if (!V6_GROUP.test(p)) return undefined
    groups.push(parseInt(p, 16))
  }
  return groups
}

function parseV6(text: string): bigint | undefined {
  if (text.includes('%')) return undefined // zone ids name an interface, not an address in a range
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  let groups: number[]
  if (halves.length === 2) {
    const head = parseV6Groups(halves[0], false)
    const tail = parseV6Groups(halves[1], true)
    if (!head || !tail || head.length + tail.length > 7) return undefined
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
  } else {
    const all = parseV6Groups(text, true)
    if (!all || all.length !== 8) return undefined
    groups = all
  }
  let value = 0n
  for (const g of groups) value = (value << 16n) | BigInt(g)
  return value
}

/** Parse an IPv4 or IPv6 address; undefined when it is not one (surrounding whitespace included). */
export function tryParseIp(s: string): ParsedIp | undefined {
  if (s.includes(':')) {
    const v = parseV6(s)
    return v === undefined ? undefined : {family: 6, value: v}
  }
  const v = parseV4(s)
  return v === undefined ? undefined : {family: 4, value: v}
}

/** Parse an address or throw PN_INVALID_IP. */
export function parseIp(text: string): ParsedIp {
  const ip = tryParseIp(String(text))
  if (!ip) {
    throw new PnError('PN_INVALID_IP', `parse ip ${JSON.stringify(text)}: not an IPv4 or IPv6 address`, {
      hint: 'write an address like 10.0.1.5 or fd00::5',
    })
  }
  return ip
}

/** Format an address: dotted quad, or RFC 5952 (lowercase, longest zero run compressed). */
export function formatIp(value: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.')
  }
  const groups: number[] = []
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn))
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestLen < 2) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}

/** Canonical text of an address (`fd00:0::01` → `fd00::1`). */
export function canonicalIp(text: string): string {
  const ip = parseIp(text)
  return formatIp(ip.value, ip.family)
}

/**
 * First and last address of a prefix and its size: the network is the address with its host bits
 * cleared. Plain BigInt arithmetic rather than ip-cidr's objects: pn-cni parses a few prefixes per
 * call, and ip-cidr with ip-address, jsbn and sprintf-js was a quarter of its bundle (≈ 10 ms of
 * each standalone call to load). test/unit/cidr.test.ts checks these against ip-cidr.
 */
export function rangeOf(family: Family, address: bigint, prefix: number): {start: bigint; end: bigint; size: bigint} {
  const host = BigInt(familyBits(family) - prefix)
  const size = 1n << host
  const start = (address >> host) << host
  return {start, end: start + size - 1n, size}
}

export interface ParsedCidr {
  cidr: Cidr
  /** The input had host bits set (`10.20.30.40/24`); `cidr` is its network. */
  hostBitsSet: boolean
}

const PREFIX = /^(0|[1-9][0-9]{0,2})$/

/** Parse `ADDRESS/PREFIX` strictly; the result is normalised to its network. */
export function parseCidr(text: string): ParsedCidr {
  const s = String(text)
  const invalid = (cause: string) =>
    new PnError('PN_INVALID_CIDR', `parse cidr ${JSON.stringify(text)}: ${cause}`, {
      hint: 'write a prefix like 10.20.0.0/16 or fd00:10::/64',
    })
  const slash = s.indexOf('/')
  if (slash < 0) throw invalid('missing /PREFIX')
  const ip = tryParseIp(s.slice(0, slash))
  if (!ip) throw invalid('not an IPv4 or IPv6 address before the /')
  const p = s.slice(slash + 1)
  const bits = familyBits(ip.family)
  if (!PREFIX.test(p) || Number(p) > bits) throw invalid(`prefix length must be 0..${bits}`)
  const prefix = Number(p)
  const network = rangeOf(ip.family, ip.value, prefix).start
  return {cidr: {family: ip.family, network, prefix}, hostBitsSet: network !== ip.value}
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.network, c.family)}/${c.prefix}`
}

/** Parse and normalise; `warning` says so when host bits were dropped. */
export function normalizeCidr(text: string, what = 'cidr'): {cidr: Cidr; text: string; warning?: string} {
  const {cidr, hostBitsSet} = parseCidr(text)
  const out = formatCidr(cidr)
  return {
    cidr,
    text: out,
    ...(hostBitsSet ? {warning: `${what} ${text} has host bits set; using its network ${out}`} : {}),
  }
}

/** Number of addresses in the prefix. */
export function cidrSize(c: Cidr): bigint {
  return rangeOf(c.family, c.network, c.prefix).size
}

/** Last address of the prefix (the IPv4 broadcast address). */
export function lastAddress(c: Cidr): bigint {
  return rangeOf(c.family, c.network, c.prefix).end
}

export function containsIp(c: Cidr, ip: ParsedIp): boolean {
  return ip.family === c.family && ip.value >= c.network && ip.value <= lastAddress(c)
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.network <= lastAddress(b) && b.network <= lastAddress(a)
}

/** The `index`-th /newPrefix block inside `c` (k8s cidrset's indexToCIDRBlock). */
export function subnetAt(c: Cidr, newPrefix: number, index: number | bigint): Cidr {
  const bits = familyBits(c.family)
  if (newPrefix < c.prefix || newPrefix > bits) throw new RangeError(`prefix /${newPrefix} does not fit in /${c.prefix}`)
  const i = BigInt(index)
  if (i < 0n || i >= 1n << BigInt(newPrefix - c.prefix)) throw new RangeError(`block ${index} outside ${formatCidr(c)}`)
  return {family: c.family, network: c.network | (i << BigInt(bits - newPrefix)), prefix: newPrefix}
}

/** Index of block `sub` (a /newPrefix) inside `c`, or -1 when it is not one of its blocks. */
export function subnetIndex(c: Cidr, sub: Cidr, newPrefix: number): number {
  if (sub.family !== c.family || sub.prefix !== newPrefix || sub.network < c.network || sub.network > lastAddress(c)) {
    return -1
  }
  return Number((sub.network - c.network) >> BigInt(familyBits(c.family) - newPrefix))
}

// ---- address helpers for the node and veth code (plain strings in, plain strings out) -------

/** Family of a plain address, or PN_INVALID_IP. */
export function ipFamily(ip: string): Family {
  return parseIp(ip).family
}

/** Host prefix length of an address: 32 or 128. */
export function hostPrefix(ip: string): number {
  return familyBits(ipFamily(ip))
}

/** Family of a CIDR text, or PN_INVALID_CIDR. */
export function cidrFamily(cidr: string): Family {
  return parseCidr(cidr).cidr.family
}

/** The first usable address (network + 1): the router IP Cilium's IPAM hands out first. */
export function firstUsable(cidr: string): string {
  const c = parseCidr(cidr).cidr
  if (c.prefix >= familyBits(c.family) - 1) return formatIp(c.network, c.family)
  return formatIp(c.network + 1n, c.family)
}

/** True when the plain address lies inside the CIDR (false across families). */
export function cidrContains(cidr: string, ip: string): boolean {
  return containsIp(parseCidr(cidr).cidr, parseIp(ip))
}
