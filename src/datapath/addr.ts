/**
 * The little address arithmetic the node and veth code need (family, normalised CIDR, first
 * usable address). Kept local so this module does not depend on the IPAM engineer's cidr lib.
 */
import {isIPv4, isIPv6} from 'node:net'
import {PnError} from '../errors.js'

export type Family = 4 | 6

export function ipFamily(ip: string): Family {
  if (isIPv4(ip)) return 4
  if (isIPv6(ip)) return 6
  throw new PnError('PN_INVALID_IP', `parse address ${JSON.stringify(ip)}: not an IPv4 or IPv6 address`, {
    hint: 'pass a plain address such as 10.0.1.5 or fd00::5 (no prefix length)',
  })
}

function toBig(ip: string, family: Family): bigint {
  if (family === 4) return ip.split('.').reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n)
  let [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined]
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const expand = (s: string | undefined) => {
    if (!s) return [] as string[]
    const parts = s.split(':')
    const last = parts[parts.length - 1]
    if (last.includes('.')) {
      const v = toBig(last, 4)
      parts.splice(parts.length - 1, 1, (v >> 16n).toString(16), (v & 0xffffn).toString(16))
    }
    return parts
  }
  const h = expand(head)
  const t = expand(tail)
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n)
}

function fromBig(v: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.')
  const groups = Array.from({length: 8}, (_, i) => ((v >> BigInt((7 - i) * 16)) & 0xffffn).toString(16))
  // RFC 5952: compress the longest run (≥ 2) of zero groups.
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  if (best < 0) return groups.join(':')
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`
}

export interface ParsedCidr {
  family: Family
  /** Normalised `network/prefix`. */
  cidr: string
  network: string
  prefix: number
}

export function parseCidr(cidr: string): ParsedCidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr.trim())
  const family = m ? (isIPv4(m[1]) ? 4 : isIPv6(m[1]) ? 6 : undefined) : undefined
  const prefix = m ? Number(m[2]) : NaN
  if (!m || !family || prefix > (family === 4 ? 32 : 128)) {
    throw new PnError('PN_INVALID_CIDR', `parse cidr ${JSON.stringify(cidr)}: not a valid CIDR`, {
      hint: 'pass a CIDR such as 10.0.1.0/24 or fd00:1::/64',
    })
  }
  const bits = family === 4 ? 32n : 128n
  const mask = ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n)
  const network = fromBig(toBig(m[1], family) & mask, family)
  return {family, cidr: `${network}/${prefix}`, network, prefix}
}

/** The first usable address of a CIDR (network + 1), the router IP Cilium's IPAM hands out first. */
export function firstUsable(cidr: string): string {
  const p = parseCidr(cidr)
  const bits = p.family === 4 ? 32 : 128
  if (p.prefix >= bits - 1) return p.network
  return fromBig(toBig(p.network, p.family) + 1n, p.family)
}

export function cidrContains(cidr: string, ip: string): boolean {
  const p = parseCidr(cidr)
  if (ipFamily(ip) !== p.family) return false
  return parseCidr(`${ip}/${p.prefix}`).network === p.network
}

/** Canonical text of an address (so comparisons with `ip -j` output hold). */
export function normalizeIp(ip: string): string {
  const family = ipFamily(ip)
  return fromBig(toBig(ip, family), family)
}

/** Host prefix of an address: /32 or /128. */
export function hostPrefix(ip: string): number {
  return ipFamily(ip) === 4 ? 32 : 128
}
