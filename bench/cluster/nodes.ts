/**
 * Cluster convergence on real nodes (root): `node dist/bench/cluster/nodes.js [--nodes 4,8] [--changes N] [--pods N] [--bulk N]`.
 * The topology of test/integration/cluster-agents.integration.ts: a LAN namespace with a bridge
 * and a real etcd on it, K node namespaces (`pn node init`, BPF routing) whose uplinks are on that
 * bridge, each with `pn agent start --cluster … --auto-direct-routes`. The bench itself re-runs
 * inside the LAN namespace (`ip netns exec`), so it reaches etcd without touching the root
 * namespace. Measured, per node count:
 * - service convergence: one service-table write (in process, as `pn service apply --cluster`
 *   writes it) until every node's applied revision in the store covers it, seen by a watch on the
 *   applied reports (no CLI in the loop); p50/p99 over --changes writes (default 200);
 * - a pod ADD (the node's CNI client → its agent) until its pn_ipcache entry is on every other
 *   node, read by map.lookup on the pinned maps in process (pn's addon), from the ADD's start and
 *   from its return; and its DEL until the entry is gone everywhere;
 * - --bulk services (default 1,000) written at once until every node has applied them.
 * Everything it made (namespaces, agents, etcd, state dirs, bpffs folders) is removed by name/pid.
 * Prints a table with the targets and writes bench/results/cluster-nodes.json.
 */
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import type {KvEvent} from '../../src/cluster/kv.js'
import {openClusterStore, type ClusterStore} from '../../src/cluster/store.js'
import {mapPath} from '../../src/datapath/bpf/bpffs.js'
import {encodeIpcacheKey} from '../../src/datapath/bpf/maps/ipcache.js'
import {decodeLb4Key} from '../../src/datapath/bpf/maps/lb4-services.js'
import {applyOne} from '../../src/kernel/backend.js'
import {MapBackend} from '../../src/kernel/maps.js'
import {parseService, type ServiceSpec} from '../../src/service/model.js'
import {TestEtcd} from '../../test/helpers/etcd.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs} from '../../test/helpers/netns.js'
import {cleanupHarness, createNode, invokeAsync, netconf, startNodeAgent, type CniNode} from '../../test/integration/cni-harness.js'
import {stats, writeResults, type Stats} from './converge.js'
import {runLanBench} from './lan.js'

const SELF = fileURLToPath(import.meta.url)

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : dflt
}
const COUNTS = arg('--nodes', '4,8').split(',').map(Number)
const CHANGES = Number(arg('--changes', '200'))
const PODS = Number(arg('--pods', '20'))
const BULK = Number(arg('--bulk', '1000'))
const SERVICES = 20
const LAN = '192.168.233'
const V = '1.0.0'
const WAIT_MS = 30_000

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function table(changeNo: number): ServiceSpec[] {
  return Array.from({length: SERVICES}, (_, i) => parseService(`10.96.0.${i + 1}:80/tcp`, [`10.241.0.${10 + i}:${i === 0 ? 10_000 + changeNo : 8080}`]))
}

function bulk(n: number): ServiceSpec[] {
  return Array.from({length: n}, (_, i) => parseService(`10.97.${i >> 8}.${(i & 255) + 0}:80/tcp`, [`10.241.0.${10 + (i % 200)}:8080`, `10.242.0.${10 + (i % 200)}:8080`]))
}

/** The applied revision each node reported, as a watch on the store sees it arrive. */
class Applied {
  readonly latest = new Map<string, {revision: number; at: number}>()
  private waiters: {rev: number; nodes: string[]; resolve: (ms: number) => void; t0: number}[] = []

  constructor(private readonly appliedPrefix: string) {}

  onEvents = (_rev: number, events: KvEvent[]) => {
    const at = performance.now()
    for (const e of events) {
      if (e.type !== 'put' || !e.key.startsWith(this.appliedPrefix)) continue
      const node = e.key.slice(this.appliedPrefix.length)
      this.latest.set(node, {revision: (JSON.parse(e.value ?? '{}') as {revision: number}).revision, at})
    }
    this.check()
  }

  /** ms from t0 until every node of `nodes` reported a revision ≥ rev. */
  wait(rev: number, nodes: string[], t0: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`revision ${rev}: applied by ${nodes.filter((n) => (this.latest.get(n)?.revision ?? 0) >= rev).length}/${nodes.length} nodes within ${WAIT_MS} ms`)), WAIT_MS)
      this.waiters.push({rev, nodes, t0, resolve: (ms) => (clearTimeout(timer), resolve(ms))})
      this.check()
    })
  }

  private check(): void {
    this.waiters = this.waiters.filter((w) => {
      const got = w.nodes.map((n) => this.latest.get(n))
      if (!got.every((g) => g && g.revision >= w.rev)) return true
      w.resolve(Math.max(...got.map((g) => g!.at)) - w.t0)
      return false
    })
  }
}

interface NodesResult {
  nodes: number
  startMs: number
  service: Stats
  podAddFromStart: Stats
  podAddFromReturn: Stats
  cniAdd: Stats
  podDel: Stats
  bulk: {services: number; ms: number; writeMs: number; inMaps: number[]}
  agentCpuMs: number
  etcdCpuMs: number
}

function cpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100
  } catch {
    return 0
  }
}

async function run(lan: string, k: number): Promise<NodesResult> {
  const tmp = mkdtempSync(path.join(tmpdir(), 'pn-bench-nodes-'))
  const etcd = new TestEtcd(tmp, {netns: lan, host: `${LAN}.254`, prefix: `/bench-n${k}`})
  const nodes: (CniNode & {ip: string; name: string; agentPid: number})[] = []
  let admin: ClusterStore | undefined
  let watch: {close(): Promise<void>} | undefined
  try {
    await etcd.start()
    for (let i = 1; i <= k; i++) {
      const n = createNode({kind: 'pn', podCidr: `10.${240 + i}.0.0/24`, routing: 'bpf', tag: `bn${i}`})
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'down'])
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'name', `bn${k}x${i}`])
      inNs(n.ns, ['ip', 'link', 'set', `bn${k}x${i}`, 'netns', lan])
      inNs(lan, ['ip', 'link', 'set', `bn${k}x${i}`, 'master', 'br0', 'up'])
      inNs(n.ns, ['ip', 'addr', 'add', `${LAN}.${i}/24`, 'dev', 'up0'])
      nodes.push({...n, kind: 'pn-agent', ip: `${LAN}.${i}`, name: n.ns, agentPid: 0})
    }
    admin = openClusterStore(etcd.location)
    await admin.init()
    const applied = new Applied(`${admin.keys.v1}applied/`)
    const snap = await admin.snapshot()
    watch = admin.watch(snap.revision + 1, {onEvents: applied.onEvents, onCompacted: () => undefined, onError: (e) => console.error(`watch: ${e.message}`)})
    const names = nodes.map((n) => n.name)
    const t0 = performance.now()
    for (const n of nodes) n.agentPid = startNodeAgent(n, ['--cluster', etcd.location, '--auto-direct-routes', '--lease-ttl', '5'])
    const first = await admin.putServices(table(-1))
    const startMs = await applied.wait(first.revision, names, t0)
    await sleep(500)
    const cpu0 = nodes.reduce((s, n) => s + cpuMs(n.agentPid), 0)
    const etcd0 = cpuMs(etcd.child!.pid!)

    const svc: number[] = []
    for (let c = 0; c < CHANGES; c++) {
      const s = performance.now()
      const w = await admin.putServices(table(c))
      svc.push(await applied.wait(w.revision, names, s))
      await sleep(50)
    }

    const maps = new MapBackend()
    const present = async (n: CniNode, key: Buffer) => (await applyOne(maps, {kind: 'map.lookup', map: mapPath(n.bpffsRoot, 'pn_ipcache'), key})).value !== undefined
    /** ms (from t0) until `want(n)` holds on every node of `on`, polled every ms. */
    const everywhere = async (on: CniNode[], key: Buffer, want: boolean, t0: number, what: string) => {
      const left = new Set(on)
      let last = 0
      while (left.size > 0) {
        for (const n of [...left]) {
          if ((await present(n, key)) === want) {
            left.delete(n)
            last = performance.now()
          }
        }
        if (performance.now() - t0 > WAIT_MS) throw new Error(`${what}: ${on.length - left.size}/${on.length} nodes within ${WAIT_MS} ms`)
        if (left.size > 0) await sleep(1)
      }
      return last - t0
    }
    const fromStart: number[] = []
    const fromReturn: number[] = []
    const cniAdd: number[] = []
    const del: number[] = []
    for (let p = 0; p < PODS; p++) {
      const node = nodes[p % k]
      const others = nodes.filter((n) => n !== node)
      const pod = createNamespace('bp').name
      const cid = `bench-${k}-${p}`
      const s = performance.now()
      const add = invokeAsync(node, {command: 'ADD', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(node, V))
      const r = await add
      const ret = performance.now()
      if (r.status !== 0) throw new Error(`ADD on ${node.name}: ${r.stdout} ${r.stderr}`)
      const ip = (r.json.ips[0].address as string).split('/')[0]
      const key = encodeIpcacheKey(`${ip}/32`)
      const all = await everywhere(others, key, true, s, `pod ${ip} in the other nodes' ipcache`)
      fromStart.push(all)
      fromReturn.push(all - (ret - s))
      cniAdd.push(ret - s)
      await sleep(50)
      const d0 = performance.now()
      const dr = await invokeAsync(node, {command: 'DEL', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(node, V))
      if (dr.status !== 0) throw new Error(`DEL on ${node.name}: ${dr.stdout} ${dr.stderr}`)
      del.push(await everywhere(others, key, false, d0, `pod ${ip} gone from the other nodes' ipcache`))
      deleteNamespace(pod)
      await sleep(50)
    }

    const b0 = performance.now()
    const bw = await admin.putServices(bulk(BULK))
    const writeMs = performance.now() - b0
    const bulkMs = await applied.wait(bw.revision, names, b0)
    const agentCpuMs = nodes.reduce((s, n) => s + cpuMs(n.agentPid), 0) - cpu0
    // What "applied" means, checked: every node's pn_lb4_services holds exactly the bulk table's frontends.
    const inMaps: number[] = []
    for (const n of nodes) {
      const d = await applyOne(maps, {kind: 'map.dump', map: mapPath(n.bpffsRoot, 'pn_lb4_services')})
      inMaps.push(d.entries.filter((e) => decodeLb4Key(e.key).slot === 0).length)
    }
    if (inMaps.some((c) => c !== BULK)) throw new Error(`after the bulk write, the nodes' pn_lb4_services hold ${inMaps.join(', ')} frontends, not ${BULK} each`)
    return {
      nodes: k, startMs, service: stats(svc), podAddFromStart: stats(fromStart), podAddFromReturn: stats(fromReturn), cniAdd: stats(cniAdd), podDel: stats(del),
      bulk: {services: BULK, ms: bulkMs, writeMs, inMaps}, agentCpuMs, etcdCpuMs: cpuMs(etcd.child!.pid!) - etcd0,
    }
  } finally {
    await watch?.close().catch(() => undefined)
    await admin?.close().catch(() => undefined)
    cleanupHarness()
    for (const n of nodes) deleteNamespace(n.ns)
    await etcd.stop()
    rmSync(tmp, {recursive: true, force: true})
  }
}

const f = (n: number) => (Number.isNaN(n) ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(1))

async function inside(lan: string): Promise<void> {
  const load0 = loadavg()
  console.log(`load average ${load0.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs`)
  console.log(`real nodes ${COUNTS.join(', ')} (one agent process each), ${CHANGES} service changes (table of ${SERVICES}), ${PODS} pod ADD+DEL, ${BULK} services at once`)
  const out: NodesResult[] = []
  try {
    for (const k of COUNTS) {
      const r = await run(lan, k)
      out.push(r)
      console.log(`${k} nodes: agents started and converged in ${(r.startMs / 1000).toFixed(1)} s; during the run: agents cpu ${(r.agentCpuMs / 1000).toFixed(1)} s, etcd cpu ${(r.etcdCpuMs / 1000).toFixed(1)} s`)
    }
  } finally {
    cleanupNamespaces()
  }
  console.log('\nnodes  measure                                         p50      p99      max   target')
  for (const r of out) {
    const row = (what: string, s: Stats, target = '', p99 = s.p99) => console.log(`${String(r.nodes).padStart(5)}  ${what.padEnd(44)} ${f(s.p50).padStart(7)}  ${f(s.p99).padStart(7)}  ${f(s.max).padStart(7)}   ${target ? `${target} ${p99 <= Number(/(\d+)\s*$/.exec(target)![1]) ? 'met' : 'MISSED'}` : ''}`)
    const at8 = r.nodes >= 8
    row('service write → applied by all (ms)', r.service, at8 ? 'p99 ≤ 100' : '')
    row('pod ADD start → ipcache on all others (ms)', r.podAddFromStart, at8 ? 'p99 ≤ 200' : '')
    row('pod ADD return → ipcache on all others (ms)', r.podAddFromReturn)
    row('CNI ADD itself (ms)', r.cniAdd)
    row('pod DEL start → gone on all others (ms)', r.podDel)
    console.log(`${String(r.nodes).padStart(5)}  ${`${r.bulk.services} services at once → applied by all (ms)`.padEnd(44)} ${f(r.bulk.ms).padStart(7)}  (store write ${f(r.bulk.writeMs)} ms; ${r.bulk.inMaps[0]} frontends in each node's map)      ${at8 ? `≤ 2000 ${r.bulk.ms <= 2000 ? 'met' : 'MISSED'}` : ''}`)
  }
  const load1 = loadavg()
  console.log(`\nload average ${load1.map((l) => l.toFixed(2)).join(' ')}`)
  const file = writeResults('cluster-nodes.json', {loadavgStart: load0, loadavgEnd: load1, cpus: cpus().length, changes: CHANGES, pods: PODS, results: out})
  console.log(`results: ${file}`)
}

runLanBench({name: 'bench/cluster/nodes', self: SELF, lan: LAN, tag: 'blan', inside})
