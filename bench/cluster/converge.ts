/**
 * Cluster convergence, simulated: `node dist/bench/cluster/converge.js [--agents 100,500] [--changes N] [--pods N] [--services N] [--per-client K]`.
 * One etcd on 127.0.0.1 (free ports, data in a temp dir; a fresh one per agent count), started
 * here and stopped by its pid. N cluster agents in this process, each the real ClusterAgent
 * (register under a lease, publication queue, follow + converge, applied-revision reports) over
 * its own etcd3 client (`--per-client K`: K agents share one), whose kernel side is a
 * RecordingBackend: the store, watch and apply paths are real, only the kernel is recorded.
 * Measured, per agent count:
 * - service convergence: from one service-table write (pn service apply --cluster's putServices)
 *   until every agent has handed the new table to its service writer, and until every agent's
 *   applied-revision report is in the store; p50/p99 over --changes writes;
 * - a pod ADD published by one agent until its pn_ipcache update is recorded on every other
 *   agent, and its DEL until the delete is (p50/p99 over --pods);
 * - etcd requests per pod event: the publisher's (target ≤ 2 writes) and the whole cluster's,
 *   and the watch fan-out (events delivered to all agents) per change.
 * Prints a table with the targets and writes bench/results/cluster-converge.json.
 */
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {ClusterAgent} from '../../src/cluster/agent.js'
import type {ClusterKv, KvWatchHandlers, KvWatchOptions} from '../../src/cluster/kv.js'
import {EtcdKv} from '../../src/cluster/kv-etcd.js'
import {parseClusterLocation} from '../../src/cluster/location.js'
import {ClusterStore} from '../../src/cluster/store.js'
import {encodeIpcacheKey} from '../../src/datapath/bpf/maps/ipcache.js'
import type {EndpointRecord} from '../../src/endpoint/store.js'
import {RecordingBackend, type ApplyOptions, type KernelBackend} from '../../src/kernel/backend.js'
import type {KernelOp, KernelResult} from '../../src/kernel/ops.js'
import type {NodeContext} from '../../src/node/context.js'
import {parseService, type ServiceSpec} from '../../src/service/model.js'
import {TestEtcd} from '../../test/helpers/etcd.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : dflt
}
const COUNTS = arg('--agents', '100,500').split(',').map(Number)
const CHANGES = Number(arg('--changes', '50'))
const PODS = Number(arg('--pods', '50'))
const SERVICES = Number(arg('--services', '20'))
const PER_CLIENT = Number(arg('--per-client', '1'))
const WAIT_MS = Number(arg('--wait-ms', '60000'))

export interface Stats {
  n: number
  p50: number
  p99: number
  max: number
}

export function stats(ms: number[]): Stats {
  const s = [...ms].sort((a, b) => a - b)
  if (s.length === 0) return {n: 0, p50: NaN, p99: NaN, max: NaN}
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]
  return {n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1]}
}

/** Requests one agent's store made, and the watch events it was delivered. */
class Counts {
  range = 0
  txn = 0
  /** Of the txns: endpoint publications (put or delete under endpoints/), applied reports. */
  publish = 0
  report = 0
  lease = 0
  watchEvents = 0
  reset(): void {
    this.range = this.txn = this.publish = this.report = this.lease = this.watchEvents = 0
  }
}

/** The real etcd kv, counted; an applied-revision report that succeeds is timed. */
class CountingKv implements ClusterKv {
  constructor(
    private readonly inner: ClusterKv,
    readonly counts: Counts,
    private readonly onReported: (node: string, revision: number) => void,
    private readonly closeInner: boolean,
  ) {}

  get location(): string {
    return this.inner.location
  }

  range(prefix: string) {
    this.counts.range++
    return this.inner.range(prefix)
  }

  async txn(compares: Parameters<ClusterKv['txn']>[0], writes: Parameters<ClusterKv['txn']>[1]) {
    this.counts.txn++
    const key = (w: (typeof writes)[number]) => ('put' in w ? w.put : w.delete)
    if (writes.some((w) => key(w).includes('/endpoints/'))) this.counts.publish++
    if (writes.some((w) => key(w).includes('/applied/'))) this.counts.report++
    const r = await this.inner.txn(compares, writes)
    if (r.succeeded) {
      for (const w of writes) {
        const m = 'put' in w ? /\/applied\/([^/]+)$/.exec(w.put) : null
        if (m && 'value' in w) this.onReported(m[1], (JSON.parse(w.value) as {revision: number}).revision)
      }
    }
    return r
  }

  async grantLease(ttl: number) {
    this.counts.lease++
    const lease = await this.inner.grantLease(ttl)
    const counts = this.counts
    return {
      id: lease.id,
      ttlSeconds: lease.ttlSeconds,
      keepAlive: () => {
        counts.lease++
        return lease.keepAlive()
      },
      revoke: () => lease.revoke(),
    }
  }

  watch(prefix: string, from: number, h: KvWatchHandlers, opts?: KvWatchOptions) {
    return this.inner.watch(prefix, from, {
      ...h,
      onEvents: (rev, events) => {
        this.counts.watchEvents += events.length
        h.onEvents(rev, events)
      },
    }, opts)
  }

  compact(revision: number) {
    return this.inner.compact(revision)
  }

  close() {
    return this.closeInner ? this.inner.close() : Promise.resolve()
  }
}

/** A RecordingBackend that also notes when each pn_ipcache key was last updated or deleted. */
class TimedKernel implements KernelBackend {
  readonly rec = new RecordingBackend((op) => (op.kind === 'map.dump' ? {kind: 'map.dump', entries: []} : op.kind === 'route.list' ? {kind: 'route.list', routes: []} : undefined))
  constructor(private readonly seen: (agent: number, kind: 'update' | 'delete', key: string) => void, private readonly index: number) {}

  apply(ops: readonly KernelOp[], opts?: ApplyOptions): Promise<KernelResult[]> {
    for (const op of ops) {
      if (op.kind === 'map.update' && op.map.endsWith('pn_ipcache')) this.seen(this.index, 'update', op.key.toString('hex'))
      if (op.kind === 'map.delete' && op.map.endsWith('pn_ipcache')) this.seen(this.index, 'delete', op.key.toString('hex'))
    }
    // Not kept: 500 agents x every op would only grow the heap.
    const r = this.rec.apply(ops, opts)
    this.rec.applied.length = 0
    return r
  }
}

/** Resolves when `n` distinct agents have called `hit` for the waiter's key; rejects after WAIT_MS. */
class Waiter {
  private readonly got = new Map<number, number>()
  private resolve!: () => void
  readonly done: Promise<void>
  readonly t0 = performance.now()
  constructor(
    readonly n: number,
    what: string,
  ) {
    let timer: NodeJS.Timeout
    this.done = new Promise<void>((res, rej) => {
      this.resolve = res
      timer = setTimeout(() => rej(new Error(`${what}: ${this.got.size}/${n} agents within ${WAIT_MS} ms`)), WAIT_MS)
    }).finally(() => clearTimeout(timer))
  }

  hit(agent: number, at = performance.now()): void {
    if (this.got.has(agent)) return
    this.got.set(agent, at)
    if (this.got.size >= this.n) this.resolve()
  }

  /** Time until the last agent (ms). */
  get allMs(): number {
    return Math.max(...this.got.values()) - this.t0
  }
}

let etcdPid = 0
function etcdCpuMs(): number {
  const fields = readFileSync(`/proc/${etcdPid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}
function etcdRssMb(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${etcdPid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function table(changeNo: number): ServiceSpec[] {
  // Service 0's backend port carries the change number: the table differs at every change.
  return Array.from({length: SERVICES}, (_, i) => parseService(`10.96.${i >> 8}.${i & 255}:80/tcp`, [`10.1.${i & 255}.5:${i === 0 ? 10_000 + changeNo : 8080}`]))
}

export interface SimResult {
  agents: number
  perClient: number
  startMs: number
  serviceApplied: Stats
  serviceReported: Stats
  podAdd: Stats
  podDel: Stats
  /** Per pod ADD / DEL: the publishing agent's requests, and every agent's together; benchCpuMs: this process's CPU (all agents) per event. */
  perPodEvent: {publicationWritesAdd: number; publicationWritesDel: number; publisherWritesAdd: number; publisherReadsAdd: number; publisherWritesDel: number; publisherReadsDel: number; clusterWrites: number; clusterReads: number; watchEvents: number; benchCpuMs: number}
  /** Per service change: writes by all agents (applied reports) and events delivered to all watchers. */
  /** benchCpuMs: this process's CPU (all agents together) per change. */
  perServiceChange: {clusterWrites: number; watchEvents: number; etcdCpuMs: number; benchCpuMs: number}
  etcd: {cpuMsTotal: number; rssMb: number}
  benchCpuMs: number
  rssMb: number
  errors: string[]
}

async function simulate(n: number): Promise<SimResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pn-bench-conv-'))
  const etcd = new TestEtcd(dir, {prefix: '/bench-conv'})
  await etcd.start()
  etcdPid = etcd.child!.pid!
  const errors: string[] = []
  const agents: ClusterAgent[] = []
  const counts: Counts[] = []
  const inners: EtcdKv[] = []
  let svcWaiter: Waiter | undefined
  let svcMarker = -1
  let reportWaiter: Waiter | undefined
  let reportRev = Infinity
  const lastReport: {revision: number; at: number}[] = []
  const podWaiters = new Map<string, {kind: 'update' | 'delete'; w: Waiter; skip: number}>()
  try {
    const loc = parseClusterLocation(etcd.location)
    const admin = new ClusterStore(new EtcdKv(etcd.location), loc)
    await admin.init()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const c = new Counts()
      counts.push(c)
      let inner: EtcdKv
      if (i % PER_CLIENT === 0) {
        inner = new EtcdKv(etcd.location)
        inners.push(inner)
      } else inner = inners[inners.length - 1]
      const kv = new CountingKv(inner, c, (_node, revision) => {
        lastReport[i] = {revision, at: performance.now()}
        if (reportWaiter && revision >= reportRev) reportWaiter.hit(i)
      }, i % PER_CLIENT === 0)
      const store = new ClusterStore(kv, loc)
      const name = `sim${i}`
      const cidr = `10.${(i >> 8) + 100}.${i & 255}.0/24`
      const node: NodeContext = {version: 1, name, uplink: 'eth0', podCidrs: [cidr], routerIps: [cidr.replace(/0\/24$/, '1')], mtu: 1500, routeMtu: 1500, bpffsRoot: `/sys/fs/bpf/${name}`, routing: 'bpf', createdAt: new Date().toISOString()}
      const stateDir = path.join(dir, name)
      mkdirSync(stateDir)
      const kernel = new TimedKernel((agent, kind, key) => {
        const p = podWaiters.get(key)
        if (p && p.kind === kind && agent !== p.skip) p.w.hit(agent)
      }, i)
      const agent = new ClusterAgent({
        store, stateDir, node, kernel,
        nodeIps: [`172.16.${i >> 8}.${i & 255}`],
        autoDirectRoutes: true,
        ttlSeconds: 30,
        // Endpoints here are published by the bench, not read from state files.
        localResyncMs: 2_000_000_000,
        log: (m) => {
          if (/failed|retrying|lost/.test(m) && errors.length < 20) errors.push(`${name}: ${m}`)
        },
        applyServices: async (services) => {
          const s0 = services.find((s) => s.frontend.vip === '10.96.0.0')
          if (svcWaiter && s0 && s0.backends[0]?.port === 10_000 + svcMarker) svcWaiter.hit(i)
        },
      })
      agents.push(agent)
      agent.start()
    }
    // Every agent registered, following, and routing to every other node's pod CIDR.
    const upBy = performance.now() + WAIT_MS * 3
    const behind = (s: ReturnType<ClusterAgent['status']>) => !s.registered || s.appliedRevision === null || s.converged.routes < n - 1
    while (agents.some((a) => behind(a.status()))) {
      if (performance.now() > upBy) {
        const late = agents.map((a) => a.status()).filter(behind)
        throw new Error(`${n - late.length}/${n} agents registered and converged within ${(WAIT_MS * 3) / 1000} s; late: ${late.slice(0, 3).map((s) => JSON.stringify(s)).join(' ')}; errors: ${errors.slice(0, 5).join(' | ')}`)
      }
      await sleep(100)
    }
    const startMs = performance.now() - t0
    await sleep(1000)

    const serviceApplied: number[] = []
    const serviceReported: number[] = []
    let svcWrites = 0
    let svcEvents = 0
    let svcEtcdCpu = 0
    let svcBenchCpu = 0
    for (let c = -1; c < CHANGES; c++) {
      // c = -1: the first table (every agent applies it once; not measured).
      for (const x of counts) x.reset()
      const cpuE = etcdCpuMs()
      const cpuB = process.cpuUsage()
      svcMarker = c
      svcWaiter = new Waiter(n, `service change ${c} applied`)
      reportWaiter = new Waiter(n, `service change ${c} reported`)
      reportRev = Infinity
      const w = await admin.putServices(table(c))
      reportRev = w.revision
      // Reports that landed before the write's answer did.
      lastReport.forEach((r, i) => {
        if (r && r.revision >= reportRev) reportWaiter!.hit(i, r.at)
      })
      await Promise.all([svcWaiter.done, reportWaiter.done])
      if (c >= 0) {
        serviceApplied.push(svcWaiter.allMs)
        serviceReported.push(reportWaiter.allMs)
        await sleep(200) // let stragglers' reports land before counting
        svcWrites += counts.reduce((s, x) => s + x.txn, 0)
        svcEvents += counts.reduce((s, x) => s + x.watchEvents, 0)
        svcEtcdCpu += etcdCpuMs() - cpuE
        const b = process.cpuUsage(cpuB)
        svcBenchCpu += (b.user + b.system) / 1000
      } else await sleep(500)
      svcWaiter = reportWaiter = undefined
    }

    const podAdd: number[] = []
    const podDel: number[] = []
    const pub = {pa: 0, pd: 0, wa: 0, ra: 0, wd: 0, rd: 0}
    let clusterWrites = 0
    let clusterReads = 0
    let podEvents = 0
    let podCpu = 0
    for (let p = 0; p < PODS; p++) {
      const a = (p * 7) % n
      const ip = `10.${(a >> 8) + 100}.${a & 255}.${10 + (p % 200)}`
      const key = encodeIpcacheKey(`${ip}/32`).toString('hex')
      const rec: EndpointRecord = {id: `pod${p}:eth0`, containerId: `pod${p}`, ifname: 'eth0', netns: `/run/netns/pod${p}`, ips: [ip], routerIps: [], hostIfname: 'lxc0', hostMac: '', hostIfindex: 1, podIfname: 'eth0', podMac: '', podIfindex: 2, mtu: 1500, endpointId: p + 1, podName: `pod${p}`, podNamespace: 'default', createdAt: ''}
      for (const [kind, list] of [['update', podAdd], ['delete', podDel]] as const) {
        for (const x of counts) x.reset()
        const cpuP = process.cpuUsage()
        const w = new Waiter(n - 1, `pod ${ip} ${kind}`)
        podWaiters.set(key, {kind, w, skip: a})
        if (kind === 'update') agents[a].endpointAdded(rec)
        else agents[a].endpointDeleted(rec)
        await w.done
        list.push(w.allMs)
        podWaiters.delete(key)
        await sleep(200)
        const c = process.cpuUsage(cpuP)
        podCpu += (c.user + c.system) / 1000
        // The publisher's own requests: the publication, plus its applied report (one txn).
        if (kind === 'update') {
          pub.wa += counts[a].txn
          pub.pa += counts[a].publish
          pub.ra += counts[a].range
        } else {
          pub.wd += counts[a].txn
          pub.pd += counts[a].publish
          pub.rd += counts[a].range
        }
        clusterWrites += counts.reduce((s, x) => s + x.txn, 0)
        clusterReads += counts.reduce((s, x) => s + x.range, 0)
        podEvents += counts.reduce((s, x) => s + x.watchEvents, 0)
      }
    }
    const cpu = process.cpuUsage(cpu0)
    await admin.close()
    return {
      agents: n,
      perClient: PER_CLIENT,
      startMs,
      serviceApplied: stats(serviceApplied),
      serviceReported: stats(serviceReported),
      podAdd: stats(podAdd),
      podDel: stats(podDel),
      perPodEvent: {
        publicationWritesAdd: pub.pa / PODS, publicationWritesDel: pub.pd / PODS,
        publisherWritesAdd: pub.wa / PODS, publisherReadsAdd: pub.ra / PODS, publisherWritesDel: pub.wd / PODS, publisherReadsDel: pub.rd / PODS,
        clusterWrites: clusterWrites / (2 * PODS), clusterReads: clusterReads / (2 * PODS), watchEvents: podEvents / (2 * PODS), benchCpuMs: podCpu / (2 * PODS),
      },
      perServiceChange: {clusterWrites: svcWrites / CHANGES, watchEvents: svcEvents / CHANGES, etcdCpuMs: svcEtcdCpu / CHANGES, benchCpuMs: svcBenchCpu / CHANGES},
      etcd: {cpuMsTotal: etcdCpuMs(), rssMb: etcdRssMb()},
      benchCpuMs: (cpu.user + cpu.system) / 1000,
      rssMb: process.memoryUsage().rss / 2 ** 20,
      errors,
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop({revoke: false}).catch(() => undefined)))
    for (const kv of inners) await kv.close().catch(() => undefined)
    await etcd.stop('SIGTERM')
    rmSync(dir, {recursive: true, force: true})
  }
}

const f = (n: number) => (Number.isNaN(n) ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(1))

export function writeResults(name: string, data: unknown): string {
  const results = path.join(REPO, 'bench/results')
  if (!existsSync(results)) mkdirSync(results, {recursive: true})
  const file = path.join(results, name)
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n')
  return file
}

async function main(): Promise<void> {
  const load0 = loadavg()
  console.log(`load average ${load0.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs`)
  console.log(`simulated agents ${COUNTS.join(', ')} (${PER_CLIENT} per etcd client), ${CHANGES} service changes (table of ${SERVICES}), ${PODS} pod ADD+DEL`)
  const out: SimResult[] = []
  for (const n of COUNTS) {
    const r = await simulate(n)
    out.push(r)
    console.log(`\n${n} agents: all registered and converged in ${(r.startMs / 1000).toFixed(1)} s; bench cpu ${(r.benchCpuMs / 1000).toFixed(1)} s, rss ${r.rssMb.toFixed(0)} MB; etcd cpu ${(r.etcd.cpuMsTotal / 1000).toFixed(1)} s, rss ${r.etcd.rssMb.toFixed(0)} MB`)
    if (r.errors.length) console.log(`  agent errors (first ${r.errors.length}): ${r.errors.slice(0, 3).join(' | ')}`)
  }
  console.log('\nagents  measure                                       p50      p99      max   target')
  for (const r of out) {
    const row = (what: string, s: Stats, target = '') => console.log(`${String(r.agents).padStart(6)}  ${what.padEnd(42)} ${f(s.p50).padStart(7)}  ${f(s.p99).padStart(7)}  ${f(s.max).padStart(7)}   ${target}`)
    row('service write → applied by all (ms)', r.serviceApplied, r.agents >= 500 ? `p99 ≤ 1000 ${r.serviceApplied.p99 <= 1000 ? 'met' : 'MISSED'}` : '')
    row('service write → all reports in store (ms)', r.serviceReported)
    row('pod ADD → ipcache on all others (ms)', r.podAdd)
    row('pod DEL → ipcache gone on all others (ms)', r.podDel)
    console.log(`${''.padStart(6)}  (agents' CPU per pod event ${f(r.perPodEvent.benchCpuMs)} ms, per service change ${f(r.perServiceChange.benchCpuMs)} ms)`)
  }
  console.log('\nagents  per pod event: publication writes ADD/DEL; publisher incl. its report (reads)   all agents: writes  reads  watch events   per service change: writes  watch events  etcd cpu ms  agents cpu ms')
  for (const r of out) {
    const p = r.perPodEvent
    const ok = Math.max(p.publicationWritesAdd, p.publicationWritesDel) <= 2 ? 'met' : 'MISSED'
    console.log(`${String(r.agents).padStart(6)}  ${f(p.publicationWritesAdd)} / ${f(p.publicationWritesDel)} (≤ 2 ${ok}); ${f(p.publisherWritesAdd)} / ${f(p.publisherWritesDel)} (${f(p.publisherReadsAdd)} / ${f(p.publisherReadsDel)})`.padEnd(86) + `${f(p.clusterWrites).padStart(17)}  ${f(p.clusterReads).padStart(5)}  ${f(p.watchEvents).padStart(12)}   ${f(r.perServiceChange.clusterWrites).padStart(26)}  ${f(r.perServiceChange.watchEvents).padStart(12)}  ${f(r.perServiceChange.etcdCpuMs).padStart(11)}  ${f(r.perServiceChange.benchCpuMs).padStart(13)}`)
  }
  const load1 = loadavg()
  console.log(`\nload average ${load1.map((l) => l.toFixed(2)).join(' ')}`)
  const file = writeResults('cluster-converge.json', {loadavgStart: load0, loadavgEnd: load1, cpus: cpus().length, changes: CHANGES, pods: PODS, services: SERVICES, results: out})
  console.log(`results: ${path.relative(REPO, file)}`)
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
