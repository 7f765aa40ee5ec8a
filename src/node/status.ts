/**
 * `pn status`: the node as a tree a person reads at a glance, and where the kernel disagrees
 * with pn's state. Each section compares what pn recorded (node.json, endpoint records) with
 * what the kernel has (links, tc attachments): `ok`, `drifted` (there but not as pn left it: a
 * stale program, a device without a record) or `missing` (a record whose lxc is gone, a hook
 * without its program). The library never prints; the command draws the tree.
 *
 * Extension point: a section is one provider in SECTIONS. Services (their VIPs and backends
 * from the LB maps) and BGP sessions (from birdc) add a provider each when they land.
 */
import type {Runner} from '../exec/runner.js'
import {bpfStatus, dumpMap, PROGRAMS, type AttachmentStatus, type BpfStatus, type DecodedEntry} from '../datapath/bpf/index.js'
import {FIB_FALLBACK_REASONS} from '../datapath/bpf/drop-reasons.js'
import {hostAddresses} from '../datapath/host.js'
import {listLinks, type LinkInfo} from '../datapath/link.js'
import {listEndpoints, type EndpointRecord} from '../endpoint/store.js'
import {checkConsistency} from './consistency.js'
import {HOST_DEVICE, NET_DEVICE, requireNodeContext, TUNNEL_DEVICE, type NodeContext, type TunnelMode} from './context.js'
import {masqueradeSection} from './masquerade.js'

export type StatusState = 'ok' | 'drifted' | 'missing'

export interface StatusHook {
  direction: 'ingress' | 'egress'
  /** The program pn expects on this hook. */
  expected?: string
  /** What is attached (pn programs only). */
  attached?: string
  id?: number
  state: StatusState
}

export interface StatusItem {
  /** What this is: a device name, an endpoint id. */
  name: string
  kind: 'uplink' | 'host-device' | 'endpoint' | 'unrecorded-device' | string
  state: StatusState
  /** Why it is not ok (empty when ok). */
  problems: string[]
  /** Facts to show: ips, container id, pod name, lxc device … */
  details: Record<string, string | number | string[] | undefined>
  hooks: StatusHook[]
}

export interface StatusSection {
  name: string
  state: StatusState
  items: StatusItem[]
}

export interface NodeStatus {
  node: Pick<NodeContext, 'name' | 'uplink' | 'podCidrs' | 'routerIps' | 'routing' | 'bpffsRoot' | 'mtu'> & {tunnel: TunnelMode; masquerade: string}
  state: StatusState
  /** Programs pinned under the bpffs root. */
  programsLoaded: boolean
  sections: StatusSection[]
}

/** What every section provider gets: node.json, records and one read of the kernel. */
export interface StatusInput {
  node: NodeContext
  links: LinkInfo[]
  bpf: BpfStatus
  endpoints: EndpointRecord[]
  hostAddrs: string[]
  runner: Runner
  stateDir: string
}

export type SectionProvider = (input: StatusInput) => Promise<StatusSection> | StatusSection

const worst = (states: StatusState[]): StatusState => (states.includes('missing') ? 'missing' : states.includes('drifted') ? 'drifted' : 'ok')

/** Compare a device's expected hooks with its pn attachments. Pure. */
export function compareHooks(device: string, expected: {ingress?: string; egress?: string}, attachments: AttachmentStatus[]): {hooks: StatusHook[]; problems: string[]} {
  const hooks: StatusHook[] = []
  const problems: string[] = []
  for (const direction of ['ingress', 'egress'] as const) {
    const want = expected[direction]
    const got = attachments.find((a) => a.device === device && a.direction === direction)
    if (!want && !got) continue
    let state: StatusState = 'ok'
    if (want && !got) {
      state = 'missing'
      problems.push(`${want} not attached at ${direction}`)
    } else if (got && want && got.program !== want) {
      state = 'drifted'
      problems.push(`${direction} runs ${got.program}, expected ${want}`)
    } else if (got && !want) {
      state = 'drifted'
      problems.push(`${got.program} attached at ${direction}, pn expects nothing there`)
    } else if (got && !got.current) {
      state = 'drifted'
      problems.push(`${direction} runs a stale ${got.program} (id ${got.id}, not the pinned one)`)
    }
    hooks.push({direction, ...(want ? {expected: want} : {}), ...(got ? {attached: got.program, id: got.id} : {}), state})
  }
  return {hooks, problems}
}

function item(name: string, kind: string, details: StatusItem['details'], problems: string[], hooks: StatusHook[], missing = false): StatusItem {
  const state: StatusState = missing ? 'missing' : worst([...hooks.map((h) => h.state), problems.length ? 'drifted' : 'ok'])
  return {name, kind, state, problems, details, hooks}
}

/** The node's own devices: uplink, pn_host, pn_net, with the host programs in bpf mode. */
export function hostSection(input: StatusInput): StatusSection {
  const {node, links, bpf, hostAddrs} = input
  const bpfMode = node.routing === 'bpf'
  const byName = new Map(links.map((l) => [l.ifname, l]))
  const items: StatusItem[] = []
  const device = (name: string, kind: string, expected: {ingress?: string; egress?: string}, details: StatusItem['details']) => {
    const link = byName.get(name)
    if (!link) return items.push(item(name, kind, details, [`device ${name} does not exist`], [], true))
    const {hooks, problems} = compareHooks(name, expected, bpf.attachments)
    if (!(link.flags ?? []).includes('UP')) problems.push(`${name} is down`)
    items.push(item(name, kind, {...details, mtu: link.mtu, mac: link.address}, problems, hooks))
  }
  device(node.uplink, 'uplink', bpfMode ? {ingress: PROGRAMS.from_netdev, egress: PROGRAMS.to_netdev} : {}, {})
  device(HOST_DEVICE, 'host-device', bpfMode ? {ingress: PROGRAMS.to_host, egress: PROGRAMS.from_host} : {}, {addresses: hostAddrs})
  device(NET_DEVICE, 'host-device', {}, {})
  if (node.tunnel === 'vxlan') device(TUNNEL_DEVICE, 'tunnel-device', bpfMode ? {ingress: PROGRAMS.from_overlay} : {}, {})
  const hostItem = items.find((i) => i.name === HOST_DEVICE)
  if (hostItem && hostItem.state !== 'missing') {
    for (const r of node.routerIps) {
      if (!hostAddrs.some((a) => a.split('/')[0] === r)) {
        hostItem.problems.push(`router IP ${r} is not on ${HOST_DEVICE}`)
        if (hostItem.state === 'ok') hostItem.state = 'drifted'
      }
    }
  }
  return {name: 'host', state: worst(items.map((i) => i.state)), items}
}

/** Each endpoint record against its lxc, and lxc devices no record explains. */
export function endpointsSection(input: StatusInput): StatusSection {
  const {links, bpf, endpoints} = input
  const byName = new Map(links.map((l) => [l.ifname, l]))
  const items: StatusItem[] = []
  for (const ep of [...endpoints].sort((x, y) => x.endpointId - y.endpointId)) {
    const details = {
      endpointId: ep.endpointId,
      containerId: ep.containerId,
      ifname: ep.ifname,
      pod: ep.podName ? `${ep.podNamespace ? `${ep.podNamespace}/` : ''}${ep.podName}` : undefined,
      ips: ep.ips,
      lxc: ep.hostIfname,
    }
    const link = byName.get(ep.hostIfname)
    if (!link) {
      items.push(item(String(ep.endpointId), 'endpoint', details, [`lxc ${ep.hostIfname} is gone (record ${ep.id})`], [], true))
      continue
    }
    const problems: string[] = []
    if (link.ifindex !== ep.hostIfindex) problems.push(`${ep.hostIfname} has ifindex ${link.ifindex}, the record says ${ep.hostIfindex}`)
    const {hooks, problems: hookProblems} = compareHooks(ep.hostIfname, ep.bpfAttached ? {ingress: PROGRAMS.from_container} : {}, bpf.attachments)
    items.push(item(String(ep.endpointId), 'endpoint', details, [...problems, ...hookProblems], hooks))
  }
  const recorded = new Set(endpoints.map((e) => e.hostIfname))
  for (const l of links) {
    if (!l.ifname.startsWith('lxc') || recorded.has(l.ifname)) continue
    const {hooks} = compareHooks(l.ifname, {}, bpf.attachments)
    items.push({name: l.ifname, kind: 'unrecorded-device', state: 'drifted', problems: [`device ${l.ifname} has no endpoint record`], details: {lxc: l.ifname}, hooks})
  }
  return {name: 'endpoints', state: worst(items.map((i) => i.state)), items}
}

/**
 * BPF host routing (bpf/include/fib.h), from pn_node_config and pn_metrics: which uplink
 * from-container redirects to, how many packets it sent there, and how many it handed to the
 * stack instead, per reason. Pure: `config` is the one pn_node_config entry (undefined when the
 * map is missing), `metrics` the pn_metrics dump.
 */
export function hostRoutingItem(uplink: LinkInfo | undefined, config: DecodedEntry | undefined, metrics: DecodedEntry[]): StatusItem {
  const count = (reason: string) =>
    metrics.filter((e) => e.key.point === 'from-container' && e.key.reason === reason).reduce((n, e) => n + Number(e.value.packets), 0)
  const configured = config ? Number(config.value.uplinkIfindex) : 0
  const details: StatusItem['details'] = {
    uplinkIfindex: configured,
    redirected: count('TRACE_FIB_REDIRECT'),
    redirectedNeigh: count('TRACE_FIB_REDIRECT_NEIGH'),
  }
  const fallbacks: string[] = []
  for (const r of FIB_FALLBACK_REASONS) {
    const n = count(r.name)
    if (n > 0) fallbacks.push(`${r.name.replace(/^TRACE_FIB_/, '').toLowerCase()} ${n}`)
  }
  details.fallbacks = fallbacks
  const problems: string[] = []
  if (!config) problems.push('pn_node_config is missing: run `pn bpf load --host`')
  else if (configured === 0) problems.push('host routing is off (no uplink in pn_node_config): run `pn bpf load --host`')
  else if (uplink && uplink.ifindex !== configured) problems.push(`pn_node_config names ifindex ${configured}, the uplink ${uplink.ifname} has ${uplink.ifindex}: run \`pn bpf load --host\``)
  return {name: 'from-container → uplink', kind: 'host-routing', state: problems.length ? 'drifted' : 'ok', problems, details, hooks: []}
}

/** Host routing in bpf mode (none in host-routes mode, where the stack routes everything). */
export async function hostRoutingSection(input: StatusInput): Promise<StatusSection> {
  const {node, links, bpf, runner} = input
  if (node.routing !== 'bpf' || !bpf.loaded) return {name: 'host-routing', state: 'ok', items: []}
  const [config, metrics] = await Promise.all([
    dumpMap(runner, node, 'pn_node_config').then((e) => e[0], () => undefined),
    dumpMap(runner, node, 'pn_metrics').catch(() => [] as DecodedEntry[]),
  ])
  const it = hostRoutingItem(links.find((l) => l.ifname === node.uplink), config, metrics)
  // iptables masquerade turns host routing off on purpose (src/datapath/masquerade.ts).
  if (node.masquerade?.mode === 'iptables') it.problems = it.problems.filter((p) => !p.startsWith('host routing is off'))
  if (it.problems.length === 0) it.state = 'ok'
  return {name: 'host-routing', state: it.state, items: [it]}
}

/**
 * Network policy per endpoint (pn_policy_ep, pn_policy): whether each direction is enforced (a
 * policy selects the pod: default deny, then its allow rules) or open, and how many rules it has.
 * A pn_policy_ep entry for an endpoint id no record holds is policy left behind: drifted.
 */
export async function policySection(input: StatusInput): Promise<StatusSection> {
  const {node, bpf, runner, endpoints} = input
  if (node.routing !== 'bpf' || !bpf.loaded) return {name: 'policy', state: 'ok', items: []}
  let states: DecodedEntry[]
  let rules: DecodedEntry[]
  try {
    ;[states, rules] = await Promise.all([dumpMap(runner, node, 'pn_policy_ep'), dumpMap(runner, node, 'pn_policy')])
  } catch {
    return {name: 'policy', state: 'ok', items: []} // a node pinned before policy: no maps, every pod open
  }
  const byId = new Map(states.map((e) => [Number(e.key.endpointId), e.value as {ingressEnforced: boolean; egressEnforced: boolean}]))
  const count = new Map<number, number>()
  for (const r of rules) count.set(Number(r.key.endpointId), (count.get(Number(r.key.endpointId)) ?? 0) + 1)
  const items: StatusItem[] = []
  const known = new Set<number>()
  for (const rec of endpoints) {
    known.add(rec.endpointId)
    const st = byId.get(rec.endpointId)
    const word = (on: boolean | undefined) => (on ? 'enforced' : 'open')
    items.push({
      name: rec.podName ? `${rec.podNamespace ?? 'default'}/${rec.podName}` : rec.containerId,
      kind: 'endpoint-policy',
      state: 'ok',
      problems: [],
      details: {endpointId: rec.endpointId, ingress: word(st?.ingressEnforced), egress: word(st?.egressEnforced), rules: count.get(rec.endpointId) ?? 0},
      hooks: [],
    })
  }
  for (const [id] of byId) {
    if (known.has(id)) continue
    items.push({name: `endpoint ${id}`, kind: 'stale-policy', state: 'drifted', problems: [`pn_policy_ep holds endpoint ${id}, which no endpoint record has: run \`pn cni gc\``], details: {endpointId: id, rules: count.get(id) ?? 0}, hooks: []})
  }
  return {name: 'policy', state: worst(items.map((i) => i.state)), items}
}

/**
 * The consistency check (consistency.ts) over map entries, lxc devices, routes, records and IPAM,
 * both ways. The endpoints section already shows lxc devices without a record and records without
 * their lxc; this one shows the rest, each as drifted (the kernel holds what no record explains)
 * or missing (a record lacks its kernel part). `pn cni gc` repairs them.
 */
export async function consistencySection(input: StatusInput): Promise<StatusSection> {
  const found = await checkConsistency(input.runner, input.stateDir, input.node, {records: input.endpoints, links: input.links})
  const items = found
    .filter((i) => i.kind !== 'orphan-link' && i.kind !== 'record-without-link')
    .map((i): StatusItem => ({
      name: i.subject,
      kind: i.kind,
      state: i.kind.startsWith('record-without') ? 'missing' : 'drifted',
      problems: [i.problem],
      details: {...(i.attachment ? {attachment: i.attachment} : {}), ...(i.map ? {map: i.map, key: i.key} : {}), ...(i.ip ? {ip: i.ip} : {})},
      hooks: [],
    }))
  return {name: 'consistency', state: worst(items.map((i) => i.state)), items}
}

/** The sections, in order. Services and BGP add theirs here. */
export const SECTIONS: readonly SectionProvider[] = [hostSection, endpointsSection, hostRoutingSection, masqueradeSection, policySection, consistencySection]

export async function nodeStatus(runner: Runner, stateDir: string, opts: {sections?: readonly SectionProvider[]} = {}): Promise<NodeStatus> {
  const node = await requireNodeContext(stateDir)
  const [links, bpf, endpoints, hostAddrs] = await Promise.all([listLinks(runner), bpfStatus(runner, node), listEndpoints(stateDir), hostAddresses(runner)])
  const input: StatusInput = {node, links, bpf, endpoints, hostAddrs, runner, stateDir}
  const sections: StatusSection[] = []
  for (const provider of opts.sections ?? SECTIONS) sections.push(await provider(input))
  const {name, uplink, podCidrs, routerIps, routing, bpffsRoot, mtu} = node
  const bpfMissing = node.routing === 'bpf' && !bpf.loaded
  return {
    node: {name, uplink, podCidrs, routerIps, routing, bpffsRoot, mtu, tunnel: node.tunnel ?? 'off', masquerade: node.masquerade?.mode ?? 'off'},
    state: bpfMissing ? 'missing' : worst(sections.map((s) => s.state)),
    programsLoaded: bpf.loaded,
    sections,
  }
}
