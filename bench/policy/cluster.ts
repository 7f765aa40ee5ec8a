/**
 * Policy through the cluster, on real nodes (root): `node dist/bench/policy/cluster.js [--nodes 8] [--changes N] [--pods N] [--per-pod N] [--bulk N]`.
 * The topology of bench/cluster/nodes.ts: a LAN namespace with a bridge and a real etcd, K node
 * namespaces (`pn node init --routing bpf`) on it, each with `pn agent start --cluster …` and one
 * real pod (CNI ADD through its agent); the bench re-runs inside the LAN namespace to reach etcd.
 * Measured:
 * - policy change → every node's maps: one NetworkPolicy (namespace default, selecting every pod,
 *   ingress from every pod on one TCP port) rewritten with the next port, as `pn policy apply`
 *   writes it (the library call, in process); timed from the call's start until the pinned
 *   pn_policy of every node holds the new port's entry for its pod (polled every ms, map dumps in
 *   process, no CLI in the loop); p50/p99 over --changes (default 50). Target: p99 ≤ 200 ms at 8 nodes.
 * - identity churn: --pods (default 1,000) endpoints of namespace `churn` published straight to
 *   the store under a registration of a simulated node (no interfaces; as bench/cluster does),
 *   every node's pn_ipcache holding each with its identity first; then
 *     namespace relabel — `pn namespace label churn gen=N` (the library call): every pod of the
 *                          namespace moves to a new identity in one command;
 *     pod relabel        — `pn endpoint label churn/<pod> gen=N` for each pod in turn (up to
 *                          --per-pod, default 200, of them), one command per pod;
 *   each timed until every node's pn_ipcache holds every relabelled pod's new identity; the rate
 *   is pods per second over that time.
 * - --bulk (default 1,000) policies in one apply (a List; each selects every pod, its own port, the
 *   ports two apart so no two merge into one port block):
 *   from the call until every node's pn_policy holds all of them. Target ≤ 1 s.
 * Everything it made is removed by name/pid. Writes bench/results/policy-cluster.json.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {identityForPod, labelEndpoint} from '../../src/cluster/identities.js'
import {labelNamespace} from '../../src/cluster/namespaces.js'
import {applyPolicies} from '../../src/cluster/policies.js'
import {openClusterStore, type ClusterStore} from '../../src/cluster/store.js'
import {mapPath} from '../../src/datapath/bpf/bpffs.js'
import {decodeIpcacheInfo, decodeIpcacheKey, decodePolicyKey} from '../../src/datapath/bpf/maps/index.js'
import {applyOne} from '../../src/kernel/backend.js'
import {MapBackend} from '../../src/kernel/maps.js'
import {TestEtcd} from '../../test/helpers/etcd.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs} from '../../test/helpers/netns.js'
import {cleanupHarness, createNode, invokeAsync, netconf, startNodeAgent, type CniNode} from '../../test/integration/cni-harness.js'
import {stats, writeResults, type Stats} from '../cluster/converge.js'
import {runLanBench} from '../cluster/lan.js'

const SELF = fileURLToPath(import.meta.url)

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name)
  return i > 0 ? process.argv[i + 1] : dflt
}
const K = Number(arg('--nodes', '8'))
const CHANGES = Number(arg('--changes', '50'))
const PODS = Number(arg('--pods', '1000'))
const PER_POD = Math.min(PODS, Number(arg('--per-pod', '200')))
const LAN = '192.168.234'
const V = '1.0.0'
const WAIT_MS = 60_000
const BASE_PORT = 30000
const BULK = Number(arg('--bulk', '1000'))
const BULK_PORT = 40000

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const maps = new MapBackend()
const r1 = (x: number) => Math.round(x * 10) / 10

function policyText(port: number): string {
  return JSON.stringify({
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: {namespace: 'default', name: 'bench'},
    spec: {podSelector: {}, policyTypes: ['Ingress'], ingress: [{from: [{podSelector: {}}], ports: [{protocol: 'TCP', port}]}]},
  })
}

/** The ports of a node's pn_policy entries for its endpoints. */
async function policyPorts(n: CniNode): Promise<Set<number>> {
  const d = await applyOne(maps, {kind: 'map.dump', map: mapPath(n.bpffsRoot, 'pn_policy')})
  return new Set(d.entries.map((e) => decodePolicyKey(e.key).port))
}

/** IP → identity in a node's pn_ipcache (/32 entries). */
async function ipcache(n: CniNode): Promise<Map<string, number>> {
  const d = await applyOne(maps, {kind: 'map.dump', map: mapPath(n.bpffsRoot, 'pn_ipcache')})
  const out = new Map<string, number>()
  for (const e of d.entries) {
    if (!e.value) continue
    const k = decodeIpcacheKey(e.key)
    if (k.prefix.endsWith('/32')) out.set(k.prefix.slice(0, -3), decodeIpcacheInfo(e.value).identity)
  }
  return out
}

/** ms from t0 until `done(n)` holds on every node, each polled every ms. */
async function everywhere(nodes: CniNode[], done: (n: CniNode) => Promise<boolean>, t0: number, what: string, pollMs = 1): Promise<number> {
  const left = new Set(nodes)
  let last = t0
  while (left.size > 0) {
    for (const n of [...left]) {
      if (await done(n)) {
        left.delete(n)
        last = performance.now()
      }
    }
    if (performance.now() - t0 > WAIT_MS) throw new Error(`${what}: ${nodes.length - left.size}/${nodes.length} nodes within ${WAIT_MS} ms`)
    if (left.size > 0) await sleep(pollMs)
  }
  return last - t0
}

interface Result {
  nodes: number
  policyChange: Stats & {samples: number[]}
  churn: {pods: number; publishMs: number; firstSeenMs: number; namespace: {ms: number; commandMs: number; podsPerSecond: number}; perPod: {pods: number; ms: number; commandMsP50: number; podsPerSecond: number; afterLastCommandMs: number}}
  bulk: {policies: number; ms: number; writeMs: number}
  loads: Record<string, number[]>
}

async function run(lan: string): Promise<Result> {
  const tmp = mkdtempSync(path.join(tmpdir(), 'pn-bench-pol-cl-'))
  const etcd = new TestEtcd(tmp, {netns: lan, host: `${LAN}.254`, prefix: '/bench-pol'})
  const nodes: (CniNode & {ip: string; name: string})[] = []
  let admin: ClusterStore | undefined
  const loads: Record<string, number[]> = {start: loadavg()}
  const regs: {close(): Promise<void>}[] = []
  try {
    await etcd.start()
    for (let i = 1; i <= K; i++) {
      const n = createNode({kind: 'pn', podCidr: `10.${140 + i}.0.0/24`, routing: 'bpf', tag: `pc${i}`})
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'down'])
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'name', `pc${i}x`])
      inNs(n.ns, ['ip', 'link', 'set', `pc${i}x`, 'netns', lan])
      inNs(lan, ['ip', 'link', 'set', `pc${i}x`, 'master', 'br0', 'up'])
      inNs(n.ns, ['ip', 'addr', 'add', `${LAN}.${i}/24`, 'dev', 'up0'])
      nodes.push({...n, kind: 'pn-agent', ip: `${LAN}.${i}`, name: n.ns})
    }
    admin = openClusterStore(etcd.location)
    await admin.init()
    for (const n of nodes) startNodeAgent(n, ['--cluster', etcd.location, '--auto-direct-routes', '--lease-ttl', '5'])
    // One real pod per node (its agent publishes it, with its identity).
    const podIps: string[] = []
    for (const [i, n] of nodes.entries()) {
      const pod = createNamespace('pcp').name
      const r = await invokeAsync(n, {command: 'ADD', containerId: `polbench-${i}`, netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(n, V))
      if (r.status !== 0) throw new Error(`ADD on ${n.name}: ${r.stdout} ${r.stderr}`)
      podIps.push((r.json.ips[0].address as string).split('/')[0])
    }
    // Every pod's identity on every node first (the rules name it).
    await everywhere(nodes, async (n) => {
      const c = await ipcache(n)
      return podIps.every((ip) => (c.get(ip) ?? 0) >= 256)
    }, performance.now(), 'every pod with its identity in every node\'s ipcache', 20)

    // Policy change → every node's pn_policy.
    const apply = (port: number) => applyPolicies(admin!, {file: 'bench.json', text: policyText(port)})
    let t0 = performance.now()
    await apply(BASE_PORT)
    const firstMs = await everywhere(nodes, async (n) => (await policyPorts(n)).has(BASE_PORT), t0, 'the first policy in every node\'s pn_policy', 5)
    console.log(`first policy in every node's pn_policy after ${r1(firstMs)} ms`)
    loads.policy = loadavg()
    const samples: number[] = []
    for (let c = 1; c <= CHANGES; c++) {
      const port = BASE_PORT + c
      t0 = performance.now()
      await apply(port)
      samples.push(await everywhere(nodes, async (n) => {
        const ports = await policyPorts(n)
        return ports.has(port) && !ports.has(port - 1)
      }, t0, `policy change ${c} in every node's pn_policy`))
      await sleep(50)
    }

    // Identity churn: PODS simulated pods of namespace churn, published under a simulated node.
    loads.churn = loadavg()
    const reg = await admin.registerNode({name: 'polbench-sim', nodeIps: [`${LAN}.200`], podCidrs: ['10.139.0.0/20'], reach: 'direct'}, {ttlSeconds: 30})
    regs.push(reg)
    const simIp = (i: number) => `10.139.${i >> 8}.${(i & 255) + 0}`
    const gen0 = await identityForPod(admin, 'churn', {app: 'churn', gen: '0'})
    const p0 = performance.now()
    for (let i = 0; i < PODS; i++) {
      await admin.publishEndpoint({ip: simIp(i + 1), node: 'polbench-sim', containerId: `sim-${i}`, namespace: 'churn', pod: `p${i}`, labels: {app: 'churn', gen: '0'}, identity: gen0.id}, reg)
    }
    const publishMs = performance.now() - p0
    const ips = Array.from({length: PODS}, (_, i) => simIp(i + 1))
    const holds = (want: (ip: string) => number, subset = ips) => async (n: CniNode) => {
      const c = await ipcache(n)
      return subset.every((ip) => c.get(ip) === want(ip))
    }
    const firstSeenMs = await everywhere(nodes, holds(() => gen0.id), p0, `${PODS} pods in every node's ipcache`, 20)
    console.log(`${PODS} simulated pods published in ${r1(publishMs)} ms, in every node's ipcache ${r1(firstSeenMs)} ms after the first write`)

    // Namespace relabel: every pod of churn to a new identity in one command.
    const n0 = performance.now()
    const nsr = await labelNamespace(admin, 'churn', {set: {gen: '1'}, remove: []})
    const nsCommandMs = performance.now() - n0
    if (nsr.endpoints.length !== PODS) throw new Error(`namespace relabel moved ${nsr.endpoints.length} endpoints, not ${PODS}`)
    const newId = new Map(nsr.endpoints.map((e) => [e.ip, e.to]))
    const nsMs = await everywhere(nodes, holds((ip) => newId.get(ip)!), n0, 'namespace relabel in every node\'s ipcache', 10)
    console.log(`namespace relabel: ${PODS} pods to identity ${[...new Set(newId.values())].join(',')}: command ${r1(nsCommandMs)} ms, every node's ipcache ${r1(nsMs)} ms`)

    // Pod relabel: one command per pod.
    const subset = ips.slice(0, PER_POD)
    const perPodCmd: number[] = []
    const q0 = performance.now()
    for (let i = 0; i < PER_POD; i++) {
      const c0 = performance.now()
      const r = await labelEndpoint(admin, `churn/p${i}`, {set: {gen: '2'}, remove: []})
      perPodCmd.push(performance.now() - c0)
      for (const e of r.endpoints) newId.set(e.ip, e.to)
    }
    const lastCommandMs = performance.now() - q0
    const perPodMs = await everywhere(nodes, holds((ip) => newId.get(ip)!, subset), q0, 'pod relabels in every node\'s ipcache', 10)
    const cmd = stats(perPodCmd)
    console.log(`pod relabel: ${PER_POD} pods, one command each (p50 ${r1(cmd.p50)} ms): every node's ipcache ${r1(perPodMs)} ms after the first`)
    // 1,000 policies at once (one `pn policy apply` of a List), each selecting every pod with its
    // own port, until every node's pn_policy holds all of them (after the churn, so the agents
    // resolve the churn with one policy).
    loads.bulk = loadavg()
    const items = Array.from({length: BULK}, (_, j) => ({...JSON.parse(policyText(BULK_PORT + 2 * j)), metadata: {namespace: 'default', name: `bulk-${j}`}}))
    const b0 = performance.now()
    await applyPolicies(admin, {file: 'bulk.json', text: JSON.stringify({apiVersion: 'v1', kind: 'List', items})})
    const bulkWriteMs = performance.now() - b0
    const bulkMs = await everywhere(nodes, async (n) => {
      const ports = await policyPorts(n)
      for (let j = 0; j < BULK; j++) if (!ports.has(BULK_PORT + 2 * j)) return false
      return true
    }, b0, `${BULK} policies in every node's pn_policy`, 5)
    console.log(`${BULK} policies in one apply: store write ${r1(bulkWriteMs)} ms, in every node's pn_policy ${r1(bulkMs)} ms`)
    loads.end = loadavg()
    const s = stats(samples)
    return {
      nodes: K,
      policyChange: {...s, samples: samples.map(r1)},
      churn: {
        pods: PODS, publishMs, firstSeenMs,
        namespace: {ms: nsMs, commandMs: nsCommandMs, podsPerSecond: (PODS * 1000) / nsMs},
        perPod: {pods: PER_POD, ms: perPodMs, commandMsP50: cmd.p50, podsPerSecond: (PER_POD * 1000) / perPodMs, afterLastCommandMs: perPodMs - lastCommandMs},
      },
      bulk: {policies: BULK, ms: bulkMs, writeMs: bulkWriteMs},
      loads,
    }
  } finally {
    for (const r of regs) await r.close().catch(() => undefined)
    await admin?.close().catch(() => undefined)
    cleanupHarness()
    for (const n of nodes) deleteNamespace(n.ns)
    await etcd.stop()
    rmSync(tmp, {recursive: true, force: true})
  }
}

async function inside(lan: string): Promise<void> {
  const load0 = loadavg()
  console.log(`load average ${load0.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} CPUs; ${K} nodes (one agent each), ${CHANGES} policy changes, ${PODS} pods relabelled`)
  let r: Result
  try {
    r = await run(lan)
  } finally {
    cleanupNamespaces()
  }
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))
  console.log(`\n${r.nodes} nodes  policy change → every node's pn_policy (ms): p50 ${f(r.policyChange.p50)}  p99 ${f(r.policyChange.p99)}  max ${f(r.policyChange.max)}   target p99 ≤ 200 ${r.policyChange.p99 <= 200 ? 'met' : 'MISSED'}  (load ${r.loads.policy.map((l) => l.toFixed(1)).join(' ')})`)
  console.log(`${r.nodes} nodes  ${r.churn.pods} pods, namespace relabel → every node's ipcache: ${f(r.churn.namespace.ms)} ms (command ${f(r.churn.namespace.commandMs)} ms), ${f(r.churn.namespace.podsPerSecond)} pods/s  (load ${r.loads.churn.map((l) => l.toFixed(1)).join(' ')})`)
  console.log(`${r.nodes} nodes  ${r.bulk.policies} policies in one apply → every node's pn_policy: ${f(r.bulk.ms)} ms (store write ${f(r.bulk.writeMs)} ms)   target ≤ 1000 ${r.bulk.ms <= 1000 ? 'met' : 'MISSED'}  (load ${r.loads.bulk.map((l) => l.toFixed(1)).join(' ')})`)
  console.log(`${r.nodes} nodes  ${r.churn.perPod.pods} pods, one relabel command each → every node's ipcache: ${f(r.churn.perPod.ms)} ms, ${f(r.churn.perPod.podsPerSecond)} pods/s (command p50 ${f(r.churn.perPod.commandMsP50)} ms; the last reached every node ${f(r.churn.perPod.afterLastCommandMs)} ms after its command returned)`)
  const load1 = loadavg()
  console.log(`load average ${load1.map((l) => l.toFixed(2)).join(' ')}`)
  const file = writeResults('policy-cluster.json', {date: new Date().toISOString(), loadavgStart: load0, loadavgEnd: load1, cpus: cpus().length, changes: CHANGES, result: r})
  console.log(`results: ${file}`)
}

runLanBench({name: 'bench/policy/cluster', self: SELF, lan: LAN, tag: 'plan', inside})
