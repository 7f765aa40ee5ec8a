/**
 * Datapath benchmark: pod↔pod latency and throughput, BPF against host routes against a bare
 * veth pair, on one node and across two, all built side by side in `pn-hr…` namespaces and
 * measured in the same run, interleaved round by round (the start row rotates each round):
 *
 *   same-node-bpf          two pods of a `--routing bpf` node: from-container → bpf_redirect_peer
 *   same-node-routed       two pods of a `--routing host-routes` node: podIP/32 routes, kernel forwarding
 *   veth                   one veth pair between two namespaces (the physical limit here)
 *   two-node-bpf           pods on two bpf nodes: BPF host routing out of node 1 (bpf_fib_lookup +
 *                          bpf_redirect_neigh), bpf_redirect_peer into the pod on node 2
 *   two-node-routed        pods on two host-routes nodes: both nodes' stacks forward
 *   two-node-tunnel        pods on two bpf nodes in tunnel mode (`--tunnel vxlan`, peers by `pn node
 *                          peer add`, no pod CIDR routes): from-container encapsulates into pn_vxlan,
 *                          from-overlay redirects into the pod; against two-node-bpf (native routing)
 *   same-node-bpf+monitor  same-node-bpf while `pn monitor --json` runs on the node (trace gate open)
 *   two-node-bpf-stack     (only when named in PN_BENCH_ROWS) bpf nodes with host routing switched
 *                          off (pn_node_config zeroed): the programs run, the stacks forward — what
 *                          the FIB path itself saves, apart from the programs' cost
 *   masq-bpf               a pod of a `--masquerade bpf` node to an "outside" namespace at the other end
 *                          of the node's uplink, which has no route to any pod CIDR: to-netdev SNATs
 *                          to the node IP (nat.h), from-netdev translates the reply back
 *   masq-iptables          the same with `--masquerade iptables`: one MASQUERADE rule in the node
 *                          namespace (BPF host routing is off in that mode, the stack forwards)
 *   same-node-floor        bpf nodes built by pn whose programs are then swapped for floor.c's:
 *   two-node-floor         a pod lookup + bpf_redirect_peer, or bpf_fib_lookup + TTL/MAC rewrite +
 *                          bpf_redirect, and nothing else (no to-netdev) — the least a tc BPF
 *                          datapath costs here, so pn's own share is the bpf row over the floor row
 *
 * The two nodes of a kind are wired by one veth pair (their uplinks), routes to each other's pod
 * CIDR via the peer's uplink address.
 *
 * Latency: sockperf ping-pong over TCP, 64-byte messages, full round trip, client and server
 * pinned to the same CPU (taskset), so a transaction never waits for a cross-CPU wakeup; the
 * figure per round is sockperf's p50 (and p99). Throughput: iperf3, same pinning.
 * Medians over rounds; ratios both as the ratio of medians and as the median of the per-round
 * ratios (two rows of one round ran seconds apart, so that one resists a shared machine's noise).
 *
 * masq-connrate (not a latency row; after the rounds, IPv4): new connections per second from a pod
 * of the masq-bpf node to the outside, by bench/datapath/connrate.c (connect, then close with RST,
 * one after the other, unpinned). First to one remote address and port until ports run out
 * (`--masquerade-port-range` is per remote endpoint; closed flows keep their port for the TCP
 * timeout), then round robin over 64 ports of the outside until PN_BENCH_CONNS connections
 * (150,000: past pn_snat4's 131,072 flows) or PN_BENCH_CONN_SECONDS (60); pn_snat4's entries are
 * counted after each phase and DROP_NAT_NO_MAPPING read from pn_metrics. The same second phase
 * through the masq-iptables node (PN_BENCH_CONN_SECONDS / 3 at most) is the reference rate.
 *
 * Address family: every row is built by family (`Family`); PN_BENCH_FAMILIES (default 4,6) picks
 * them; IPv6 has one row (`ROWS_BY_FAMILY`), named with a `-v6` suffix. Environment: PN_BENCH_ROUNDS (9),
 * PN_BENCH_SOCKPERF_SECONDS (2), PN_BENCH_IPERF_SECONDS (2), PN_BENCH_CPU (the last CPU),
 * PN_BENCH_ROWS (comma-separated row names, all by default), PN_BENCH_PROGRAM_COST=1 (after the
 * rounds, one more latency sample per IPv4 row with kernel.bpf_stats_enabled on, reporting each
 * BPF program's runs per round trip and ns per run; the sysctl is put back as it was).
 * Results go to bench/results/datapath.json.
 *   bash bench/datapath/run.sh      (or node dist/bench/datapath/run.js)
 */
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {compileFlags} from '../../src/datapath/bpf/compile.js'
import {pn, REPO_ROOT} from '../../test/helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../../test/helpers/netns.js'

const ROUNDS = Number(process.env.PN_BENCH_ROUNDS ?? 9)
const SOCKPERF_SECONDS = Number(process.env.PN_BENCH_SOCKPERF_SECONDS ?? 2)
const IPERF_SECONDS = Number(process.env.PN_BENCH_IPERF_SECONDS ?? 2)
const CPU = Number(process.env.PN_BENCH_CPU ?? os.cpus().length - 1)
const FAMILIES = (process.env.PN_BENCH_FAMILIES ?? '4,6').split(',').map((f) => Number(f.trim()) as Family)
const PROGRAM_COST = process.env.PN_BENCH_PROGRAM_COST === '1'
const ONLY = process.env.PN_BENCH_ROWS ? new Set(process.env.PN_BENCH_ROWS.split(',').map((s) => s.trim())) : undefined
const BPFFS = '/run/pn/bpffs'
const CONNS = Number(process.env.PN_BENCH_CONNS ?? 150_000)
const CONN_SECONDS = Number(process.env.PN_BENCH_CONN_SECONDS ?? 60)
/** The connection-rate measurement runs when no row list is given or it names masq-connrate. */
const CONNRATE = FAMILIES.includes(4) && (!ONLY || ONLY.has('masq-connrate'))

export type Family = 4 | 6
type Routing = 'bpf' | 'host-routes'
type RowKind =
  | 'same-node-bpf'
  | 'same-node-routed'
  | 'veth'
  | 'two-node-bpf'
  | 'two-node-routed'
  | 'two-node-tunnel'
  | 'same-node-bpf+monitor'
  | 'two-node-bpf-stack'
  | 'same-node-floor'
  | 'two-node-floor'
  | 'masq-bpf'
  | 'masq-iptables'

/** Which rows each family measures. IPv6: the cross-node BPF row (IPv6-only nodes: NDP responder, host routing, redirect_peer). */
export const ROWS_BY_FAMILY: Record<Family, RowKind[]> = {
  4: ['same-node-bpf', 'same-node-routed', 'veth', 'two-node-bpf', 'two-node-routed', 'two-node-tunnel', 'same-node-bpf+monitor', 'same-node-floor', 'two-node-floor', 'masq-bpf', 'masq-iptables'],
  6: ['two-node-bpf'],
}

const children: ChildProcess[] = []
const stateDirs: string[] = []
const nodes: NodeNs[] = []

interface NodeNs {
  ns: string
  stateDir: string
}

interface Row {
  name: string
  kind: RowKind
  family: Family
  client: string
  server: string
  serverIp: string
  /** Run `pn monitor` on this node while measuring. */
  monitor?: NodeNs
  /** The node namespaces the row's packets cross (their stacks' forwarding is counted). */
  nodes: string[]
}

/** Datagrams the IP stacks of these namespaces have forwarded (Ip: ForwDatagrams, IPv4 or IPv6). */
function forwarded(namespaces: string[], family: Family): number {
  let n = 0
  for (const ns of namespaces) {
    if (family === 4) {
      const lines = inNs(ns, ['cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Ip: '))
      const [names, values] = lines.map((l) => l.trim().split(/\s+/))
      n += Number(values[names.indexOf('ForwDatagrams')])
    } else {
      const m = /^Ip6OutForwDatagrams\s+(\d+)/m.exec(inNs(ns, ['cat', '/proc/net/snmp6']))
      n += Number(m?.[1] ?? 0)
    }
  }
  return n
}

/** The addresses of one family: node n's uplink, pod CIDR and pod addresses; the veth pair. */
function plan(family: Family) {
  if (family === 4) {
    return {
      uplink: (n: number) => ({ip: `172.30.90.${n}`, len: 24}),
      podCidr: (net: number) => `10.${net}.0.0/24`,
      podIp: (net: number, host: number) => `10.${net}.0.${host}`,
      veth: (n: number) => ({ip: `10.199.0.${n}`, len: 24}),
    }
  }
  return {
    uplink: (n: number) => ({ip: `fd00:90::${n}`, len: 64}),
    podCidr: (net: number) => `fd00:${net}::/64`,
    podIp: (net: number, host: number) => `fd00:${net}::${host.toString(16)}`,
    veth: (n: number) => ({ip: `fd00:199::${n}`, len: 64}),
    ping: 'ping',
  }
}

/** Start `pn monitor --json` on a node and wait until it listens; returns a stop function. */
async function startMonitor(node: NodeNs): Promise<() => Promise<void>> {
  const child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'monitor', '--json', '--state-dir', node.stateDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  children.push(child)
  await new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr!.on('data', (d) => {
      err += String(d)
      if (err.includes('listening')) resolve()
    })
    child.once('exit', () => reject(new Error(`pn monitor exited: ${err}`)))
  })
  return async () => {
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGINT')
    await exited
  }
}

function run(node: NodeNs, args: string[]) {
  const r = pn([...args, '--state-dir', node.stateDir, '--json'], {netns: node.ns})
  if (r.status !== 0) throw new Error(`pn ${args.join(' ')}: ${r.stdout} ${r.stderr}`)
  return r.json?.result
}

function ensureBpffs(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
}

/**
 * Two nodes of one routing mode, their uplinks one veth pair, each knowing the other's pod CIDR
 * (a route via the other's uplink address; in tunnel mode a peer, `pn node peer add`, and no
 * route); pods: two on node 1, one on node 2. `net` picks the pod CIDRs (net, net+1) and the
 * uplink addresses (idx, idx+1).
 */
function nodePair(
  family: Family,
  routing: Routing,
  idx: number,
  net: number,
  hostRoutingOff = false,
  tagLetter = routing === 'bpf' ? (hostRoutingOff ? 's' : 'b') : 'r',
  tunnel = false,
): NodePair {
  const p = plan(family)
  const tag = `hr${tagLetter}${family}`
  const made = [0, 1].map((i) => {
    const ns = createNamespace(`${tag}n`).name
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-hr-bench-'))
    stateDirs.push(stateDir)
    const node = {ns, stateDir}
    nodes.push(node)
    return node
  })
  inNs(made[0].ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', made[1].ns])
  made.forEach((node, i) => {
    const u = p.uplink(idx + i)
    inNs(node.ns, ['ip', 'addr', 'add', `${u.ip}/${u.len}`, 'dev', 'eth0', ...(family === 6 ? ['nodad'] : [])])
    inNs(node.ns, ['ip', 'link', 'set', 'eth0', 'up'])
    run(node, ['node', 'init', '--name', node.ns, '--device', 'eth0', '--pod-cidr', p.podCidr(net + i), '--routing', routing, ...(tunnel ? ['--tunnel', 'vxlan'] : [])])
    if (hostRoutingOff) {
      const root = String(JSON.parse(readFileSync(path.join(node.stateDir, 'node.json'), 'utf8')).bpffsRoot)
      const zero = Array.from({length: 16}, () => '0')
      inNs(node.ns, ['bpftool', 'map', 'update', 'pinned', path.join(root, 'maps/pn_node_config'), 'key', '0', '0', '0', '0', 'value', ...zero])
    }
  })
  if (tunnel) {
    run(made[0], ['node', 'peer', 'add', made[1].ns, '--node-ip', p.uplink(idx + 1).ip, '--pod-cidr', p.podCidr(net + 1)])
    run(made[1], ['node', 'peer', 'add', made[0].ns, '--node-ip', p.uplink(idx).ip, '--pod-cidr', p.podCidr(net)])
  } else {
    inNs(made[0].ns, ['ip', 'route', 'add', p.podCidr(net + 1), 'via', p.uplink(idx + 1).ip])
    inNs(made[1].ns, ['ip', 'route', 'add', p.podCidr(net), 'via', p.uplink(idx).ip])
  }
  const pods = (node: NodeNs, nodeNet: number, hosts: number[]) =>
    hosts.map((h) => {
      const pod = createNamespace(`${tag}p`).name
      const ip = p.podIp(nodeNet, h)
      const r = run(node, ['veth', 'create', '--container-id', pod, '--netns', `/run/netns/${pod}`, '--ip', ip])
      if (routing === 'bpf') run(node, ['bpf', 'load', '--container-id', pod])
      // Without BPF nothing answers the pod's ARP for its router IP on the lxc; proxy ARP does.
      else if (family === 4) inNs(node.ns, ['sysctl', '-qw', `net.ipv4.conf.${r.hostIfname}.proxy_arp=1`])
      return {pod, ip, lxc: String(r.hostIfname)}
    })
  const p1 = pods(made[0], net, [10, 11])
  const p2 = pods(made[1], net + 1, [10])
  return {
    n1: made[0],
    n2: made[1],
    pods1: p1.map((x) => x.pod),
    pods2: p2.map((x) => x.pod),
    ips1: p1.map((x) => x.ip),
    ips2: p2.map((x) => x.ip),
    lxcs1: p1.map((x) => x.lxc),
    lxcs2: p2.map((x) => x.lxc),
  }
}

interface NodePair {
  n1: NodeNs
  n2: NodeNs
  pods1: string[]
  pods2: string[]
  ips1: string[]
  ips2: string[]
  lxcs1: string[]
  lxcs2: string[]
}

/** bench/datapath/floor.c, compiled once per run. */
function compileFloor(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-floor-'))
  stateDirs.push(dir)
  const out = path.join(dir, 'floor.o')
  execFileSync('clang', [...compileFlags(), '-c', path.join(REPO_ROOT, 'bench/datapath/floor.c'), '-o', out])
  return out
}

const u32Bytes = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].map(String)

/**
 * Swap pn's programs on a bpf node pair (IPv4) for floor.c's: floor_lxc on every lxc, floor_netdev
 * on each uplink's ingress, nothing on its egress. Pinned under the node's bpffs directory (the
 * cleanup removes it). The pods' ARP for their router address is answered by proxy ARP then.
 */
function installFloor(pair: NodePair, object: string): void {
  const nodesOf = [
    {node: pair.n1, ips: pair.ips1, lxcs: pair.lxcs1},
    {node: pair.n2, ips: pair.ips2, lxcs: pair.lxcs2},
  ]
  for (const {node, ips, lxcs} of nodesOf) {
    const dir = path.join(BPFFS, node.ns, 'floor')
    mkdirSync(dir, {recursive: true})
    execFileSync('bpftool', ['prog', 'loadall', object, `${dir}/progs`, 'type', 'classifier', 'pinmaps', `${dir}/maps`])
    const ifindex = (dev: string) => Number((JSON.parse(inNs(node.ns, ['ip', '-j', 'link', 'show', 'dev', dev])) as {ifindex: number}[])[0].ifindex)
    const update = (map: string, key: string[], value: string[]) =>
      execFileSync('bpftool', ['map', 'update', 'pinned', `${dir}/maps/${map}`, 'key', ...key, 'value', ...value])
    update('floor_uplink', u32Bytes(0), u32Bytes(ifindex('eth0')))
    ips.forEach((ip, i) => {
      update('floor_pods', ip.split('.'), u32Bytes(ifindex(lxcs[i])))
      inNs(node.ns, ['sysctl', '-qw', `net.ipv4.conf.${lxcs[i]}.proxy_arp=1`])
      inNs(node.ns, ['tc', 'filter', 'replace', 'dev', lxcs[i], 'ingress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'object-pinned', `${dir}/progs/floor_lxc`])
    })
    inNs(node.ns, ['tc', 'filter', 'replace', 'dev', 'eth0', 'ingress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'object-pinned', `${dir}/progs/floor_netdev`])
    inNs(node.ns, ['tc', 'filter', 'del', 'dev', 'eth0', 'egress'])
  }
}

interface MasqNode {
  node: NodeNs
  outside: string
  pod: string
  podIp: string
  outsideIp: string
}

const MASQ_NODE_IP = '172.30.95.1'
const MASQ_OUTSIDE_IP = '172.30.95.100'

/**
 * A `--routing bpf` node with `--masquerade MODE`, one pod, and an "outside" namespace at the
 * other end of its uplink that knows only the uplink's /24 (no route to the pod CIDR): a reply
 * reaches the pod only if its packets left with the node's address.
 */
function masqNode(mode: 'bpf' | 'iptables', net: number): MasqNode {
  const tag = `hrm${mode === 'bpf' ? 'b' : 'i'}`
  const node = {ns: createNamespace(`${tag}n`).name, stateDir: mkdtempSync(path.join(os.tmpdir(), 'pn-hr-bench-'))}
  stateDirs.push(node.stateDir)
  nodes.push(node)
  const outside = createNamespace(`${tag}o`).name
  inNs(node.ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside])
  for (const [ns, ip] of [[node.ns, MASQ_NODE_IP], [outside, MASQ_OUTSIDE_IP]]) {
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  }
  run(node, ['node', 'init', '--name', node.ns, '--device', 'eth0', '--pod-cidr', `10.${net}.0.0/24`, '--routing', 'bpf', '--masquerade', mode])
  const pod = createNamespace(`${tag}p`).name
  const podIp = `10.${net}.0.10`
  run(node, ['veth', 'create', '--container-id', pod, '--netns', `/run/netns/${pod}`, '--ip', podIp])
  run(node, ['bpf', 'load', '--container-id', pod])
  return {node, outside, pod, podIp, outsideIp: MASQ_OUTSIDE_IP}
}

const masqNodes: Partial<Record<'bpf' | 'iptables', MasqNode>> = {}

function vethPair(family: Family): Row {
  const p = plan(family)
  const a = createNamespace(`hrv${family}a`).name
  const b = createNamespace(`hrv${family}b`).name
  inNs(a, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b])
  for (const [ns, n] of [[a, 1], [b, 2]] as const) {
    const v = p.veth(n)
    inNs(ns, ['ip', 'addr', 'add', `${v.ip}/${v.len}`, 'dev', 'eth0', ...(family === 6 ? ['nodad'] : [])])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  }
  return {name: suffix('veth', family), kind: 'veth', family, client: a, server: b, serverIp: p.veth(2).ip, nodes: []}
}

const suffix = (name: string, family: Family) => (family === 4 ? name : `${name}-v6`)

/** Every row of one family (the kinds in ROWS_BY_FAMILY), sharing the nodes they can. */
function buildRows(family: Family): Row[] {
  const extra: RowKind[] = ONLY?.has(suffix('two-node-bpf-stack', family)) ? ['two-node-bpf-stack'] : []
  const kinds = [...ROWS_BY_FAMILY[family], ...extra].filter((k) => !ONLY || ONLY.has(suffix(k, family)))
  if (kinds.length === 0 && !(family === 4 && CONNRATE)) return []
  const rows: Row[] = []
  const base = family === 4 ? 0 : 10
  // The masq- rows have nodes of their own (masqNode).
  const bpf = kinds.some((k) => k.includes('bpf') && !k.startsWith('masq-')) ? nodePair(family, 'bpf', 1 + base, 181 + base) : undefined
  const routed = kinds.some((k) => k.includes('routed')) ? nodePair(family, 'host-routes', 3 + base, 183 + base) : undefined
  const bpfStack = kinds.includes('two-node-bpf-stack') ? nodePair(family, 'bpf', 5 + base, 185 + base, true) : undefined
  const floor = family === 4 && kinds.some((k) => k.includes('floor')) ? nodePair(family, 'bpf', 7 + base, 187 + base, false, 'f') : undefined
  if (floor) installFloor(floor, compileFloor())
  const tunnel = family === 4 && kinds.includes('two-node-tunnel') ? nodePair(family, 'bpf', 9 + base, 189 + base, false, 't', true) : undefined
  if (family === 4 && (kinds.includes('masq-bpf') || CONNRATE)) masqNodes.bpf = masqNode('bpf', 195)
  if (family === 4 && (kinds.includes('masq-iptables') || CONNRATE)) masqNodes.iptables = masqNode('iptables', 196)
  const masqRow = (m: MasqNode, kind: RowKind): Row => ({name: kind, kind, family, client: m.pod, server: m.outside, serverIp: m.outsideIp, nodes: [m.node.ns]})
  for (const kind of kinds) {
    const row = (pair: NodePair, remote: boolean, monitor?: NodeNs): Row => ({
      name: suffix(kind, family),
      kind,
      family,
      client: pair.pods1[0],
      server: remote ? pair.pods2[0] : pair.pods1[1],
      serverIp: remote ? pair.ips2[0] : pair.ips1[1],
      ...(monitor ? {monitor} : {}),
      nodes: remote ? [pair.n1.ns, pair.n2.ns] : [pair.n1.ns],
    })
    if (kind === 'veth') rows.push(vethPair(family))
    else if (kind === 'same-node-bpf') rows.push(row(bpf!, false))
    else if (kind === 'same-node-bpf+monitor') rows.push(row(bpf!, false, bpf!.n1))
    else if (kind === 'two-node-bpf') rows.push(row(bpf!, true))
    else if (kind === 'same-node-routed') rows.push(row(routed!, false))
    else if (kind === 'two-node-routed') rows.push(row(routed!, true))
    else if (kind === 'two-node-tunnel') rows.push(row(tunnel!, true))
    else if (kind === 'two-node-bpf-stack') rows.push(row(bpfStack!, true))
    else if (kind === 'same-node-floor') rows.push(row(floor!, false))
    else if (kind === 'two-node-floor') rows.push(row(floor!, true))
    else if (kind === 'masq-bpf') rows.push(masqRow(masqNodes.bpf!, kind))
    else if (kind === 'masq-iptables') rows.push(masqRow(masqNodes.iptables!, kind))
  }
  return rows
}

/** bench/datapath/connrate.c, compiled once per run. */
function compileConnrate(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-connrate-'))
  stateDirs.push(dir)
  const out = path.join(dir, 'connrate')
  execFileSync('cc', ['-O2', '-o', out, path.join(REPO_ROOT, 'bench/datapath/connrate.c')])
  return out
}

interface ConnPhase {
  ok: number
  failures: number
  okAtFirstFailure: number
  secondsAtFirstFailure: number
  seconds: number
  perSecond: number[]
}

/** Packets pn_metrics counted under a drop reason, every observation point and direction summed. */
function dropCount(node: NodeNs, reason: string): number {
  const res = run(node, ['bpf', 'map', 'dump', 'pn_metrics']) as {entries: {key: {reason: string}; value: {packets: number}}[]}
  return res.entries.filter((e) => e.key.reason === reason).reduce((n, e) => n + e.value.packets, 0)
}

/**
 * New connections per second from a pod through masquerade (see the header: masq-connrate).
 * Phase 1: one remote endpoint until its NAT ports run out; phase 2: 64 remote ports until
 * pn_snat4 is past full or the time is up; the same phase 2 through iptables MASQUERADE.
 */
async function connRate(bpf: MasqNode, ipt: MasqNode | undefined): Promise<Record<string, unknown>> {
  const bin = compileConnrate()
  const PORT = 20000
  const SPREAD = 64
  const snat = path.join(String(JSON.parse(readFileSync(path.join(bpf.node.stateDir, 'node.json'), 'utf8')).bpffsRoot), 'maps/pn_snat4')
  const mapCount = () => JSON.parse(execFileSync(bin, ['count', snat], {encoding: 'utf8'})) as {entries: number; out: number; in: number}
  const client = (m: MasqNode, base: number, nports: number, max: number, seconds: number, maxFail: number): ConnPhase =>
    JSON.parse(
      execFileSync('ip', ['netns', 'exec', m.pod, bin, 'client', m.outsideIp, String(base), String(nports), String(max), String(seconds), String(maxFail), '200'], {
        encoding: 'utf8',
        timeout: (seconds + 120) * 1000,
      }),
    ) as ConnPhase
  const servers = [] as ChildProcess[]
  for (const m of [bpf, ipt]) {
    if (!m) continue
    const child = spawn('ip', ['netns', 'exec', m.outside, bin, 'server', String(PORT), String(SPREAD + 1)], {stdio: ['ignore', 'pipe', 'inherit']})
    children.push(child)
    servers.push(child)
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve())
      child.once('exit', (c) => reject(new Error(`connrate server exited ${c}`)))
    })
  }
  const rate = (p: ConnPhase) => Math.round(p.ok / p.seconds)
  /** Until the first failure: each failure waits out its 200 ms connect timeout. */
  const rateBeforeFailing = (p: ConnPhase) => (p.okAtFirstFailure > 0 ? Math.round(p.okAtFirstFailure / p.secondsAtFirstFailure) : rate(p))
  const drops0 = dropCount(bpf.node, 'DROP_NAT_NO_MAPPING')
  const range = 65535 - 61000 + 1
  const one = client(bpf, PORT, 1, range + 1000, CONN_SECONDS, 20)
  const drops1 = dropCount(bpf.node, 'DROP_NAT_NO_MAPPING')
  const afterOne = mapCount()
  process.stderr.write(`masq-connrate, one remote endpoint: ${one.ok} connections (${rateBeforeFailing(one)}/s until the first failure), first failure after ${one.okAtFirstFailure}, ${one.failures} failed, DROP_NAT_NO_MAPPING +${drops1 - drops0}, pn_snat4 ${afterOne.entries} entries\n`)
  const fill = client(bpf, PORT + 1, SPREAD, CONNS, CONN_SECONDS, 1000)
  const drops2 = dropCount(bpf.node, 'DROP_NAT_NO_MAPPING')
  const afterFill = mapCount()
  const capacityFlows = 131_072
  process.stderr.write(`masq-connrate, ${SPREAD} remote ports: ${fill.ok} connections in ${fill.seconds.toFixed(1)} s (${rate(fill)}/s), ${fill.failures} failed (first after ${fill.okAtFirstFailure}), DROP_NAT_NO_MAPPING +${drops2 - drops1}, pn_snat4 ${afterFill.entries} entries (${afterFill.out} out, ${afterFill.in} in)\n`)
  let reference: Record<string, unknown> | undefined
  if (ipt) {
    const r = client(ipt, PORT + 1, SPREAD, CONNS, Math.max(5, Math.round(CONN_SECONDS / 3)), 1000)
    reference = {connections: r.ok, failures: r.failures, seconds: round3(r.seconds), perSecond: rate(r)}
    process.stderr.write(`masq-connrate, iptables MASQUERADE, ${SPREAD} remote ports: ${r.ok} connections in ${r.seconds.toFixed(1)} s (${rate(r)}/s), ${r.failures} failed\n`)
  }
  for (const c of servers) await stopServer(c)
  return {
    portRange: '61000-65535 (default)',
    tcpTimeoutSeconds: 21600,
    mapCapacityFlows: capacityFlows,
    oneRemoteEndpoint: {
      connections: one.ok, perSecondBeforeFailing: rateBeforeFailing(one), seconds: round3(one.seconds), failures: one.failures, okAtFirstFailure: one.okAtFirstFailure,
      secondsAtFirstFailure: round3(one.secondsAtFirstFailure),
      portsInRange: range, dropNatNoMapping: drops1 - drops0, snatEntriesAfter: afterOne,
    },
    spread: {
      remotePorts: SPREAD, connections: fill.ok, perSecond: rate(fill), perSecondBeforeFailing: rateBeforeFailing(fill), seconds: round3(fill.seconds), failures: fill.failures, okAtFirstFailure: fill.okAtFirstFailure,
      dropNatNoMapping: drops2 - drops1, snatEntriesAfter: afterFill,
      /** Flows in the map after both phases against its capacity; past 1.0 the LRU evicts. */
      flowsOverCapacity: round3((one.ok + fill.ok) / capacityFlows),
      secondsToFillAtThisRate: round3(capacityFlows / rate(fill)),
      perSecondTimeline: fill.perSecond,
    },
    ...(reference ? {iptablesSpread: reference} : {}),
  }
}

/** A server pinned to CPU, started in a namespace; resolves once it prints `ready` (or after 2 s). */
async function startServer(ns: string, argv: string[], ready: RegExp): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, 'taskset', '-c', String(CPU), ...argv], {stdio: ['ignore', 'pipe', 'pipe']})
  children.push(child)
  await new Promise<void>((resolve) => {
    const check = (d: Buffer) => ready.test(String(d)) && resolve()
    child.stdout!.on('data', check)
    child.stderr!.on('data', check)
    setTimeout(resolve, 2000)
  })
  return child
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill()
  await exited
}

/** sockperf's percentile lines (µs): `---> percentile 50.000 =   18.354`. */
export function parseSockperf(out: string): {p50: number; p99: number; avg: number} {
  const pct = (p: string) => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(out)
    if (!m) throw new Error(`sockperf output without percentile ${p}: ${out.slice(-400)}`)
    return Number(m[1])
  }
  const avg = /avg-rtt=([\d.]+)/.exec(out)
  return {p50: pct('50.000'), p99: pct('99.000'), avg: avg ? Number(avg[1]) : NaN}
}

/** One sockperf ping-pong sample of a row (server started and stopped around it); its output. */
async function pingPong(r: Row, port: number): Promise<string> {
  const server = await startServer(r.server, ['sockperf', 'server', '--tcp', '-i', r.serverIp, '-p', String(port)], /Warmup|ready|listen|Waiting/i)
  const c = spawnSync(
    'ip',
    ['netns', 'exec', r.client, 'taskset', '-c', String(CPU), 'sockperf', 'ping-pong', '--tcp', '-i', r.serverIp, '-p', String(port), '-m', '64', '-t', String(SOCKPERF_SECONDS), '--full-rtt'],
    {encoding: 'utf8'},
  )
  await stopServer(server)
  if (c.status !== 0) throw new Error(`sockperf ${r.name}: ${c.stdout.slice(-300)} ${c.stderr.slice(-300)}`)
  return c.stdout + c.stderr
}

async function latency(r: Row, port: number): Promise<{p50: number; p99: number; avg: number}> {
  return parseSockperf(await pingPong(r, port))
}

interface ProgStat {
  name: string
  runs: number
  ns: number
}

/** Every loaded BPF program's counters (run_cnt/run_time_ns exist while bpf_stats is on), by id. */
function progStats(): Map<number, ProgStat> {
  const list = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], {encoding: 'utf8', maxBuffer: 64 << 20})) as {id: number; name?: string; run_cnt?: number; run_time_ns?: number}[]
  return new Map(list.map((p) => [p.id, {name: p.name ?? `id-${p.id}`, runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0}]))
}

/**
 * What each BPF program costs on a row's path: one latency sample with the kernel's BPF run-time
 * statistics on, then runs and ns per run of every program that ran, summed by program name.
 * Only one row runs at a time, so the programs that ran are that row's. The statistics add their
 * own clock reads to each run (tens of ns here): compare rows with each other, not with a row
 * measured without them.
 */
async function programCost(r: Row, port: number): Promise<{roundTrips: number; programs: Record<string, {runsPerRoundTrip: number; nsPerRun: number}>}> {
  const before = progStats()
  const out = await pingPong(r, port)
  const after = progStats()
  const m = /SentMessages=(\d+)/.exec(out)
  const roundTrips = m ? Number(m[1]) : NaN
  const byName: Record<string, {runs: number; ns: number}> = {}
  for (const [id, a] of after) {
    const b = before.get(id) ?? {runs: 0, ns: 0}
    const runs = a.runs - b.runs
    if (runs < roundTrips / 10) continue // not on this path (or a stray packet)
    const e = (byName[a.name] ??= {runs: 0, ns: 0})
    e.runs += runs
    e.ns += a.ns - b.ns
  }
  const programs = Object.fromEntries(
    Object.entries(byName).map(([name, e]) => [name, {runsPerRoundTrip: round3(e.runs / roundTrips), nsPerRun: Math.round(e.ns / e.runs)}]),
  )
  return {roundTrips, programs}
}

async function throughput(r: Row, port: number): Promise<number> {
  const server = await startServer(r.server, ['iperf3', '-s', '-1', '-p', String(port)], /listening/i)
  const c = spawnSync('ip', ['netns', 'exec', r.client, 'taskset', '-c', String(CPU), 'iperf3', '-c', r.serverIp, '-p', String(port), '-t', String(IPERF_SECONDS), '-J'], {
    encoding: 'utf8',
  })
  await stopServer(server)
  if (c.status !== 0) throw new Error(`iperf3 ${r.name}: ${c.stdout.slice(0, 300)} ${c.stderr}`)
  return (JSON.parse(c.stdout).end.sum_received.bits_per_second as number) / 1e9
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const round3 = (x: number) => Math.round(x * 1000) / 1000

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill()
  for (const n of nodes) {
    pn(['node', 'reset', '--state-dir', n.stateDir, '--json'], {netns: n.ns})
    rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  }
  cleanupNamespaces()
  for (const d of stateDirs) rmSync(d, {recursive: true, force: true})
}

interface Samples {
  p50: number[]
  p99: number[]
  gbps: number[]
  /** Datagrams the nodes' stacks forwarded during the sample (latency + throughput): ~0 when BPF routes. */
  forwarded: number[]
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (it builds network namespaces)')
  ensureBpffs()
  const rows = FAMILIES.flatMap((f) => buildRows(f))
  if (rows.length === 0 && !CONNRATE) throw new Error('no rows selected (PN_BENCH_ROWS / PN_BENCH_FAMILIES)')
  for (const r of rows) {
    const c = spawnSync('ip', ['netns', 'exec', r.client, 'ping', `-${r.family}`, '-c', '2', '-W', '1', '-i', '0.2', r.serverIp])
    if (c.status !== 0) throw new Error(`${r.name}: client cannot reach ${r.serverIp}`)
  }
  const samples: Record<string, Samples> = Object.fromEntries(rows.map((r) => [r.name, {p50: [], p99: [], gbps: [], forwarded: []}]))
  let port = 5400
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order so no row always runs first (or right after the monitor row).
    const order = rows.map((_, i) => rows[(i + round) % rows.length])
    for (const r of order) {
      const stop = r.monitor ? await startMonitor(r.monitor) : undefined
      // Debian's sockperf 3.7 takes IPv4 addresses only (`-i ::1` is "Invalid address"): IPv6
      // rows measure throughput only; their latency is NaN (null in the JSON).
      const fwd0 = forwarded(r.nodes, r.family)
      const lat = r.family === 6 ? {p50: NaN, p99: NaN, avg: NaN} : await latency(r, port++)
      const gbps = await throughput(r, port++)
      await stop?.()
      const s = samples[r.name]
      s.forwarded.push(forwarded(r.nodes, r.family) - fwd0)
      s.p50.push(lat.p50)
      s.p99.push(lat.p99)
      s.gbps.push(gbps)
      process.stderr.write(`round ${round + 1} ${r.name}: p50 ${lat.p50.toFixed(2)} µs, p99 ${lat.p99.toFixed(1)} µs, ${gbps.toFixed(2)} Gbit/s\n`)
    }
  }
  const connRateResult = CONNRATE ? await connRate(masqNodes.bpf!, masqNodes.iptables) : undefined
  const programs: Record<string, unknown> = {}
  if (PROGRAM_COST) {
    const was = readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim()
    writeFileSync('/proc/sys/kernel/bpf_stats_enabled', '1')
    try {
      for (const r of rows.filter((x) => x.family === 4)) {
        const cost = await programCost(r, port++)
        programs[r.name] = cost
        process.stderr.write(`program cost ${r.name}: ${Object.entries(cost.programs).map(([n, c]) => `${n} ${c.nsPerRun} ns × ${c.runsPerRoundTrip}`).join(', ') || 'no BPF'}\n`)
      }
    } finally {
      writeFileSync('/proc/sys/kernel/bpf_stats_enabled', was)
    }
  }
  const results = Object.fromEntries(
    Object.entries(samples).map(([k, v]) => [k, {p50Us: round3(median(v.p50)), p99Us: round3(median(v.p99)), tcpGbps: round3(median(v.gbps)), stackForwarded: median(v.forwarded), samples: v}]),
  )
  /** a/b as the ratio of medians and as the median of per-round ratios, for one metric. */
  const ratio = (a: string, b: string, metric: keyof Samples) => {
    if (!samples[a] || !samples[b]) return undefined
    const perRound = samples[a][metric].map((x, i) => x / samples[b][metric][i])
    return {ofMedians: round3(median(samples[a][metric]) / median(samples[b][metric])), medianPerRound: round3(median(perRound))}
  }
  const ratios: Record<string, unknown> = {}
  for (const f of FAMILIES) {
    const n = (x: string) => suffix(x, f)
    ratios[`ipv${f}`] = {
      latencyP50: {
        twoNodeBpfVsRouted: ratio(n('two-node-bpf'), n('two-node-routed'), 'p50'),
        sameNodeBpfVsVeth: ratio(n('same-node-bpf'), n('veth'), 'p50'),
        sameNodeBpfVsRouted: ratio(n('same-node-bpf'), n('same-node-routed'), 'p50'),
        twoNodeBpfVsSameNodeBpf: ratio(n('two-node-bpf'), n('same-node-bpf'), 'p50'),
        twoNodeBpfVsBpfStack: ratio(n('two-node-bpf'), n('two-node-bpf-stack'), 'p50'),
        twoNodeBpfStackVsRouted: ratio(n('two-node-bpf-stack'), n('two-node-routed'), 'p50'),
        monitorVsBpf: ratio(n('same-node-bpf+monitor'), n('same-node-bpf'), 'p50'),
        twoNodeFloorVsRouted: ratio(n('two-node-floor'), n('two-node-routed'), 'p50'),
        sameNodeFloorVsVeth: ratio(n('same-node-floor'), n('veth'), 'p50'),
        twoNodeBpfVsFloor: ratio(n('two-node-bpf'), n('two-node-floor'), 'p50'),
        sameNodeBpfVsFloor: ratio(n('same-node-bpf'), n('same-node-floor'), 'p50'),
        twoNodeTunnelVsNative: ratio(n('two-node-tunnel'), n('two-node-bpf'), 'p50'),
        masqBpfVsIptables: ratio(n('masq-bpf'), n('masq-iptables'), 'p50'),
      },
      tcpThroughput: {
        twoNodeBpfVsRouted: ratio(n('two-node-bpf'), n('two-node-routed'), 'gbps'),
        sameNodeBpfVsVeth: ratio(n('same-node-bpf'), n('veth'), 'gbps'),
        sameNodeBpfVsRouted: ratio(n('same-node-bpf'), n('same-node-routed'), 'gbps'),
        monitorVsBpf: ratio(n('same-node-bpf+monitor'), n('same-node-bpf'), 'gbps'),
        twoNodeTunnelVsNative: ratio(n('two-node-tunnel'), n('two-node-bpf'), 'gbps'),
        masqBpfVsIptables: ratio(n('masq-bpf'), n('masq-iptables'), 'gbps'),
      },
    }
  }
  // The one IPv6 row against its IPv4 twin: the same path, the other family.
  ratios.ipv6VsIpv4 = {twoNodeBpfTcp: ratio('two-node-bpf-v6', 'two-node-bpf', 'gbps')}
  const report = {
    date: new Date().toISOString(),
    kernel: os.release(),
    cpus: os.cpus().length,
    pinnedCpu: CPU,
    loadavg: os.loadavg().map(round3),
    rounds: ROUNDS,
    sockperf: {seconds: SOCKPERF_SECONDS, messageBytes: 64, protocol: 'tcp', mode: 'ping-pong, full round trip'},
    iperfSeconds: IPERF_SECONDS,
    results,
    ratios,
    ...(PROGRAM_COST ? {programCost: programs} : {}),
    ...(connRateResult ? {masqConnRate: connRateResult} : {}),
  }
  const out = path.join(REPO_ROOT, 'bench/results/datapath.json')
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n')
  const brief = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, {p50Us: v.p50Us, p99Us: v.p99Us, tcpGbps: v.tcpGbps, stackForwarded: v.stackForwarded}]))
  const connBrief = connRateResult && {...connRateResult, spread: {...(connRateResult.spread as Record<string, unknown>), perSecondTimeline: undefined}}
  process.stdout.write(JSON.stringify({results: brief, ratios, ...(PROGRAM_COST ? {programCost: programs} : {}), ...(connBrief ? {masqConnRate: connBrief} : {}), file: out}, null, 2) + '\n')
}

main()
  .catch((err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  })
  .finally(cleanup)
