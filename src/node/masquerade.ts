/**
 * The masquerade part of `pn node init`: resolve --masquerade, --non-masquerade-cidr, the SNAT
 * port range and NAT timeouts against the previous node.json, and set up what the mode needs
 * outside the BPF maps (those are written by the host load: src/datapath/bpf/load.ts):
 *   bpf       the port range reserved in net.ipv4.ip_local_reserved_ports;
 *   iptables  chain PN-MASQUERADE with one MASQUERADE rule (removed by `pn node reset`).
 * The list of destinations never masqueraded is data: the node's pod CIDRs, the cluster
 * pool's CIDRs (when the pod CIDR came from a pool) and every --non-masquerade-cidr.
 */
import {PnError} from '../errors.js'
import {MASQUERADE_DEFAULTS, normalizeNonMasq, parsePortRange, removeIptablesMasquerade, reserveNatPorts, setupIptablesMasquerade, type MasqueradeConfig, type MasqueradeMode} from '../datapath/masquerade.js'
import {dumpMap, type DecodedEntry} from '../datapath/bpf/index.js'
import {NODE_CFG_MASQ} from '../datapath/bpf/maps/index.js'
import {iptablesMasqueradePresent} from '../datapath/masquerade.js'
import {cidrFamily} from '../cidr/cidr.js'
import {openPoolStore} from '../ipam/pool.js'
import type {InitRun} from './init.js'
import type {StatusInput, StatusItem, StatusSection} from './status.js'

export interface MasqueradeOptions {
  mode?: MasqueradeMode
  /** --non-masquerade-cidr (repeatable); replaces the previous list when given. */
  nonMasqueradeCidrs?: string[]
  /** "FIRST-LAST" (default 61000-65535). */
  portRange?: string
  /** Idle timeouts in seconds: TCP, and UDP / ICMP echo. */
  tcpTimeout?: number
  otherTimeout?: number
}

/** The cluster pool's CIDRs, when the node's pod CIDR came from a pool (readable). */
async function poolCidrs(r: InitRun): Promise<string[]> {
  if (!r.pool) return []
  const state = await openPoolStore(r.pool, {...r.opts.lock, etcdTls: r.opts.etcdTls}).read().catch(() => undefined)
  return state?.clusterCidrs.map((c) => c.cidr) ?? []
}

function checkTimeout(name: string, v: number | undefined): void {
  if (v === undefined || (Number.isInteger(v) && v >= 1 && v <= 86400 * 7)) return
  throw new PnError('PN_INVALID_ARGUMENT', `configure masquerade: ${name} ${v} is not a whole number of seconds from 1 to 604800`, {
    hint: `pass e.g. --${name} ${name.includes('tcp') ? MASQUERADE_DEFAULTS.tcpTimeout : MASQUERADE_DEFAULTS.otherTimeout}`,
  })
}

/** r.masquerade from the options and the previous node.json; undefined when never configured. */
export async function resolveMasquerade(r: InitRun): Promise<void> {
  const o = r.opts.masquerade ?? {}
  const prev = r.previous?.masquerade
  const given = o.mode !== undefined || o.nonMasqueradeCidrs !== undefined || o.portRange !== undefined || o.tcpTimeout !== undefined || o.otherTimeout !== undefined
  if (!given && !prev) return
  checkTimeout('nat-tcp-timeout', o.tcpTimeout)
  checkTimeout('nat-udp-timeout', o.otherTimeout)
  const mode = o.mode ?? prev?.mode ?? 'off'
  if (mode === 'bpf' && r.routing !== 'bpf') {
    throw new PnError('PN_INVALID_ARGUMENT', `initialise node ${r.opts.name}: --masquerade bpf needs --routing bpf (the BPF programs do the translation)`, {
      hint: 'pass --masquerade iptables with --routing host-routes',
    })
  }
  const range = o.portRange !== undefined ? parsePortRange(o.portRange, `initialise node ${r.opts.name}`) : undefined
  const m: MasqueradeConfig = {
    mode,
    nonMasqueradeCidrs: o.nonMasqueradeCidrs !== undefined
      ? normalizeNonMasq([...o.nonMasqueradeCidrs, ...(await poolCidrs(r))])
      : prev?.nonMasqueradeCidrs ?? normalizeNonMasq(await poolCidrs(r)),
    portMin: range?.portMin ?? prev?.portMin ?? MASQUERADE_DEFAULTS.portMin,
    portMax: range?.portMax ?? prev?.portMax ?? MASQUERADE_DEFAULTS.portMax,
    tcpTimeout: o.tcpTimeout ?? prev?.tcpTimeout ?? MASQUERADE_DEFAULTS.tcpTimeout,
    otherTimeout: o.otherTimeout ?? prev?.otherTimeout ?? MASQUERADE_DEFAULTS.otherTimeout,
  }
  r.masquerade = m
}

/** The step: what the mode needs besides the maps (and the iptables chain gone in other modes). */
export async function setupMasquerade(r: InitRun): Promise<void> {
  // Without masquerade the BPF datapath still SNATs NodePort requests to remote backends from
  // the default range: reserve it all the same.
  const m = r.masquerade ?? (r.routing === 'bpf' ? {mode: 'off' as const, nonMasqueradeCidrs: [], ...MASQUERADE_DEFAULTS} : undefined)
  if (!m) return
  if (m.mode !== 'iptables' && r.previous?.masquerade?.mode === 'iptables') {
    if (await removeIptablesMasquerade(r.runner)) r.actions.push('removed iptables nat chain PN-MASQUERADE')
  }
  if (m.mode === 'bpf' || r.routing === 'bpf') {
    const res = await reserveNatPorts(r.runner, m)
    r.warnings.push(...res.warnings)
    if (res.written.length > 0) r.actions.push(`sysctl ${res.written.join(' ')}`)
  }
  if (m.mode === 'iptables') {
    const actions = await setupIptablesMasquerade(r.runner, {uplink: r.opts.uplink, podCidrs: r.podCidrs, nonMasq: [...r.podCidrs, ...m.nonMasqueradeCidrs]})
    if (actions.length > 0 && r.previous?.masquerade?.mode !== 'iptables') r.undo.push('remove iptables masquerade', () => removeIptablesMasquerade(r.runner).then(() => undefined))
    r.actions.push(...actions)
  }
}

/**
 * `pn status` section: the mode, and what the kernel has for it — bpf: pn_node_config's SNAT
 * addresses and range, pn_snat4's and pn_snat6's live flows, DROP_NAT_NO_MAPPING drops;
 * iptables: the chain (and ip6tables' on a dual-stack node).
 */
export async function masqueradeSection(input: StatusInput): Promise<StatusSection> {
  const {node, runner} = input
  const m = node.masquerade
  if (!m || m.mode === 'off') return {name: 'masquerade', state: 'ok', items: []}
  const problems: string[] = []
  const details: StatusItem['details'] = {mode: m.mode, nonMasquerade: [...node.podCidrs, ...m.nonMasqueradeCidrs]}
  const dualStack = node.podCidrs.some((c) => cidrFamily(c) === 6)
  if (m.mode === 'iptables') {
    if (!(await iptablesMasqueradePresent(runner))) problems.push('chain PN-MASQUERADE has no MASQUERADE rule: run `pn node init`')
    if (dualStack && !(await iptablesMasqueradePresent(runner, 6))) problems.push('ip6tables chain PN-MASQUERADE has no MASQUERADE rule: run `pn node init`')
  } else {
    const [config, flows, flows6, metrics] = await Promise.all([
      dumpMap(runner, node, 'pn_node_config').then((e) => e[0], () => undefined),
      dumpMap(runner, node, 'pn_snat4').catch(() => [] as DecodedEntry[]),
      dumpMap(runner, node, 'pn_snat6').catch(() => [] as DecodedEntry[]),
      dumpMap(runner, node, 'pn_metrics').catch(() => [] as DecodedEntry[]),
    ])
    const ip = config?.value.natIp4 as string | undefined
    const ip6 = config?.value.natIp6 as string | undefined
    if (!ip || !(Number(config?.value.flags) & NODE_CFG_MASQ)) problems.push('pn_node_config has BPF masquerade off: run `pn node init` or `pn bpf load --host`')
    if (dualStack && !ip6) problems.push(`the uplink has no global IPv6 address: pods' IPv6 traffic leaves unmasqueraded (add one, then \`pn bpf load --host\`)`)
    details.snatIp = ip ?? '-'
    if (dualStack) details.snatIp6 = ip6 ?? '-'
    details.ports = `${m.portMin}-${m.portMax}`
    details.flows = flows.filter((e) => e.key.dir === 'out').length
    if (dualStack) details.flows6 = flows6.filter((e) => e.key.dir === 'out').length
    details.noMapping = metrics.filter((e) => e.key.reason === 'DROP_NAT_NO_MAPPING').reduce((n, e) => n + Number(e.value.packets), 0)
  }
  const item: StatusItem = {name: `masquerade ${m.mode}`, kind: 'masquerade', state: problems.length ? 'drifted' : 'ok', problems, details, hooks: []}
  return {name: 'masquerade', state: item.state, items: [item]}
}
