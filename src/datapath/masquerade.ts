/**
 * Masquerade: pod traffic to destinations outside the cluster leaves with the node's address.
 *   bpf       to-netdev SNATs, from-netdev translates replies back (bpf/include/nat.h, nat6.h
 *             for IPv6 on a dual-stack node): the pinned pn_node_config carries the node's IPv4
 *             and IPv6 addresses, port range and timeouts, pn_nonmasq the destinations of both
 *             families left alone. Ports come from a range outside
 *             net.ipv4.ip_local_port_range, also put in net.ipv4.ip_local_reserved_ports (the
 *             kernel applies both to IPv6 sockets too), so the node's own sockets never bind one
 *             automatically.
 *   iptables  one MASQUERADE rule in chain PN-MASQUERADE of the node's nat table (ptp's
 *             ipMasq), jumped to from POSTROUTING for the pod CIDRs; the non-masquerade CIDRs
 *             RETURN before it. A dual-stack node gets the same chain from ip6tables for its
 *             IPv6 pod CIDR. Like Cilium without BPF masquerade, BPF host routing is off then
 *             (pod traffic must cross the stack's POSTROUTING).
 *   off       pods leave with their own address (the network must route the pod CIDRs back).
 */
import {canonicalIp, cidrFamily, normalizeCidr} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {applyOne} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'
import {mapPath, pathExists} from './bpf/bpffs.js'
import {dumpMapEntries, type MapOp} from './bpf/map-io.js'
import {encodeNonMasqInfo, encodeNonMasqKey, NODE_CFG_MASQ, type NodeConfigEntry} from './bpf/maps/index.js'
import {readSysctls, writeSysctls} from './sysctl.js'

export type MasqueradeMode = 'bpf' | 'iptables' | 'off'
export const MASQUERADE_MODES: readonly MasqueradeMode[] = ['bpf', 'iptables', 'off']

export interface MasqueradeConfig {
  mode: MasqueradeMode
  /** Destinations never masqueraded besides the node's own pod CIDRs: the cluster pool's CIDRs and --non-masquerade-cidr. */
  nonMasqueradeCidrs: string[]
  /** bpf: the SNAT port range, inclusive. */
  portMin: number
  portMax: number
  /** bpf: seconds an unused TCP mapping lives; UDP and ICMP echo ("other"). */
  tcpTimeout: number
  otherTimeout: number
}

/** 61000–65535: above the kernel's default ephemeral range (32768–60999) and the NodePort range. Timeouts: Cilium's CT lifetimes (TCP 6 h, other 60 s). */
export const MASQUERADE_DEFAULTS = {portMin: 61000, portMax: 65535, tcpTimeout: 21600, otherTimeout: 60} as const

export const IPTABLES_CHAIN = 'PN-MASQUERADE'
const PORT_RANGE = 'net.ipv4.ip_local_port_range'
const RESERVED = 'net.ipv4.ip_local_reserved_ports'

/** "A-B" → [A, B], checked. */
export function parsePortRange(text: string, action: string): {portMin: number; portMax: number} {
  const m = /^(\d+)-(\d+)$/.exec(text.trim())
  const min = m ? Number(m[1]) : NaN
  const max = m ? Number(m[2]) : NaN
  if (!m || min < 1024 || max > 65535 || min > max) {
    throw new PnError('PN_INVALID_ARGUMENT', `${action}: port range ${text} is not FIRST-LAST within 1024-65535`, {
      hint: `pass e.g. --masquerade-port-range ${MASQUERADE_DEFAULTS.portMin}-${MASQUERADE_DEFAULTS.portMax}`,
    })
  }
  return {portMin: min, portMax: max}
}

/** The non-masquerade CIDRs (either family) normalised, sorted, deduplicated. */
export function normalizeNonMasq(cidrs: string[]): string[] {
  return [...new Set(cidrs.map((c) => normalizeCidr(c, 'non-masquerade cidr').text))].sort()
}

/** The uplink's first global IPv4 address: the SNAT source. */
export async function uplinkIpv4(runner: Runner, uplink: string): Promise<string | undefined> {
  const {links} = await applyOne(kernelFor(runner), {kind: 'addr.list', dev: uplink}).catch(() => ({links: []}))
  const a = (links[0]?.addr_info ?? []).find((x) => x.local !== undefined && (x.family === 'inet' || (x.family === undefined && !x.local.includes(':'))))
  return a?.local ? canonicalIp(a.local) : undefined
}

/** The uplink's first global IPv6 address: the IPv6 SNAT source (link-local ones are never routed). */
export async function uplinkIpv6(runner: Runner, uplink: string): Promise<string | undefined> {
  const {links} = await applyOne(kernelFor(runner), {kind: 'addr.list', dev: uplink}).catch(() => ({links: []}))
  const a = (links[0]?.addr_info ?? []).find((x) => x.local !== undefined && (x.family === 'inet6' || (x.family === undefined && x.local.includes(':'))) &&
    x.scope !== 'link' && x.scope !== 'host' && !/^fe[89ab]/i.test(x.local))
  return a?.local ? canonicalIp(a.local) : undefined
}

/**
 * The nat_* part of pn_node_config for a node. The SNAT address, range and timeouts are written
 * whenever the uplink has an IPv4 address (NodePort SNATs to remote backends with them); the
 * NODE_CFG_MASQ flag only with BPF masquerade.
 */
export async function natNodeConfig(runner: Runner, uplink: string, m: MasqueradeConfig | undefined): Promise<Pick<NodeConfigEntry, 'flags' | 'natIp4' | 'natIp6' | 'natPortMin' | 'natPortMax' | 'natTcpTimeout' | 'natOtherTimeout'>> {
  const bpf = m?.mode === 'bpf'
  const [ip, ip6] = await Promise.all([uplinkIpv4(runner, uplink), bpf ? uplinkIpv6(runner, uplink) : undefined])
  if (!ip && bpf) {
    throw new PnError('PN_INVALID_ARGUMENT', `configure bpf masquerade: uplink ${uplink} has no IPv4 address to masquerade to`, {
      hint: `add an address to ${uplink}, or run \`pn node init … --masquerade off\``,
    })
  }
  if (!ip) return {flags: 0}
  const c = m ?? MASQUERADE_DEFAULTS
  // IPv6 is masqueraded only in bpf mode (NodePort is IPv4), to the uplink's global IPv6 address.
  return {flags: bpf ? NODE_CFG_MASQ : 0, natIp4: ip, ...(ip6 ? {natIp6: ip6} : {}), natPortMin: c.portMin, natPortMax: c.portMax, natTcpTimeout: c.tcpTimeout, natOtherTimeout: c.otherTimeout}
}

/**
 * Map ops that make pn_nonmasq's configuration entries (flags 0) exactly `prefixes` (both
 * families). Other nodes' IPs (NONMASQ_F_NODE, NONMASQ_F_PEER) belong to their writers and stay;
 * a configured prefix that is also one of them becomes configuration.
 */
export async function nonMasqOps(runner: Runner, root: string, prefixes: string[]): Promise<MapOp[]> {
  if (!(await pathExists(mapPath(root, 'pn_nonmasq')))) return []
  const want = new Set(prefixes.map((p) => normalizeCidr(p).text))
  const have = new Set((await dumpMapEntries(runner, root, 'pn_nonmasq')).filter((e) => Number(e.value.flags) === 0).map((e) => String(e.key.prefix)))
  const ops: MapOp[] = []
  for (const p of have) if (!want.has(p)) ops.push({op: 'delete', map: 'pn_nonmasq', key: encodeNonMasqKey(p)})
  for (const p of want) if (!have.has(p)) ops.push({op: 'update', map: 'pn_nonmasq', key: encodeNonMasqKey(p), value: encodeNonMasqInfo()})
  return ops
}

/** Parse "a-b,c,d-e" (ip_local_reserved_ports) into ranges. */
function parseRanges(text: string): [number, number][] {
  return text.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const [a, b] = s.split('-').map(Number)
    return [a, b ?? a] as [number, number]
  })
}

/**
 * Keep the node's own sockets off the SNAT ports: add the range to ip_local_reserved_ports
 * (autobind and connect() then skip it) and warn when ip_local_port_range overlaps it.
 */
export async function reserveNatPorts(runner: Runner, m: MasqueradeConfig): Promise<{written: string[]; warnings: string[]}> {
  const cur = await readSysctls(runner, [PORT_RANGE, RESERVED])
  const warnings: string[] = []
  const [lo, hi] = (cur[PORT_RANGE] ?? '').split(/\s+/).map(Number)
  if (lo <= m.portMax && hi >= m.portMin) {
    warnings.push(`${PORT_RANGE} (${lo}-${hi}) overlaps the masquerade ports ${m.portMin}-${m.portMax}: they are reserved with ${RESERVED}, so the node's sockets skip them`)
  }
  const ranges = parseRanges(cur[RESERVED] ?? '')
  if (ranges.some(([a, b]) => a <= m.portMin && b >= m.portMax)) return {written: [], warnings}
  const value = [...ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)), `${m.portMin}-${m.portMax}`].join(',')
  const written = await writeSysctls(runner, {[RESERVED]: value}, {current: cur})
  return {written: written.map((k) => `${k}=${value}`), warnings}
}

/** Whether the reserved ports cover the range (pn node show). */
export async function natPortsReserved(runner: Runner, m: MasqueradeConfig): Promise<{ok: boolean; actual: string}> {
  const cur = await readSysctls(runner, [RESERVED])
  const actual = cur[RESERVED] ?? ''
  return {ok: parseRanges(actual).some(([a, b]) => a <= m.portMin && b >= m.portMax), actual: actual || 'none'}
}

/** The tool of a family: iptables for IPv4, ip6tables for IPv6 (same rules, same chain name). */
export const IPTABLES_TOOL = {4: 'iptables', 6: 'ip6tables'} as const

async function iptables(runner: Runner, args: string[], allowFailure = false, family: 4 | 6 = 4) {
  // Listing (-S) and checking (-C) change nothing: they run under --dry-run too.
  return runner.run(IPTABLES_TOOL[family], ['-w', '-t', 'nat', ...args], {allowFailure, readOnly: args[0] === '-S' || args[0] === '-C'})
}

/** The rules of chain PN-MASQUERADE for these exceptions (iptables -S form, without -A CHAIN); `family` picks the CIDRs of that family. */
export function iptablesMasqueradeRules(nonMasq: string[], uplink: string, family: 4 | 6 = 4): string[][] {
  return [
    ...nonMasq.filter((c) => cidrFamily(c) === family).map((c) => ['-d', c, '-j', 'RETURN']),
    ['-o', uplink, '-j', 'MASQUERADE'],
  ]
}

/**
 * iptables mode: chain PN-MASQUERADE (RETURN for every non-masquerade CIDR, one MASQUERADE
 * out of the uplink) and a POSTROUTING jump per pod CIDR, for each family the node has pod
 * CIDRs of (iptables for IPv4, ip6tables for IPv6). Rewritten as a whole; returns what changed.
 */
export async function setupIptablesMasquerade(runner: Runner, o: {uplink: string; podCidrs: string[]; nonMasq: string[]}): Promise<string[]> {
  const actions: string[] = []
  for (const family of [4, 6] as const) {
    const pods = o.podCidrs.filter((x) => cidrFamily(x) === family)
    if (pods.length === 0) continue
    const tool = IPTABLES_TOOL[family]
    const created = (await iptables(runner, ['-N', IPTABLES_CHAIN], true, family)).exitCode === 0
    const rules = iptablesMasqueradeRules(o.nonMasq, o.uplink, family)
    const want = rules.map((r) => ['-A', IPTABLES_CHAIN, ...r].join(' '))
    const have = (await iptables(runner, ['-S', IPTABLES_CHAIN], true, family)).stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('-A '))
    if (JSON.stringify(have) !== JSON.stringify(want)) {
      await iptables(runner, ['-F', IPTABLES_CHAIN], false, family)
      for (const r of rules) await iptables(runner, ['-A', IPTABLES_CHAIN, ...r], false, family)
      actions.push(`${created ? 'created' : 'rewrote'} ${tool} nat chain ${IPTABLES_CHAIN} (MASQUERADE out of ${o.uplink})`)
    }
    for (const c of pods) {
      const jump = ['POSTROUTING', '-s', c, '-j', IPTABLES_CHAIN]
      if ((await iptables(runner, ['-C', ...jump], true, family)).exitCode === 0) continue
      await iptables(runner, ['-A', ...jump], false, family)
      actions.push(`${tool} nat POSTROUTING -s ${c} -j ${IPTABLES_CHAIN}`)
    }
  }
  return actions
}

/** Remove the POSTROUTING jumps and the chain of both families; false when there was nothing (or no iptables). */
export async function removeIptablesMasquerade(runner: Runner): Promise<boolean> {
  let removed = false
  for (const family of [4, 6] as const) {
    const rules = await iptables(runner, ['-S', 'POSTROUTING'], true, family).catch(() => undefined)
    if (!rules || rules.exitCode !== 0) continue
    for (const line of rules.stdout.split('\n')) {
      const parts = line.trim().split(/\s+/)
      if (parts[0] !== '-A' || !parts.includes(IPTABLES_CHAIN)) continue
      await iptables(runner, ['-D', ...parts.slice(1)], false, family)
      removed = true
    }
    if ((await iptables(runner, ['-S', IPTABLES_CHAIN], true, family)).exitCode === 0) {
      await iptables(runner, ['-F', IPTABLES_CHAIN], false, family)
      await iptables(runner, ['-X', IPTABLES_CHAIN], false, family)
      removed = true
    }
  }
  return removed
}

/** Whether chain PN-MASQUERADE of `family` holds a MASQUERADE rule (pn node show, pn status). */
export async function iptablesMasqueradePresent(runner: Runner, family: 4 | 6 = 4): Promise<boolean> {
  const r = await iptables(runner, ['-S', IPTABLES_CHAIN], true, family).catch(() => undefined)
  return !!r && r.exitCode === 0 && /-j MASQUERADE/.test(r.stdout)
}
