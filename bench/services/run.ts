/**
 * Service benchmark: connection-setup latency to ONE VIP with 10 … 100,000 services programmed,
 * in three set-ups built side by side in `pn-` namespaces and measured in the same run:
 *   pn        — `pn node init --routing bpf`, services by `pn service apply` (BPF, lb4_xlate)
 *   iptables  — a host-routes node (kernel forwarding) with kube-proxy-style rules: chain
 *               KUBE-SERVICES, one `-d VIP -p tcp --dport 80 -j DNAT` rule per service, the
 *               measured service LAST, loaded with iptables-legacy-restore
 *   nftables  — another host-routes node with kube-proxy's nftables shape: one verdict map
 *               VIP . proto . port → goto a per-service chain that DNATs
 * and `direct`: the pn node's client connecting to the backend pod itself (no service).
 * NodePort (PN_BENCH_NODEPORT_COUNTS, default 10,10000; empty skips it): the same three nodes, the
 * client now in the namespace at the other end of each node's uplink (the "outside", no route to
 * pod CIDRs), connecting to nodeIP:nodePort of the measured service (externalTrafficPolicy
 * Cluster, its backend on that node). N services, of which min(N, 2,768) are NodePort (the whole
 * default 30000–32767 range; the measured one has the last port):
 *   pn        — `type: NodePort` entries in `pn service apply` (from-netdev, nodeport.h)
 *   iptables  — kube-proxy's shape: the last rule of KUBE-SERVICES `-m addrtype --dst-type LOCAL
 *               -j KUBE-NODEPORTS`, there one `--dport` rule per NodePort service → its KUBE-EXT
 *               chain (KUBE-MARK-MASQ, then DNAT), KUBE-POSTROUTING masquerading marked packets
 *   nftables  — kube-proxy's: `fib daddr type local` → verdict map proto . port → external chain
 *               (jump mark-for-masquerade, goto the service chain), masquerading in postrouting
 * and `direct`: the outside client connecting to the backend pod's address (a route to the pod
 * CIDR via the node, added in the outside namespace for this row only).
 * Connects are timed by a small C probe (bench/services/probe.c) around connect(). Also timed:
 * programming 10,000 services (pn service apply vs iptables-legacy-restore) and one update in
 * that table, PN_BENCH_PROGRAM_ROUNDS interleaved rounds (default 7) of pn and iptables-restore,
 * medians reported: both the time inside pn (`durationMs`: lock, table, diff, map writes, table
 * commit) and the whole `pn` command (Node start-up included), plus `pn service add --help` for the
 * bare CLI start-up. iptables/nft run only inside the namespaces this creates, never in the root one.
 *   bash bench/services/run.sh      (PN_BENCH_COUNTS=10,1000 PN_BENCH_SAMPLES=500 for a quick run;
 *                                    PN_BENCH_COUNTS= (empty) for the NodePort rows alone;
 *                                    PN_BENCH_PROGRAM_ONLY=1 for the programming figures alone;
 *                                    PN_BENCH_COMPARE=DIR times an earlier pn build's service
 *                                    programming in the same rounds, on a fourth node)
 * Results go to bench/results/services.json.
 */
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn, REPO_ROOT} from '../../test/helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../../test/helpers/netns.js'

const counts = (v: string) => v.split(',').filter((x) => x.trim() !== '').map(Number)
const COUNTS = counts(process.env.PN_BENCH_COUNTS ?? '10,1000,10000,100000')
/** Services in the table for the NodePort rows (min(N, 2,768) of them NodePort); empty skips NodePort. */
const NODEPORT_COUNTS = counts(process.env.PN_BENCH_NODEPORT_COUNTS ?? '10,10000')
/** kube-proxy's default NodePort range, 30000–32767. */
const NODEPORT_MIN = 30000
const NODEPORT_RANGE = 2768
const SAMPLES = Number(process.env.PN_BENCH_SAMPLES ?? 1000)
const ROUNDS = Number(process.env.PN_BENCH_ROUNDS ?? 3)
/** Interleaved rounds of the programming figures (apply 10,000, one update in 10,000); 0 skips them. */
const PROGRAM_ROUNDS = Number(process.env.PN_BENCH_PROGRAM_ROUNDS ?? 7)
/** Only the programming figures (no connect latency). */
const PROGRAM_ONLY = process.env.PN_BENCH_PROGRAM_ONLY === '1'
/** An earlier pn build (a checkout with dist/ built): its `pn service` is timed in the same rounds, on a node of its own. */
const COMPARE = process.env.PN_BENCH_COMPARE
const PROBE_SRC = path.join(REPO_ROOT, 'bench/services/probe.c')
const BPFFS = '/run/pn/bpffs'
const VIP = '10.96.0.1'

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-svc-'))
const children: ChildProcess[] = []
const nodes: {ns: string; stateDir: string}[] = []

interface Setup {
  name: string
  node: string
  stateDir: string
  client: string
  backendIp: string
  /** The node's uplink address (eth0) and the namespace at the other end of the uplink (the outside client). */
  nodeIp: string
  outside: string
  /** bin/run.js of the pn that runs this node (default: this checkout's). */
  bin?: string
}

function sh(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, {encoding: 'utf8', input, maxBuffer: 256 << 20})
}

function pnRun(s: {node: string; stateDir: string; bin?: string}, args: string[], input?: string) {
  if (s.bin) {
    const r = spawnSync('ip', ['netns', 'exec', s.node, process.execPath, s.bin, ...args, '--state-dir', s.stateDir, '--json'], {encoding: 'utf8', input, maxBuffer: 256 << 20})
    if (r.status !== 0) throw new Error(`pn (${s.bin}) ${args.join(' ')}: ${r.stdout.slice(0, 2000)} ${r.stderr.slice(0, 2000)}`)
    return JSON.parse(r.stdout).result
  }
  const r = pn([...args, '--state-dir', s.stateDir, '--json'], {netns: s.node, input})
  if (r.status !== 0) throw new Error(`pn ${args.join(' ')}: ${r.stdout.slice(0, 2000)} ${r.stderr.slice(0, 2000)}`)
  return r.json?.result
}

function ensureBpffs(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (sh('stat', ['-f', '-c', '%T', BPFFS]).trim() !== 'bpf_fs') sh('mount', ['-t', 'bpf', 'bpf', BPFFS])
}

/** A node (routing mode as given) with a client pod and a backend pod running a TCP listener. */
async function setup(name: string, routing: 'bpf' | 'host-routes', cidrByte: number, bin?: string): Promise<Setup> {
  const node = createNamespace(`bs${name}`).name
  const stub = createNamespace(`bs${name}u`).name
  inNs(node, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', stub])
  // The uplink's addresses: the node's is its NodePort address; the stub is the outside client.
  const nodeIp = `172.29.${cidrByte}.1`
  inNs(node, ['ip', 'addr', 'add', `${nodeIp}/24`, 'dev', 'eth0'])
  inNs(node, ['ip', 'link', 'set', 'eth0', 'up'])
  inNs(stub, ['ip', 'addr', 'add', `172.29.${cidrByte}.2/24`, 'dev', 'up0'])
  inNs(stub, ['ip', 'link', 'set', 'up0', 'up'])
  const stateDir = mkdtempSync(path.join(tmp, `${name}-`))
  nodes.push({ns: node, stateDir})
  pnRun({node, stateDir, bin}, ['node', 'init', '--name', node, '--device', 'eth0', '--pod-cidr', `10.${cidrByte}.0.0/24`, '--routing', routing])
  const pods: string[] = []
  for (const i of [10, 11]) {
    const pod = createNamespace(`bs${name}p`).name
    pnRun({node, stateDir, bin}, ['veth', 'create', '--container-id', pod, '--netns', `/run/netns/${pod}`, '--ip', `10.${cidrByte}.0.${i}`])
    if (routing === 'bpf') pnRun({node, stateDir, bin}, ['bpf', 'load', '--container-id', pod])
    pods.push(pod)
  }
  const server = spawn('ip', ['netns', 'exec', pods[1], 'python3', '-u', '-c', LISTENER], {stdio: ['ignore', 'pipe', 'inherit']})
  children.push(server)
  await new Promise<void>((resolve) => server.stdout!.once('data', () => resolve()))
  return {name, node, stateDir, client: pods[0], backendIp: `10.${cidrByte}.0.11`, nodeIp, outside: stub, bin}
}

/** Accepts and closes, with a deep backlog: connect() completes on the SYN-ACK either way. */
const LISTENER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(4096)
print('ready', flush=True)
while True:
    c, _ = s.accept(); c.close()
`

/** Dummy service i (never the measured one): 10.100.0.0/14 VIPs, each with its own backend. */
const dummyVip = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`
const dummyBackend = (i: number) => `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`

function pnServices(n: number, backend: string): string {
  const list = Array.from({length: n - 1}, (_, i) => ({frontend: `${dummyVip(i)}:80/tcp`, backends: [`${dummyBackend(i)}:8080`]}))
  list.push({frontend: `${VIP}:80/tcp`, backends: [`${backend}:8080`]})
  return JSON.stringify(list)
}

function iptablesRules(n: number, backend: string): string {
  const lines = ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]',
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
  for (let i = 0; i < n - 1; i++) lines.push(`-A KUBE-SERVICES -d ${dummyVip(i)}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${dummyBackend(i)}:8080`)
  lines.push(`-A KUBE-SERVICES -d ${VIP}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${backend}:8080`)
  lines.push('COMMIT', '')
  return lines.join('\n')
}

function nftRules(n: number, backend: string): string {
  const lines = ['flush ruleset', 'table ip kube-proxy {']
  for (let i = 0; i < n - 1; i++) lines.push(`  chain service-${i} { meta l4proto tcp dnat to ${dummyBackend(i)}:8080; }`)
  lines.push(`  chain service-target { meta l4proto tcp dnat to ${backend}:8080; }`)
  lines.push('  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; elements = {')
  const el = Array.from({length: n - 1}, (_, i) => `    ${dummyVip(i)} . tcp . 80 : goto service-${i}`)
  el.push(`    ${VIP} . tcp . 80 : goto service-target`)
  lines.push(el.join(',\n'), '  } }')
  lines.push('  chain nat-prerouting { type nat hook prerouting priority dstnat; ip daddr . meta l4proto . th dport vmap @service-ips; }')
  lines.push('  chain nat-output { type nat hook output priority -100; ip daddr . meta l4proto . th dport vmap @service-ips; }')
  lines.push('}', '')
  return lines.join('\n')
}

/** NodePort services of a table of n: how many, and the measured one's port (the last of them). */
const nodePorts = (n: number) => Math.min(n, NODEPORT_RANGE)
const measuredNodePort = (n: number) => NODEPORT_MIN + nodePorts(n) - 1
/** Dummy service i is NodePort (port NODEPORT_MIN + i) when i < nodePorts(n) - 1. */
const dummyNodePort = (n: number, i: number) => (i < nodePorts(n) - 1 ? NODEPORT_MIN + i : undefined)

function pnNodePortServices(n: number, backend: string): string {
  const list: Record<string, unknown>[] = Array.from({length: n - 1}, (_, i) => {
    const np = dummyNodePort(n, i)
    return {frontend: `${dummyVip(i)}:80/tcp`, backends: [`${dummyBackend(i)}:8080`], ...(np ? {type: 'NodePort', nodePort: np} : {})}
  })
  list.push({frontend: `${VIP}:80/tcp`, backends: [`${backend}:8080`], type: 'NodePort', nodePort: measuredNodePort(n), externalTrafficPolicy: 'Cluster'})
  return JSON.stringify(list)
}

/**
 * kube-proxy's iptables NodePort shape, one DNAT per service as in iptablesRules (kube-proxy's
 * KUBE-SVC/KUBE-SEP hops folded into it): KUBE-SERVICES ends with the jump to KUBE-NODEPORTS for
 * local destinations; KUBE-NODEPORTS has one rule per NodePort service, the measured one last;
 * its KUBE-EXT chain marks for masquerade (externalTrafficPolicy Cluster) and DNATs;
 * KUBE-POSTROUTING masquerades what is marked.
 */
function iptablesNodePortRules(n: number, backend: string): string {
  const lines = ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]',
    ':KUBE-SERVICES - [0:0]', ':KUBE-NODEPORTS - [0:0]', ':KUBE-MARK-MASQ - [0:0]', ':KUBE-POSTROUTING - [0:0]', ':KUBE-EXT-TARGET - [0:0]']
  for (let i = 0; i < n - 1; i++) if (dummyNodePort(n, i)) lines.push(`:KUBE-EXT-${i} - [0:0]`)
  lines.push('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000',
    '-A KUBE-POSTROUTING -j MASQUERADE --random-fully')
  for (let i = 0; i < n - 1; i++) lines.push(`-A KUBE-SERVICES -d ${dummyVip(i)}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${dummyBackend(i)}:8080`)
  lines.push(`-A KUBE-SERVICES -d ${VIP}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${backend}:8080`)
  lines.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
  for (let i = 0; i < n - 1; i++) {
    const np = dummyNodePort(n, i)
    if (!np) continue
    lines.push(`-A KUBE-NODEPORTS -p tcp -m tcp --dport ${np} -j KUBE-EXT-${i}`)
    lines.push(`-A KUBE-EXT-${i} -j KUBE-MARK-MASQ`, `-A KUBE-EXT-${i} -p tcp -j DNAT --to-destination ${dummyBackend(i)}:8080`)
  }
  lines.push(`-A KUBE-NODEPORTS -p tcp -m tcp --dport ${measuredNodePort(n)} -j KUBE-EXT-TARGET`)
  lines.push('-A KUBE-EXT-TARGET -j KUBE-MARK-MASQ', `-A KUBE-EXT-TARGET -p tcp -j DNAT --to-destination ${backend}:8080`)
  lines.push('COMMIT', '')
  return lines.join('\n')
}

/**
 * kube-proxy's nftables NodePort shape: chain services looks the ClusterIP up in service-ips and,
 * for a local destination, proto . port in service-nodeports → goto the service's external
 * chain, which jumps to mark-for-masquerade and goes to the service chain (DNAT); postrouting's
 * masquerading chain masquerades marked packets.
 */
function nftNodePortRules(n: number, backend: string): string {
  const lines = ['flush ruleset', 'table ip kube-proxy {']
  lines.push('  chain mark-for-masquerade { mark set mark or 0x4000; }')
  lines.push('  chain masquerading { meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade fully-random; }')
  for (let i = 0; i < n - 1; i++) {
    lines.push(`  chain service-${i} { meta l4proto tcp dnat to ${dummyBackend(i)}:8080; }`)
    if (dummyNodePort(n, i)) lines.push(`  chain external-${i} { jump mark-for-masquerade; goto service-${i}; }`)
  }
  lines.push(`  chain service-target { meta l4proto tcp dnat to ${backend}:8080; }`)
  lines.push('  chain external-target { jump mark-for-masquerade; goto service-target; }')
  lines.push('  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; elements = {')
  const el = Array.from({length: n - 1}, (_, i) => `    ${dummyVip(i)} . tcp . 80 : goto service-${i}`)
  el.push(`    ${VIP} . tcp . 80 : goto service-target`)
  lines.push(el.join(',\n'), '  } }')
  lines.push('  map service-nodeports { type inet_proto . inet_service : verdict; elements = {')
  const np: string[] = []
  for (let i = 0; i < n - 1; i++) if (dummyNodePort(n, i)) np.push(`    tcp . ${dummyNodePort(n, i)} : goto external-${i}`)
  np.push(`    tcp . ${measuredNodePort(n)} : goto external-target`)
  lines.push(np.join(',\n'), '  } }')
  lines.push('  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports; }')
  lines.push('  chain nat-prerouting { type nat hook prerouting priority dstnat; jump services; }')
  lines.push('  chain nat-output { type nat hook output priority -100; jump services; }')
  lines.push('  chain nat-postrouting { type nat hook postrouting priority srcnat; jump masquerading; }')
  lines.push('}', '')
  return lines.join('\n')
}

interface Probe {
  n: number
  failures: number
  p50: number
  p99: number
  mean: number
  /** probeRounds: each round's p50, in order. */
  p50PerRound?: number[]
}

function probe(s: Setup, host: string, port: number, from = s.client): Probe {
  return JSON.parse(sh('ip', ['netns', 'exec', from, path.join(tmp, 'probe'), host, String(port), String(SAMPLES), '100'])) as Probe
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** ROUNDS interleaved rounds of every probe (this machine is shared, load drifts); median p50/p99. */
function probeRounds(targets: [string, () => Probe][]): Record<string, Probe> {
  const got: Record<string, Probe[]> = {}
  for (let r = 0; r < ROUNDS; r++) for (const [name, fn] of targets) (got[name] ??= []).push(fn())
  return Object.fromEntries(Object.entries(got).map(([k, ps]) => [k, {
    n: ps.reduce((a, p) => a + p.n, 0), failures: ps.reduce((a, p) => a + p.failures, 0),
    p50: median(ps.map((p) => p.p50)), p99: median(ps.map((p) => p.p99)), mean: median(ps.map((p) => p.mean)),
    p50PerRound: ps.map((p) => p.p50),
  }]))
}

function timed<T>(fn: () => T): {value: T; ms: number} {
  const t0 = performance.now()
  const value = fn()
  return {value, ms: performance.now() - t0}
}

function memlock(s: Setup): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of ['pn_lb4_services', 'pn_lb4_backends', 'pn_lb4_stats', 'pn_ct4']) {
    const info = JSON.parse(sh('bpftool', ['-j', 'map', 'show', 'pinned', path.join(BPFFS, s.node, 'maps', m)])) as {bytes_memlock?: number}
    out[m] = info.bytes_memlock ?? -1
  }
  return out
}

const r2 = (x: number) => Math.round(x * 100) / 100

/**
 * Programming 10,000 services and one update among them, PROGRAM_ROUNDS times, interleaved with
 * iptables-legacy-restore of the same rules so both see the same machine load. Medians.
 */
/**
 * One service request to the node agent as a program sends it: the native client
 * (dist/native/pn-cni, PN_AGENT_OP=service) exec'd in the node netns. Its wall time is what a
 * controller that execs the client waits for; `durationMs` is the agent's own time.
 */
function agentRequest(s: Setup, body: Record<string, unknown>): {durationMs: number; mapOps: number} {
  const r = spawnSync('nsenter', [`--net=/run/netns/${s.node}`, '--', path.join(REPO_ROOT, 'dist/native/pn-cni')], {
    input: JSON.stringify({stateDir: s.stateDir, ...body}),
    env: {PATH: process.env.PATH, PN_AGENT_OP: 'service'},
    encoding: 'utf8',
  })
  const env = JSON.parse(r.stdout || '{}') as {status?: string; result?: {durationMs: number; mapOps: number}}
  if (r.status !== 0 || env.status !== 'ok') throw new Error(`agent service request: ${r.stdout} ${r.stderr}`)
  return env.result!
}

function programRounds(bpf: Setup, ipt: Setup, old?: Setup): Record<string, unknown> {
  const n = 10_000
  // The node agent for the requests a program sends (stopped by cleanup()).
  pnRun(bpf, ['agent', 'start'])
  agentNodes.push(bpf)
  const input = pnServices(n, bpf.backendIp)
  const rules = iptablesRules(n, ipt.backendIp)
  const empty = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n'
  const got: Record<string, number[]> = {}
  const add = (k: string, v: number) => (got[k] ??= []).push(v)
  let mapOps = 0
  let updateOps = 0
  for (let r = 0; r < PROGRAM_ROUNDS; r++) {
    pnRun(bpf, ['service', 'apply', '-'], '[]')
    sh('ip', ['netns', 'exec', ipt.node, 'iptables-legacy-restore'], empty)
    const a = timed(() => pnRun(bpf, ['service', 'apply', '-'], input))
    add('pnApplyMs', a.value.durationMs)
    add('pnApplyCliMs', a.ms)
    mapOps = a.value.mapOps
    add('iptablesRestoreMs', timed(() => sh('ip', ['netns', 'exec', ipt.node, 'iptables-legacy-restore'], rules)).ms)
    // One update in the 10,000-service table: the measured service gets a second backend, and back.
    const up = timed(() => pnRun(bpf, ['service', 'add', `${VIP}:80/tcp`, '--backend', `${bpf.backendIp}:8080`, '--backend', `${bpf.backendIp}:8081`]))
    add('pnUpdateMs', up.value.durationMs)
    add('pnUpdateCliMs', up.ms)
    updateOps = up.value.mapOps
    const back = timed(() => pnRun(bpf, ['service', 'add', `${VIP}:80/tcp`, '--backend', `${bpf.backendIp}:8080`]))
    add('pnUpdateMs', back.value.durationMs)
    add('pnUpdateCliMs', back.ms)
    // The same apply and update as requests to the node agent (warm code, its map writer kept open).
    agentRequest(bpf, {op: 'apply', services: []})
    const aa = timed(() => agentRequest(bpf, {op: 'apply', services: JSON.parse(input)}))
    add('pnAgentApplyMs', aa.value.durationMs)
    add('pnAgentApplyWallMs', aa.ms)
    for (const backends of [[`${bpf.backendIp}:8080`, `${bpf.backendIp}:8081`], [`${bpf.backendIp}:8080`]]) {
      const ag = timed(() => agentRequest(bpf, {op: 'add', frontend: `${VIP}:80/tcp`, backends}))
      add('pnAgentUpdateMs', ag.value.durationMs)
      add('pnAgentUpdateWallMs', ag.ms)
    }
    // The bare CLI: oclif start-up and the service command's module graph, no work.
    add('pnCliStartMs', timed(() => pn(['service', 'add', '--help'], {netns: bpf.node})).ms)
    // iptables has no incremental update of one DNAT rule through -restore without --noflush; one
    // `iptables -R` of the measured rule is its nearest "update one service".
    if (old) {
      pnRun(old, ['service', 'apply', '-'], '[]')
      const oa = timed(() => pnRun(old, ['service', 'apply', '-'], pnServices(n, old.backendIp)))
      add('oldApplyMs', oa.value.durationMs)
      add('oldApplyCliMs', oa.ms)
      for (const backends of [[`${old.backendIp}:8080`, `${old.backendIp}:8081`], [`${old.backendIp}:8080`]]) {
        const ou = timed(() => pnRun(old, ['service', 'add', `${VIP}:80/tcp`, ...backends.flatMap((b) => ['--backend', b])]))
        add('oldUpdateMs', ou.value.durationMs)
        add('oldUpdateCliMs', ou.ms)
      }
    }
    add('iptablesReplaceOneMs', timed(() => sh('ip', ['netns', 'exec', ipt.node, 'iptables-legacy', '-t', 'nat', '-R', 'KUBE-SERVICES', String(n), '-d', `${VIP}/32`, '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'DNAT', '--to-destination', `${ipt.backendIp}:8080`])).ms)
  }
  const med = Object.fromEntries(Object.entries(got).map(([k, xs]) => [k, r2(median(xs))]))
  const out = {
    services: n, rounds: PROGRAM_ROUNDS, mapOps, updateMapOps: updateOps, medians: med,
    ratios: {
      pnApplyOverIptables: r2(med.pnApplyMs / med.iptablesRestoreMs),
      pnApplyCliOverIptables: r2(med.pnApplyCliMs / med.iptablesRestoreMs),
      pnUpdateCliOverCliStart: r2(med.pnUpdateCliMs / med.pnCliStartMs),
      pnAgentUpdateOverCliUpdate: r2(med.pnAgentUpdateMs / med.pnUpdateMs),
      pnAgentApplyWallOverIptables: r2(med.pnAgentApplyWallMs / med.iptablesRestoreMs),
      ...(old ? {
        pnApplyOverOld: r2(med.pnApplyMs / med.oldApplyMs), pnApplyCliOverOld: r2(med.pnApplyCliMs / med.oldApplyCliMs),
        pnUpdateOverOld: r2(med.pnUpdateMs / med.oldUpdateMs), pnUpdateCliOverOld: r2(med.pnUpdateCliMs / med.oldUpdateCliMs),
      } : {}),
    },
    samples: Object.fromEntries(Object.entries(got).map(([k, xs]) => [k, xs.map(r2)])),
  }
  console.log(`programming 10,000 services (median of ${PROGRAM_ROUNDS}): pn apply ${med.pnApplyMs} ms in pn, ${med.pnApplyCliMs} ms CLI (${mapOps} map ops); iptables-legacy-restore ${med.iptablesRestoreMs} ms`)
  if (old) console.log(`earlier pn (${COMPARE}): apply ${med.oldApplyMs} ms in pn, ${med.oldApplyCliMs} ms CLI; one update ${med.oldUpdateMs} ms in pn, ${med.oldUpdateCliMs} ms CLI`)
  console.log(`one update in 10,000: pn ${med.pnUpdateMs} ms in pn, ${med.pnUpdateCliMs} ms CLI (${updateOps} map ops); bare CLI start ${med.pnCliStartMs} ms; iptables -R one rule ${med.iptablesReplaceOneMs} ms`)
  console.log(`programming 10,000 services through the node agent: ${med.pnAgentApplyMs} ms in the agent, ${med.pnAgentApplyWallMs} ms for the request`)
  console.log(`one update in 10,000 through the node agent: ${med.pnAgentUpdateMs} ms in the agent, ${med.pnAgentUpdateWallMs} ms for the request (native client exec'd under nsenter)`)
  return out
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root')
  ensureBpffs()
  sh('cc', ['-O2', '-o', path.join(tmp, 'probe'), PROBE_SRC])
  const bpf = await setup('p', 'bpf', 230)
  const ipt = await setup('i', 'host-routes', 231)
  const nft = await setup('n', 'host-routes', 232)
  const rows: Record<string, unknown>[] = []
  const programming: Record<string, unknown> = {}
  let memory: Record<string, number> = {}

  const old = COMPARE && PROGRAM_ROUNDS > 0 ? await setup('o', 'bpf', 233, path.resolve(COMPARE, 'bin/run.js')) : undefined
  if (PROGRAM_ROUNDS > 0) programming.rounds = programRounds(bpf, ipt, old)
  if (PROGRAM_ONLY) {
    const out = path.join(REPO_ROOT, 'bench/results')
    mkdirSync(out, {recursive: true})
    writeFileSync(path.join(out, 'services-program.json'), JSON.stringify({date: new Date().toISOString(), loadavg: os.loadavg(), programming}, null, 2) + '\n')
    console.log(`results: ${path.join(out, 'services-program.json')}`)
    return
  }

  const directs: Probe[] = []
  for (const n of COUNTS) {
    // pn: from an empty table to n services, timed.
    pnRun(bpf, ['service', 'apply', '-'], '[]')
    const applied = timed(() => pnRun(bpf, ['service', 'apply', '-'], pnServices(n, bpf.backendIp)))
    const iptRestore = timed(() => sh('ip', ['netns', 'exec', ipt.node, 'iptables-legacy-restore'], iptablesRules(n, ipt.backendIp)))
    writeFileSync(path.join(tmp, 'rules.nft'), nftRules(n, nft.backendIp))
    const nftLoad = timed(() => sh('ip', ['netns', 'exec', nft.node, 'nft', '-f', path.join(tmp, 'rules.nft')]))
    const p = probeRounds([
      ['pn', () => probe(bpf, VIP, 80)],
      ['iptables', () => probe(ipt, VIP, 80)],
      ['nftables', () => probe(nft, VIP, 80)],
      ['direct', () => probe(bpf, bpf.backendIp, 8080)],
    ])
    const {pn: pnLat, iptables: iptLat, nftables: nftLat} = p
    directs.push(p.direct)
    const row = {
      services: n,
      pn: pnLat, iptables: iptLat, nftables: nftLat, direct: p.direct,
      program: {pnApplyMs: r2(applied.value.durationMs), pnApplyWallMs: r2(applied.ms), pnMapOps: applied.value.mapOps, iptablesRestoreMs: r2(iptRestore.ms), nftMs: r2(nftLoad.ms)},
    }
    rows.push(row)
    console.log(`${String(n).padStart(6)} services  p50/p99 µs: pn ${pnLat.p50}/${pnLat.p99}  iptables ${iptLat.p50}/${iptLat.p99}  nftables ${nftLat.p50}/${nftLat.p99}  direct ${p.direct.p50}/${p.direct.p99}` +
      `  | program: pn apply ${r2(applied.value.durationMs)} ms (CLI ${r2(applied.ms)} ms, ${applied.value.mapOps} map ops), iptables-restore ${r2(iptRestore.ms)} ms, nft -f ${r2(nftLoad.ms)} ms`)
    if (pnLat.failures + iptLat.failures + nftLat.failures > 0) console.log(`  failures: pn ${pnLat.failures} iptables ${iptLat.failures} nftables ${nftLat.failures}`)
    if (n === 10_000) {
      // One update in the 10,000-service table: the measured service gets a second backend and back.
      const up = timed(() => pnRun(bpf, ['service', 'add', `${VIP}:80/tcp`, '--backend', `${bpf.backendIp}:8080`, '--backend', `${bpf.backendIp}:8081`]))
      const back = timed(() => pnRun(bpf, ['service', 'add', `${VIP}:80/tcp`, '--backend', `${bpf.backendIp}:8080`]))
      programming.update = {pnMs: r2(up.value.durationMs), pnWallMs: r2(up.ms), pnBackMs: r2(back.value.durationMs), mapOps: up.value.mapOps}
      console.log(`  one update in 10,000: pn ${r2(up.value.durationMs)} ms (CLI ${r2(up.ms)} ms), and back ${r2(back.value.durationMs)} ms`)
    }
    if (n === Math.max(...COUNTS)) memory = memlock(bpf)
  }
  const at = (n: number) => rows.find((r) => r.services === n) as {pn: Probe; iptables: Probe; nftables: Probe} | undefined
  let ratios: Record<string, unknown> = {}
  if (rows.length > 0) {
    const lo = at(Math.min(...COUNTS))!
    const hi = at(Math.max(...COUNTS))!
    const direct = {p50: median(directs.map((d) => d.p50)), p99: median(directs.map((d) => d.p99))}
    ratios = {
      pnHighVsLow_p50: r2(hi.pn.p50 / lo.pn.p50),
      pnHighVsDirect_p50: r2(hi.pn.p50 / direct.p50),
      pnHighVsLow_p99: r2(hi.pn.p99 / lo.pn.p99),
      pnHighVsDirect_p99: r2(hi.pn.p99 / direct.p99),
      perCount: rows.map((r) => {
        const x = r as {services: number; pn: Probe; iptables: Probe; nftables: Probe}
        return {services: x.services, iptablesOverPn_p50: r2(x.iptables.p50 / x.pn.p50), nftablesOverPn_p50: r2(x.nftables.p50 / x.pn.p50), iptablesOverPn_p99: r2(x.iptables.p99 / x.pn.p99), nftablesOverPn_p99: r2(x.nftables.p99 / x.pn.p99)}
      }),
    }
    console.log(`memory at ${Math.max(...COUNTS)} services (bytes_memlock): ${JSON.stringify(memory)}`)
    console.log(`ratios: ${JSON.stringify(ratios)}`)
  }
  const nodePort = nodePortRows(bpf, ipt, nft)
  const out = path.join(REPO_ROOT, 'bench/results')
  mkdirSync(out, {recursive: true})
  const direct = directs.length ? {p50: median(directs.map((d) => d.p50)), p99: median(directs.map((d) => d.p99))} : undefined
  writeFileSync(path.join(out, 'services.json'), JSON.stringify({date: new Date().toISOString(), samples: SAMPLES, rounds: ROUNDS, loadavg: os.loadavg(), direct, rows, programming, memory, ratios, nodePort}, null, 2) + '\n')
  console.log(`results: ${path.join(out, 'services.json')}`)
}

/**
 * NodePort from outside: for each of NODEPORT_COUNTS, the three nodes programmed with that many
 * services (min(N, 2,768) NodePort), then ROUNDS interleaved rounds of the outside client's
 * connect to nodeIP:nodePort on each, and to the backend pod directly on the pn node.
 */
function nodePortRows(bpf: Setup, ipt: Setup, nft: Setup): Record<string, unknown> | undefined {
  if (NODEPORT_COUNTS.length === 0) return undefined
  // The direct row: the outside reaches the pn node's pod CIDR through the node (from-netdev → the pod).
  inNs(bpf.outside, ['ip', 'route', 'replace', `${bpf.backendIp.replace(/\.\d+$/, '.0')}/24`, 'via', bpf.nodeIp])
  const rows: Record<string, unknown>[] = []
  for (const n of NODEPORT_COUNTS) {
    const port = measuredNodePort(n)
    pnRun(bpf, ['service', 'apply', '-'], '[]')
    const applied = timed(() => pnRun(bpf, ['service', 'apply', '-'], pnNodePortServices(n, bpf.backendIp)))
    const iptRestore = timed(() => sh('ip', ['netns', 'exec', ipt.node, 'iptables-legacy-restore'], iptablesNodePortRules(n, ipt.backendIp)))
    writeFileSync(path.join(tmp, 'nodeport.nft'), nftNodePortRules(n, nft.backendIp))
    const nftLoad = timed(() => sh('ip', ['netns', 'exec', nft.node, 'nft', '-f', path.join(tmp, 'nodeport.nft')]))
    const p = probeRounds([
      ['pn', () => probe(bpf, bpf.nodeIp, port, bpf.outside)],
      ['iptables', () => probe(ipt, ipt.nodeIp, port, ipt.outside)],
      ['nftables', () => probe(nft, nft.nodeIp, port, nft.outside)],
      ['direct', () => probe(bpf, bpf.backendIp, 8080, bpf.outside)],
    ])
    const row = {
      services: n, nodePortServices: nodePorts(n), nodePort: port,
      pn: p.pn, iptables: p.iptables, nftables: p.nftables, direct: p.direct,
      program: {pnApplyMs: r2(applied.value.durationMs), pnMapOps: applied.value.mapOps, iptablesRestoreMs: r2(iptRestore.ms), nftMs: r2(nftLoad.ms)},
      ratios: {
        iptablesOverPn_p50: r2(p.iptables.p50 / p.pn.p50), nftablesOverPn_p50: r2(p.nftables.p50 / p.pn.p50),
        iptablesOverPn_p99: r2(p.iptables.p99 / p.pn.p99), nftablesOverPn_p99: r2(p.nftables.p99 / p.pn.p99),
        pnOverDirect_p50: r2(p.pn.p50 / p.direct.p50),
      },
    }
    rows.push(row)
    console.log(`NodePort, ${String(n).padStart(6)} services (${nodePorts(n)} NodePort)  p50/p99 µs from outside: pn ${p.pn.p50}/${p.pn.p99}  iptables ${p.iptables.p50}/${p.iptables.p99}` +
      `  nftables ${p.nftables.p50}/${p.nftables.p99}  direct to the pod ${p.direct.p50}/${p.direct.p99}  | ratios ${JSON.stringify(row.ratios)}`)
    const failures = p.pn.failures + p.iptables.failures + p.nftables.failures + p.direct.failures
    if (failures > 0) console.log(`  failures: pn ${p.pn.failures} iptables ${p.iptables.failures} nftables ${p.nftables.failures} direct ${p.direct.failures}`)
  }
  return {from: 'outside namespace on the node uplink', externalTrafficPolicy: 'Cluster', backend: 'on the node', rows}
}

const agentNodes: Setup[] = []

function cleanup(): void {
  for (const a of agentNodes) spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), 'agent', 'stop', '--state-dir', a.stateDir], {stdio: 'ignore'})
  for (const c of children) if (c.pid && c.exitCode === null) c.kill()
  for (const n of nodes) spawnSync('ip', ['netns', 'exec', n.ns, process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'node', 'reset', '--state-dir', n.stateDir], {stdio: 'ignore'})
  for (const n of nodes) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  cleanupNamespaces()
  rmSync(tmp, {recursive: true, force: true})
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup()
    process.exit(130)
  })
}

main().then(cleanup, (err) => {
  cleanup()
  console.error(err)
  process.exitCode = 1
})
