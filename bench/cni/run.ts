/**
 * CNI benchmark: ADD and DEL wall time as a runtime sees it (one plugin process per call, exec'd
 * inside the node's netns), in one run, for
 *   - pn standalone: what a runtime runs on a node without an agent, the native client
 *     dist/native/pn-cni finding no agent and running pn-cni (Node) itself, with its helpers;
 *   - pn-cni run directly (node bin/pn-cni, which then starts its own helpers): `standalone-node`;
 *   - pn with its node agent (the native client dist/native/pn-cni → `pn agent` on the node),
 *   - the same agent with --no-kernel-worker (every ip/tc/bpftool line a process; sequential only),
 *   - the CNI reference plugins ptp + host-local (Debian containernetworking-plugins),
 * on the same node netns, pn in routing mode bpf (veth + endpoint + BPF attach + map entries).
 *  (a) sequential ADD+DEL cycles, interleaved plugin by plugin, on pod netns prepared in advance:
 *      median and p95 per ADD, per DEL, per cycle, ratios against the reference;
 *  (b) burst: N ADDs started at once, then N DELs: total wall time and per-pod p50/p95/max;
 *  (c) agent memory: RSS over M ADD/DEL cycles, first and last hundred, the peak of each half.
 * Results go to bench/results/cni.json (git-ignored).
 *   node dist/bench/cni/run.js
 *   PN_BENCH_CYCLES=50 PN_BENCH_BURST=100 PN_BENCH_MEM_CYCLES=1000 (defaults)
 * PN_BENCH_COMPARE=DIR adds another pn checkout (built, e.g. a `git worktree` of an earlier
 * commit) as a fourth plugin (its standalone path) on its own node, interleaved in (a).
 * PN_BENCH_ONLY=agent,reference runs only the named plugins (the reference always; quick checks).
 * Each agent request's time is split (src/agent/timing.ts: the agent logs it per request) into
 * client (the native client's process, connect and sending, and reading the answer: the call's
 * wall time less the agent's), read, queue, locks, kernel (worker round trips), fsync (state
 * writes) and other; the medians per ADD and per DEL are printed for the sequential cycles and
 * the burst.
 * PN_BENCH_LOAD=N runs N busy loops (one `sh` each, killed by pid at the end) beside the whole run:
 * the loaded run whose figures go beside the quiet one's (N=2 keeps both CPUs of a 2-CPU machine busy).
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {parseSplit, type TimingSplit} from '../../src/agent/timing.js'
import {REPO_ROOT} from '../../test/helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../../test/helpers/netns.js'

const CYCLES = Number(process.env.PN_BENCH_CYCLES ?? 50)
const BURST = Number(process.env.PN_BENCH_BURST ?? 100)
const MEM_CYCLES = Number(process.env.PN_BENCH_MEM_CYCLES ?? 1000)
const BPFFS = '/run/pn/bpffs'
const CNI_BIN = '/usr/lib/cni'
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-cni-'))

function ensureBpffs(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
}

interface Plugin {
  name: string
  node: string
  cmd: string[]
  conf: object
}

function envOf(env: Record<string, string>): NodeJS.ProcessEnv {
  return {PATH: process.env.PATH, CNI_PATH: CNI_BIN, CNI_IFNAME: 'eth0', CNI_ARGS: '', ...env}
}

/** One plugin call inside the node netns (nsenter: the runtime's own netns is the node's). */
function call(p: Plugin, env: Record<string, string>): number {
  const started = process.hrtime.bigint()
  const r = spawnSync('nsenter', [`--net=/run/netns/${p.node}`, '--', ...p.cmd], {env: envOf(env), input: JSON.stringify(p.conf), encoding: 'utf8'})
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  if (r.status !== 0) throw new Error(`${p.name} ${env.CNI_COMMAND}: ${r.stdout} ${r.stderr}`)
  return ms
}

/** The same call without waiting (for bursts): its wall time, and the CNI error code of a failure. */
function callAsync(p: Plugin, env: Record<string, string>): Promise<{ms: number; failed?: string}> {
  const started = process.hrtime.bigint()
  return new Promise((resolve) => {
    const c = spawn('nsenter', [`--net=/run/netns/${p.node}`, '--', ...p.cmd], {env: envOf(env)})
    let out = ''
    c.stdout.on('data', (d) => (out += d))
    c.stderr.on('data', (d) => (out += d))
    c.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6
      // A burst keeps going past failures (a runtime retries them): they are counted, by CNI code.
      resolve(code === 0 ? {ms} : {ms, failed: /"code": *(\d+)/.exec(out)?.[1] ?? `exit ${code}`})
    })
    c.stdin.end(JSON.stringify(p.conf))
  })
}

function stats(xs: number[]) {
  // PN_BENCH_BURST=0 / PN_BENCH_MEM_CYCLES=0 skip those parts: their figures are then 0.
  if (xs.length === 0) return {n: 0, median: 0, p95: 0, max: 0}
  const s = [...xs].sort((a, b) => a - b)
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]
  const r = (x: number) => Number(x.toFixed(2))
  return {n: s.length, median: r(q(0.5)), p95: r(q(0.95)), max: r(s[s.length - 1])}
}

/** A node netns with an uplink stub, initialised by the pn checkout at `repo`. */
function makeNode(repo: string, cidr: string, stateDir: string): string {
  const node = createNamespace('agbn').name
  nodes.push({ns: node, repo, stateDir})
  const stub = createNamespace('agbu').name
  inNs(node, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', stub])
  inNs(node, ['ip', 'link', 'set', 'eth0', 'up'])
  const init = spawnSync('ip', ['netns', 'exec', node, process.execPath, path.join(repo, 'bin/run.js'), 'node', 'init', '--name', node, '--device', 'eth0',
    '--pod-cidr', cidr, '--bpffs-root', `${BPFFS}/${node}`, '--state-dir', stateDir, '--json'], {encoding: 'utf8'})
  if (init.status !== 0) throw new Error(`pn node init (${repo}): ${init.stdout} ${init.stderr}`)
  return node
}

function startAgent(node: string, dir: string, extra: string[] = []): number {
  agentDirs.push(dir)
  const r = spawnSync('ip', ['netns', 'exec', node, process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'agent', 'start', '--state-dir', dir, ...extra, '--json'], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`pn agent start: ${r.stdout} ${r.stderr}`)
  return JSON.parse(r.stdout).result.pid as number
}

function rssKb(pid: number): {rss: number; hwm: number} {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0)
  return {rss: kb('VmRSS'), hwm: kb('VmHWM')}
}

const ratio = (a: number, b: number) => Number((a / b).toFixed(2))

/** The agent's split of each request (its log lines), by `<command> <container id>`. */
function agentSplits(stateDir: string): Map<string, TimingSplit> {
  const out = new Map<string, TimingSplit>()
  let text = ''
  try {
    text = readFileSync(path.join(stateDir, 'agent.log'), 'utf8')
  } catch {
    return out
  }
  for (const line of text.split('\n')) {
    const m = / (ADD|DEL) (\S+):eth0 exit 0 after /.exec(line)
    const split = m && parseSplit(line)
    if (m && split) out.set(`${m[1]} ${m[2]}`, split)
  }
  return out
}

const SPLIT_FIELDS = ['client', 'read', 'queue', 'locks', 'kernel', 'fsync', 'other', 'total', 'lockCalls', 'kernelCalls', 'fsyncs'] as const
type SplitSummary = Record<(typeof SPLIT_FIELDS)[number], number> & {n: number}

/** Medians of each part over the calls (wall times `ms`, by container id) the agent logged. */
function summarizeSplits(splits: Map<string, TimingSplit>, command: string, calls: {cid: string; ms: number}[]): SplitSummary {
  const rows = calls.flatMap(({cid, ms}) => {
    const s = splits.get(`${command} ${cid}`)
    return s ? [{...s, client: ms - s.total, total: ms}] : []
  })
  const med = (xs: number[]) => stats(xs).median
  return {n: rows.length, ...Object.fromEntries(SPLIT_FIELDS.map((f) => [f, med(rows.map((r) => r[f]))]))} as SplitSummary
}

function printSplit(what: string, s: SplitSummary): void {
  console.log(`${what.padEnd(24)} ${[s.client, s.read, s.queue, s.locks, s.kernel, s.fsync, s.other, s.total].map((x) => x.toFixed(2).padStart(7)).join(' ')}   ${s.lockCalls}/${s.kernelCalls}/${s.fsyncs}  (n=${s.n})`)
}

async function main(): Promise<void> {
  console.log(`load average at the start: ${loadAverageAtStart.join(' ')}`)
  ensureBpffs()
  const compare = process.env.PN_BENCH_COMPARE ? path.resolve(process.env.PN_BENCH_COMPARE) : undefined
  // A /20: the burst holds BURST pods of each pn plugin at once.
  const node = makeNode(REPO_ROOT, '10.97.0.0/20', stateDir)
  const agentPid = startAgent(node, stateDir)
  // The agent without its kernel worker (a process per ip/tc/bpftool command) on a node of its
  // own: the same-run before/after of the worker, in the sequential cycles only.
  const spawnState = path.join(tmp, 'state-spawn')
  const spawnNode = makeNode(REPO_ROOT, '10.97.16.0/20', spawnState)
  startAgent(spawnNode, spawnState, ['--no-kernel-worker'])
  // A node with no agent: the client's standalone path.
  const soloState = path.join(tmp, 'state-solo')
  const soloNode = makeNode(REPO_ROOT, '10.97.32.0/20', soloState)
  const pnConf = {cniVersion: '1.0.0', name: 'pnbench', type: 'pn', stateDir}
  const plugins: Plugin[] = [
    {name: 'standalone', node: soloNode, cmd: [path.join(REPO_ROOT, 'dist/native/pn-cni')], conf: {...pnConf, stateDir: soloState}},
    {name: 'standalone-node', node, cmd: [process.execPath, path.join(REPO_ROOT, 'bin/pn-cni')], conf: pnConf},
    {name: 'agent', node, cmd: [path.join(REPO_ROOT, 'dist/native/pn-cni')], conf: pnConf},
    {name: 'agent-no-worker', node: spawnNode, cmd: [path.join(REPO_ROOT, 'dist/native/pn-cni')], conf: {...pnConf, stateDir: spawnState}},
    {name: 'reference', node, cmd: [path.join(CNI_BIN, 'ptp')], conf: {cniVersion: '1.0.0', name: 'ptpbench', type: 'ptp', ipam: {type: 'host-local', subnet: '10.98.0.0/20', dataDir: path.join(tmp, 'host-local')}}},
  ]
  const only = process.env.PN_BENCH_ONLY?.split(',')
  if (only) for (let i = plugins.length - 1; i >= 0; i--) if (plugins[i].name !== 'reference' && !only.includes(plugins[i].name)) plugins.splice(i, 1)
  if (compare) {
    const baseState = path.join(tmp, 'state-compare')
    const baseNode = makeNode(compare, '10.96.0.0/20', baseState)
    plugins.push({name: 'compare', node: baseNode, cmd: [process.execPath, path.join(compare, 'bin/pn-cni')], conf: {cniVersion: '1.0.0', name: 'pnbase', type: 'pn', stateDir: baseState}})
  }

  // (a) sequential cycles on pod namespaces prepared in advance, interleaved plugin by plugin.
  const pods = plugins.map(() => Array.from({length: CYCLES}, () => createNamespace('agbp').name))
  const seq: Record<string, {add: number[]; del: number[]; cycle: number[]}> = Object.fromEntries(plugins.map((p) => [p.name, {add: [], del: [], cycle: []}]))
  for (let i = 0; i < CYCLES; i++) {
    for (const [j, p] of plugins.entries()) {
      const env = {CNI_CONTAINERID: `${p.name}-seq-${i}`, CNI_NETNS: `/run/netns/${pods[j][i]}`}
      const a = call(p, {...env, CNI_COMMAND: 'ADD'})
      const d = call(p, {...env, CNI_COMMAND: 'DEL'})
      seq[p.name].add.push(a)
      seq[p.name].del.push(d)
      seq[p.name].cycle.push(a + d)
    }
  }
  for (const list of pods) for (const ns of list) spawnSync('ip', ['netns', 'del', ns])
  const sequential = Object.fromEntries(plugins.map((p) => [p.name, {add: stats(seq[p.name].add), del: stats(seq[p.name].del), cycle: stats(seq[p.name].cycle)}]))
  const ref = sequential.reference
  // Ratios of the medians, and the median of the per-round ratios (each cycle against the
  // reference's cycle of the same round: steadier when the machine's speed drifts during the run).
  const ratios = Object.fromEntries(plugins.filter((p) => p.name !== 'reference').map((p) => [p.name, {
    add: ratio(sequential[p.name].add.median, ref.add.median),
    del: ratio(sequential[p.name].del.median, ref.del.median),
    cycle: ratio(sequential[p.name].cycle.median, ref.cycle.median),
    cyclePerRound: stats(seq[p.name].cycle.map((c, i) => c / seq.reference.cycle[i])).median,
  }]))

  // The agent's own split of those calls (its log), per ADD and per DEL: medians of each part.
  const split: Record<string, SplitSummary> = {}
  for (const [name, dir] of [['agent', stateDir], ['agent-no-worker', spawnState]] as const) {
    if (!seq[name]) continue
    const logged = agentSplits(dir)
    for (const command of ['ADD', 'DEL'] as const) {
      const ms = command === 'ADD' ? seq[name].add : seq[name].del
      split[`${name} ${command}`] = summarizeSplits(logged, command, ms.map((x, i) => ({cid: `${name}-seq-${i}`, ms: x})))
    }
  }

  // (b) bursts: BURST ADDs at once, then BURST DELs, one plugin at a time.
  const burst: Record<string, unknown> = {}
  for (const p of plugins.filter((x) => !['compare', 'agent-no-worker', 'standalone-node'].includes(x.name) && BURST > 0)) {
    const bpods = Array.from({length: BURST}, () => createNamespace('agbb').name)
    const envs = bpods.map((ns, i) => ({CNI_CONTAINERID: `${p.name}-burst-${i}`, CNI_NETNS: `/run/netns/${ns}`}))
    let t0 = Date.now()
    const addCalls = await Promise.all(envs.map((e) => callAsync(p, {...e, CNI_COMMAND: 'ADD'})))
    const addWall = Date.now() - t0
    t0 = Date.now()
    const delCalls = await Promise.all(envs.map((e) => callAsync(p, {...e, CNI_COMMAND: 'DEL'})))
    const delWall = Date.now() - t0
    for (const ns of bpods) spawnSync('ip', ['netns', 'del', ns])
    const failures = (calls: {failed?: string}[]) => calls.filter((c) => c.failed).map((c) => c.failed!)
    if (p.name === 'agent') {
      const logged = agentSplits(stateDir)
      split['agent burst ADD'] = summarizeSplits(logged, 'ADD', addCalls.map((c, i) => ({cid: envs[i].CNI_CONTAINERID, ms: c.ms})))
      split['agent burst DEL'] = summarizeSplits(logged, 'DEL', delCalls.map((c, i) => ({cid: envs[i].CNI_CONTAINERID, ms: c.ms})))
    }
    const a = stats(addCalls.map((c) => c.ms))
    burst[p.name] = {pods: BURST, addWallMs: addWall, delWallMs: delWall, totalWallMs: addWall + delWall, add: a, del: stats(delCalls.map((c) => c.ms)),
      addMaxOverMedian: ratio(a.max, a.median), addFailures: failures(addCalls), delFailures: failures(delCalls)}
    console.log(`burst ${p.name}: ${BURST} ADDs in ${addWall} ms (${failures(addCalls).length} failed), ${BURST} DELs in ${delWall} ms (${failures(delCalls).length} failed)`)
  }

  // (c) agent memory over MEM_CYCLES ADD/DEL cycles on one pod netns.
  const agent = plugins.find((p) => p.name === 'agent')
  const memPod = createNamespace('agbm').name
  const samples: number[] = []
  const before = rssKb(agentPid)
  for (let i = 0; agent && i < MEM_CYCLES; i++) {
    const env = {CNI_CONTAINERID: `agent-mem-${i}`, CNI_NETNS: `/run/netns/${memPod}`}
    call(agent, {...env, CNI_COMMAND: 'ADD'})
    call(agent, {...env, CNI_COMMAND: 'DEL'})
    samples.push(rssKb(agentPid).rss)
  }
  const first = samples.slice(0, 100)
  const last = samples.slice(-100)
  // The RSS of a Node process is a sawtooth: the heap grows until a major GC, then drops. Two
  // windows of 100 cycles can land on different phases of it, so growth is judged on the peaks
  // of the two halves of the run (a leak lifts the second half's peak) as well as the medians.
  const half = Math.floor(samples.length / 2)
  const peak = (xs: number[]) => (xs.length ? Math.max(...xs) : 0)
  const memory = {
    cycles: MEM_CYCLES,
    rssKbAtStart: before.rss,
    firstHundredKb: stats(first),
    lastHundredKb: stats(last),
    peakKb: rssKb(agentPid).hwm,
    lastOverFirst: ratio(stats(last).median, stats(first).median),
    firstHalfPeakKb: peak(samples.slice(0, half)),
    secondHalfPeakKb: peak(samples.slice(half)),
    secondOverFirstHalfPeak: ratio(peak(samples.slice(half)), peak(samples.slice(0, half))),
  }

  const results = {cycles: CYCLES, load: LOAD, loadAverageAtStart, sequential, ratios, burst, split, memory, ...(compare ? {compare: {repo: compare}} : {})}
  console.log(`CNI ADD/DEL wall time per call, ${CYCLES} sequential cycles each, interleaved (ms)`)
  console.log('what                   ADD p50  ADD p95  DEL p50  DEL p95  cycle p50  cycle p95')
  for (const p of plugins) {
    const r = sequential[p.name]
    console.log(`${p.name.padEnd(20)} ${[r.add.median, r.add.p95, r.del.median, r.del.p95].map((x) => String(x).padStart(8)).join(' ')} ${String(r.cycle.median).padStart(10)} ${String(r.cycle.p95).padStart(10)}`)
  }
  for (const [name, r] of Object.entries(ratios)) console.log(`ratio ${name}/reference: ADD ${r.add}x, DEL ${r.del}x, cycle ${r.cycle}x (median per round ${r.cyclePerRound}x)`)
  for (const [name, b] of Object.entries(burst) as [string, {totalWallMs: number; add: ReturnType<typeof stats>; del: ReturnType<typeof stats>; addFailures: string[]}][]) {
    console.log(`burst ${name}: total ${b.totalWallMs} ms (x${ratio(b.totalWallMs, (burst.reference as {totalWallMs: number}).totalWallMs)} reference); ADD p50 ${b.add.median} p95 ${b.add.p95} max ${b.add.max} (max/p50 ${ratio(b.add.max, b.add.median)}); DEL p50 ${b.del.median} p95 ${b.del.p95} max ${b.del.max}; ADD failures ${b.addFailures.length} [${b.addFailures.join(',')}]`)
  }
  console.log('agent time per call, medians (ms): client = wall time less the agent\'s; counts: lock calls/kernel calls/fsyncs')
  console.log('what                      client    read   queue   locks  kernel   fsync   other   total   counts')
  for (const [what, sp] of Object.entries(split)) printSplit(what, sp)
  console.log(`agent memory over ${MEM_CYCLES} cycles: RSS first 100 median ${memory.firstHundredKb.median} kB, last 100 median ${memory.lastHundredKb.median} kB (x${memory.lastOverFirst}); peak of the first half ${memory.firstHalfPeakKb} kB, of the second half ${memory.secondHalfPeakKb} kB (x${memory.secondOverFirstHalfPeak}); VmHWM ${memory.peakKb} kB`)
  const out = path.join(REPO_ROOT, 'bench/results/cni.json')
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n')
  console.log(`wrote ${out}`)
}

const LOAD = Number(process.env.PN_BENCH_LOAD ?? 0)
const loadAverageAtStart = os.loadavg().map((x) => Number(x.toFixed(2)))
const loaders = Array.from({length: LOAD}, () => spawn('sh', ['-c', 'while :; do :; done'], {stdio: 'ignore'}))
if (LOAD > 0) console.log(`load: ${LOAD} busy loop(s) beside the run (pids ${loaders.map((c) => c.pid).join(' ')})`)

const nodes: {ns: string; repo: string; stateDir: string}[] = []
const agentDirs: string[] = []
const stateDir = path.join(tmp, 'state')

function cleanup(): void {
  for (const c of loaders) c.kill('SIGKILL')
  for (const dir of agentDirs) spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/run.js'), 'agent', 'stop', '--state-dir', dir, '--json'])
  // Each build's own reset unloads its node's programs and removes its pins; then the namespaces go.
  for (const n of nodes) {
    spawnSync('ip', ['netns', 'exec', n.ns, process.execPath, path.join(n.repo, 'bin/run.js'), 'node', 'reset', '--state-dir', n.stateDir, '--json'])
  }
  cleanupNamespaces()
  rmSync(tmp, {recursive: true, force: true})
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })
}

try {
  await main()
} finally {
  cleanup()
}
