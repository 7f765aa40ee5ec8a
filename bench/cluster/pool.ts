/**
 * Cluster pool on etcd: `node dist/bench/cluster/pool.js [--allocs N] [--clients N] [--cli N] [--rounds N] [--compare DIR] [--old-pn PATH]`.
 * One etcd on 127.0.0.1 (free ports, data in a temp dir), started here and stopped by its pid.
 * 1. In process: N allocations (default 1,000) from C concurrent clients (default 50), each
 *    client its own pool object with its own etcd3 client kept open, each allocating N/C nodes
 *    one after another; per-allocation latency p50/p99/max over all of them and over each
 *    client's allocations after its first (the first also connects, reads the pool and starts
 *    with every other client at once), duplicates (must be 0), retries (claim transactions that
 *    lost every candidate: one more round trip each) and candidates found taken inside a
 *    transaction (no extra round trip). A warm-up of 200 allocations, not reported, goes first.
 *    With --compare DIR (the root of another built pn, e.g. a copy of an earlier build: its
 *    compiled pool-etcd.js under dist), that build's per-key pool and this one run alternately,
 *    twice each, under other prefixes of the same etcd: before and after in the same machine
 *    state. Then the single-key layout of earlier pn (one JSON value, compare-and-swap).
 * 2. CLI, once etcd is idle again (the single key's abandoned calls finish first): K concurrent
 *    `pn pool alloc` processes (default 20), `--rounds` times, beside K concurrent `pn pool show`
 *    (the same start-up and CPU contention, no write), K processes that each make one allocation
 *    without the CLI (both layouts) and, with --old-pn (an earlier build's bin/run.js), K
 *    concurrent allocations by that build; each round runs every kind in turn (every other round
 *    in reverse), so that all of them see the same load, after one round of the first kind that
 *    is not reported.
 * Prints a table with the load average at start and end, and writes bench/results/pool.json.
 */
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {allocatePodCidrs, initPool, listPool, singleKeyEtcdPool, type PoolRef} from '../../src/ipam/pool.js'
import {EtcdPool} from '../../src/ipam/pool-etcd.js'
import {TestEtcd} from '../../test/helpers/etcd.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const PN_BIN = path.join(REPO, 'bin/run.js')
const ONCE = path.join(REPO, 'dist/bench/cluster/alloc-once.js')

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const ALLOCS = arg('--allocs', 1000)
const CLIENTS = arg('--clients', 50)
const CLI = arg('--cli', 20)
const ROUNDS = arg('--rounds', 2)
const sarg = (name: string) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : undefined
}
const OLD_PN = sarg('--old-pn')
const COMPARE = sarg('--compare')

interface Stats {
  n: number
  p50: number
  p99: number
  max: number
}

function stats(ms: number[]): Stats {
  const s = [...ms].sort((a, b) => a - b)
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]
  return {n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1]}
}

interface InProcess {
  layout: string
  allocs: number
  failed: number
  inPool: number
  duplicates: number
  /** Per-key only: transactions that lost every candidate (or, before candidates, their one block), and candidates found taken in a transaction. */
  retries?: number
  taken?: number
  /** CPU spent during the run by this process (the clients) and by etcd. */
  cpuMs: {bench: number; etcd: number}
  wallMs: number
  perAlloc: Stats
  /** Each client's allocations after its first (which also connects, reads the pool, and starts with all the others at once). */
  afterFirst: Stats
  /** The load average when the run ended. */
  load: number
}

/** C clients, each allocating its share of nodes one after another; every latency recorded. */
type Opened = PoolRef & {close(): Promise<void>; stats?: {retries?: number; conflicts?: number; taken?: number}}

async function inProcess(layout: string, open: () => Opened, allocs = ALLOCS): Promise<InProcess> {
  const admin = open()
  await initPool(admin, {cidrs: ['10.0.0.0/8'], maskSize: 24})
  const per = Math.ceil(allocs / CLIENTS)
  const later: number[] = []
  const ms: number[] = []
  const cidrs: string[] = []
  let failed = 0
  let retries = 0
  let taken: number | undefined
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const etcd0 = etcdCpu()
  await Promise.all(
    Array.from({length: CLIENTS}, async (_, c) => {
      const pool = open()
      for (let i = 0; i < per && c * per + i < allocs; i++) {
        const s = performance.now()
        try {
          cidrs.push(...(await allocatePodCidrs(pool, `c${c}-n${i}`)).cidrs)
          ms.push(performance.now() - s)
          if (i > 0) later.push(performance.now() - s)
        } catch (err) {
          failed++
          if (failed <= 3) process.stderr.write(`${layout}: ${(err as Error).message}\n`)
        }
      }
      // An earlier build counted `conflicts` (each one more round trip) and had no `taken`.
      if (pool.stats) {
        retries += pool.stats.retries ?? pool.stats.conflicts ?? 0
        if (pool.stats.taken !== undefined) taken = (taken ?? 0) + pool.stats.taken
      }
      await pool.close()
    }),
  )
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const etcdCpuMs = etcdCpu() - etcd0
  const listed = (await listPool(admin)).nodes
  await admin.close()
  const duplicates = cidrs.length - new Set(cidrs).size + (listed.length - new Set(listed.flatMap((n) => n.cidrs)).size)
  // An allocation that hit its deadline may still have committed: the pool is the truth.
  return {layout, allocs: cidrs.length, failed, inPool: listed.length, duplicates, cpuMs: {bench: (cpu.user + cpu.system) / 1000, etcd: etcdCpuMs}, ...(layout.startsWith('per-key') ? {retries, ...(taken === undefined ? {} : {taken})} : {}), wallMs, perAlloc: stats(ms), afterFirst: stats(later), load: loadavg()[0]}
}

function runCli(bin: string, args: string[]): Promise<{ms: number; ok: boolean; out: string}> {
  return new Promise((resolve) => {
    const s = performance.now()
    const argv = bin === ONCE ? [bin, ...args] : [bin, ...args, '--json']
    const child = spawn(process.execPath, argv, {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('exit', (code) => resolve({ms: performance.now() - s, ok: code === 0, out}))
  })
}

interface CliRow {
  what: string
  processes: number
  failed: number
  duplicates: number
  perProcess: Stats
  /** Each round's, in the order run (successful or not). */
  perRound: Stats[]
}

interface CliSpec {
  what: string
  bin: string
  location: string
  args: (i: number, r: number) => string[]
  init?: () => Promise<unknown>
}

/** K processes at once per round; each round runs every spec in turn (every other round in reverse), so that all see the same load as it changes. */
async function cliRounds(specs: CliSpec[]): Promise<CliRow[]> {
  for (const spec of specs) if (spec.init) await spec.init()
  // Not reported: the first round after the in-process part ran slower for whichever kind went
  // first (one process 0.5 to 1.5 s slower than any in later rounds), so one round of the first kind goes before.
  await Promise.all(Array.from({length: CLI}, (_, i) => runCli(specs[0].bin, specs[0].bin === ONCE ? specs[0].args(i, -1) : [...specs[0].args(i, -1), '--pool', specs[0].location])))
  const acc = specs.map(() => ({ms: [] as number[], cidrs: [] as string[], failed: 0, rounds: [] as Stats[]}))
  for (let r = 0; r < ROUNDS; r++) {
    // Every other round in reverse, so that no kind always runs first (after the in-process part) or last.
    const order = [...specs.keys()]
    if (r % 2 === 1) order.reverse()
    for (const k of order) {
      const {bin, location, args} = specs[k]
      const runs = await Promise.all(Array.from({length: CLI}, (_, i) => runCli(bin, bin === ONCE ? args(i, r) : [...args(i, r), '--pool', location])))
      acc[k].rounds.push(stats(runs.map((x) => x.ms)))
      for (const x of runs) {
        if (!x.ok) {
          acc[k].failed++
          continue
        }
        acc[k].ms.push(x.ms)
        const c = JSON.parse(x.out).result?.cidrs
        if (Array.isArray(c)) acc[k].cidrs.push(...c)
      }
    }
  }
  return specs.map((spec, k) => ({what: spec.what, processes: CLI * ROUNDS, failed: acc[k].failed, duplicates: acc[k].cidrs.length - new Set(acc[k].cidrs).size, perProcess: stats(acc[k].ms), perRound: acc[k].rounds}))
}

let etcdPid = 0
/** etcd's CPU time so far (ms), from /proc. */
function etcdCpu(): number {
  const fields = readFileSync(`/proc/${etcdPid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

/** Until etcd spends under 5 % of a CPU over half a second (at most 15 s). */
async function etcdIdle(): Promise<void> {
  const end = Date.now() + 15_000
  for (let before = etcdCpu(); Date.now() < end; ) {
    await new Promise((r) => setTimeout(r, 500))
    const now = etcdCpu()
    if (now - before < 25) return
    before = now
  }
}

const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pn-bench-pool-'))
  const etcd = new TestEtcd(dir, {prefix: '/bench-new'})
  await etcd.start()
  etcdPid = etcd.child!.pid!
  try {
    const base = `etcd://127.0.0.1:${etcd.clientPort}`
    const loadStart = loadavg()
    console.log(`load average ${loadStart.map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs`)
    console.log(`etcd ${base} (pid ${etcd.child!.pid}); ${ALLOCS} allocations from ${CLIENTS} clients in process (each its own etcd3 client, kept open), ${CLI} concurrent CLI processes x ${ROUNDS} rounds`)
    // Not reported: the first run in a process pays for loading and compiling the client code.
    await inProcess('warm-up', () => new EtcdPool(`${base}/bench-warm`, {keepOpen: true}), 200)
    const rows: InProcess[] = []
    if (COMPARE) {
      const mod = (await import(path.resolve(COMPARE, 'dist/src/ipam/pool-etcd.js'))) as {EtcdPool: new (location: string, opts: {keepOpen: boolean}) => Opened}
      for (let r = 0; r < 2; r++) {
        rows.push(await inProcess(`per-key (${path.basename(path.resolve(COMPARE))})`, () => new mod.EtcdPool(`${base}/bench-cmp${r}`, {keepOpen: true})))
        rows.push(await inProcess('per-key (this pn)', () => new EtcdPool(`${base}/bench-new${r}`, {keepOpen: true})))
      }
    } else {
      rows.push(await inProcess('per-key (this pn)', () => new EtcdPool(`${base}/bench-new`, {keepOpen: true})))
    }
    const single = await inProcess('single key, CAS (earlier pn)', () => singleKeyEtcdPool(`${base}/bench-old`, {keepOpen: true}))
    // The single key's compare-and-swap calls that ran out of their deadline are still queued in
    // etcd: let it finish them, so that the first CLI round does not pay for them.
    await etcdIdle()
    const cliInit = (bin: string, location: string) => async () => {
      const r = await runCli(bin, ['pool', 'init', '--cidr', '10.0.0.0/8', '--mask-size', '24', '--pool', location])
      if (!r.ok) throw new Error(`pool init ${location} failed: ${r.out}`)
    }
    const libInit = (pool: PoolRef & {close(): Promise<void>}) => async () => {
      await initPool(pool, {cidrs: ['10.0.0.0/8'], maskSize: 24})
      await pool.close()
    }
    const cli = await cliRounds([
      {what: 'pn pool alloc (per-key)', bin: PN_BIN, location: `${base}/cli-new`, args: (i, r) => ['pool', 'alloc', `r${r}-n${i}`], init: cliInit(PN_BIN, `${base}/cli-new`)},
      ...(OLD_PN ? [{what: `pn pool alloc (${OLD_PN})`, bin: OLD_PN, location: `${base}/cli-old`, args: (i: number, r: number) => ['pool', 'alloc', `r${r}-n${i}`], init: cliInit(OLD_PN, `${base}/cli-old`)}] : []),
      {what: 'pn pool show (no write)', bin: PN_BIN, location: `${base}/cli-new`, args: () => ['pool', 'show']},
      {what: 'process per alloc, no CLI: per-key', bin: ONCE, location: '', args: (i, r) => ['per-key', `${base}/once-new`, `r${r}-n${i}`], init: libInit(new EtcdPool(`${base}/once-new`))},
      {what: 'process per alloc, no CLI: single key', bin: ONCE, location: '', args: (i, r) => ['single-key', `${base}/once-old`, `r${r}-n${i}`], init: libInit(singleKeyEtcdPool(`${base}/once-old`))},
    ])

    console.log('\nin process, per allocation (ms):')
    console.log('layout                          allocs  failed  in pool  dup  retries  taken   p50     p99     max    wall s   after each client\'s first: p50   p99    load')
    for (const r of [...rows, single]) {
      console.log(`${r.layout.padEnd(30)} ${String(r.allocs).padStart(6)}  ${String(r.failed).padStart(6)}  ${String(r.inPool).padStart(7)}  ${String(r.duplicates).padStart(3)}  ${String(r.retries ?? '-').padStart(7)}  ${String(r.taken ?? '-').padStart(5)}  ${f(r.perAlloc.p50).padStart(6)}  ${f(r.perAlloc.p99).padStart(6)}  ${f(r.perAlloc.max).padStart(6)}  ${(r.wallMs / 1000).toFixed(1).padStart(6)}   ${f(r.afterFirst.p50).padStart(32)}  ${f(r.afterFirst.p99).padStart(5)}  ${r.load.toFixed(1).padStart(5)}   cpu: clients ${(r.cpuMs.bench / 1000).toFixed(1)} s, etcd ${(r.cpuMs.etcd / 1000).toFixed(1)} s`)
    }
    console.log(`\nCLI, ${CLI} processes at once, per process (ms):`)
    for (const r of cli) {
      console.log(`${r.what.padEnd(48)} n=${r.processes} failed=${r.failed} dup=${r.duplicates}  p50 ${f(r.perProcess.p50)}  p99 ${f(r.perProcess.p99)}  max ${f(r.perProcess.max)}   max by round: ${r.perRound.map((x) => f(x.max)).join(' ')}`)
    }
    const results = path.join(REPO, 'bench/results')
    if (!existsSync(results)) mkdirSync(results, {recursive: true})
    const loadEnd = loadavg()
    console.log(`load average ${loadEnd.map((l) => l.toFixed(1)).join(' ')}`)
    writeFileSync(path.join(results, 'pool.json'), JSON.stringify({loadavg: {start: loadStart, end: loadEnd}, allocs: ALLOCS, clients: CLIENTS, cliProcesses: CLI, rounds: ROUNDS, inProcess: [...rows, single], cli}, null, 2) + '\n')
    if (rows.some((r) => r.duplicates !== 0) || single.duplicates !== 0 || cli.some((r) => r.duplicates !== 0)) throw new Error('duplicate CIDRs')
  } finally {
    await etcd.stop('SIGTERM')
    rmSync(dir, {recursive: true, force: true})
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
