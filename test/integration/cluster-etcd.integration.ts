/**
 * The cluster store on a real etcd (test/helpers/etcd.ts: one etcd per test on loopback, stopped
 * by its pid): a node's keys expire with its lease when the holder is SIGKILLed, two writers of
 * the service table end with one table, a follower resumes from its revision (across an etcd
 * restart too) and resyncs when etcd compacted the history it needed; the schema refusal and
 * `pn cluster` over plain etcd and over TLS with client certificates.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {EtcdKv} from '../../src/cluster/kv-etcd.js'
import {ClusterKeys} from '../../src/cluster/layout.js'
import type {ClusterState} from '../../src/cluster/state.js'
import {openClusterStore, type ClusterStore, type FollowUpdate} from '../../src/cluster/store.js'
import {isPnError} from '../../src/errors.js'
import {parseService, type ServiceSpec} from '../../src/service/model.js'
import {pn, REPO_ROOT} from '../helpers/cli.js'
import {makeCerts, TestEtcd} from '../helpers/etcd.js'

const svc = (fe: string, ...be: string[]): ServiceSpec => parseService(fe, be)

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<number> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return Date.now() - start
}

/** A separate process that registers node `name` (TTL 2 s), publishes one endpoint and reports a revision, then keeps its lease alive until killed. */
function startHolder(dir: string, location: string, name: string, ip: string): Promise<ChildProcess> {
  const script = path.join(dir, 'holder.mjs')
  writeFileSync(script, `
import {openClusterStore} from ${JSON.stringify(path.join(REPO_ROOT, 'dist/src/cluster/store.js'))}
const [location, name, ip] = process.argv.slice(2)
const store = openClusterStore(location)
const reg = await store.registerNode({name, nodeIps: ['192.168.7.1'], podCidrs: ['10.7.0.0/24'], reach: 'direct'}, {ttlSeconds: 2})
await store.publishEndpoint({ip, node: name, containerId: 'c1', labels: {app: 'db'}, identity: null}, reg)
await store.reportApplied(1, reg)
process.stdout.write('ready\\n')
setInterval(() => {}, 1000)
`)
  const child = spawn(process.execPath, [script, location, name, ip], {stdio: ['ignore', 'pipe', 'inherit']})
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => b.toString().includes('ready') && resolve(child))
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)))
  })
}

describe('cluster store on etcd (real etcd on loopback)', function () {
  this.timeout(120_000)
  let dir: string
  let etcd: TestEtcd
  let store: ClusterStore
  const children: ChildProcess[] = []

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cluster-etcd-'))
    etcd = new TestEtcd(dir)
    await etcd.start()
    store = openClusterStore(etcd.location, {timeoutMs: 3000})
    await store.init()
  })
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await store.close()
    await etcd.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('a node\'s keys (node, endpoints, applied) expire with its lease within the TTL + 1 s after the holder is SIGKILLed', async () => {
    const holder = await startHolder(dir, etcd.location, 'n7', '10.7.0.5')
    children.push(holder)
    const updates: FollowUpdate[] = []
    const f = await store.follow({onUpdate: (_s, u) => updates.push(u)})
    assert.ok(f.state.nodes.has('n7'))
    assert.equal(f.state.endpoints.get('10.7.0.5')?.node, 'n7')
    assert.equal(f.state.applied.get('n7')?.revision, 1)
    // The keep-alive holds the keys past the TTL.
    await new Promise((r) => setTimeout(r, 3000))
    assert.ok((await store.snapshot()).nodes.has('n7'), 'alive after 3 s with keep-alives')
    const exited = new Promise((r) => holder.once('exit', r))
    holder.kill('SIGKILL')
    await exited
    const took = await until('the lease to expire', () => f.state.nodes.size === 0 && f.state.endpoints.size === 0 && f.state.applied.size === 0, 6000)
    assert.ok(took <= 3000 + 500, `keys gone ${took} ms after the kill (TTL 2 s + 1 s)`)
    // One revision removed them all (the lease's revoke).
    const last = updates.at(-1)!
    assert.deepEqual([last.nodes, last.endpoints, last.applied, last.resync], [true, true, true, false])
    await f.close()
  })

  it('two writers of the service table at once end with one of the two tables, never a mix (separate clients, 5 rounds)', async () => {
    const a = Array.from({length: 150}, (_, i) => svc(`10.96.1.${i + 1}:80`, '10.1.0.1:8080', '10.1.0.2:8080'))
    const b = Array.from({length: 150}, (_, i) => svc(`10.96.${i < 100 ? 1 : 2}.${i + 1}:80`, '10.1.0.3:8080'))
    const other = openClusterStore(etcd.location)
    try {
      for (let round = 0; round < 5; round++) {
        const [ra, rb] = await Promise.all([store.putServices(round % 2 ? b : a), other.putServices(round % 2 ? a : b)])
        assert.ok(ra.changed || rb.changed)
        const view = (await store.snapshot()).services()
        assert.equal(view.consistent, true, `round ${round}`)
        const got = JSON.stringify([...view.services].map((s) => JSON.stringify(s)).sort())
        const isA = got === JSON.stringify(a.map((s) => JSON.stringify(s)).sort())
        const isB = got === JSON.stringify(b.map((s) => JSON.stringify(s)).sort())
        assert.ok(isA || isB, `round ${round}: the table is neither writer's (${view.services.length} services)`)
      }
    } finally {
      await other.close()
    }
  })

  it('a follower resumes from its revision, also across an etcd restart, in revision order', async () => {
    const reg = await store.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.1.0/24'], reach: 'direct'}, {ttlSeconds: 30})
    const base = await store.snapshot()
    const w1 = await store.publishEndpoint({ip: '10.1.1.5', node: 'n1', containerId: 'c5', labels: {}, identity: null}, reg)
    const w2 = await store.putServices([svc('10.96.0.10:80', '10.1.1.5:8080')])
    const seen: number[] = []
    let state: ClusterState | undefined
    const errors: string[] = []
    const f = await store.follow({from: base, retryMs: 200, onUpdate: (s, u) => {
      seen.push(u.revision)
      state = s
    }, onError: (e) => errors.push(e.code)})
    await until('both writes', () => seen.length === 2)
    assert.deepEqual(seen, [w1.revision, w2.revision])
    assert.equal(state!.services().services.length, 1)
    // etcd restarts under the watch: it reconnects by itself and carries on after the last revision.
    await etcd.stop('SIGTERM')
    await etcd.start()
    const w3 = await store.deleteEndpoint('10.1.1.5', 'n1')
    await until('the write after the restart', () => seen.includes(w3.revision), 30_000)
    assert.deepEqual(seen.filter((r) => r <= w3.revision), [w1.revision, w2.revision, w3.revision])
    assert.equal(f.state.endpoints.size, 0)
    await f.close()
    await reg.close()
  })

  it('a desired-state follower (what an agent uses) is sent nodes, endpoints and services, never the applied reports', async () => {
    const reg = await store.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.1.0/24'], reach: 'direct'}, {ttlSeconds: 30})
    const all: FollowUpdate[] = []
    const desired: FollowUpdate[] = []
    const full = await store.follow({onUpdate: (_s, u) => all.push(u)})
    const f = await store.follow({desiredOnly: true, onUpdate: (_s, u) => desired.push(u)})
    await store.reportApplied(1, reg)
    const w1 = await store.publishEndpoint({ip: '10.1.1.5', node: 'n1', containerId: 'c5', labels: {}, identity: null}, reg)
    await store.reportApplied(w1.revision, reg)
    const w2 = await store.putServices([svc('10.96.0.10:80', '10.1.1.5:8080')])
    const r3 = await store.registerNode({name: 'n2', nodeIps: ['192.168.1.2'], podCidrs: ['10.1.2.0/24'], reach: 'direct'}, {ttlSeconds: 30})
    await store.reportApplied(w2.revision, reg)
    await until('the full follower saw all six writes', () => all.length === 6)
    await until('the desired follower saw three', () => desired.length === 3)
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(all.filter((u) => u.applied).length, 3, 'a whole-prefix follower sees the reports')
    assert.deepEqual(desired.map((u) => [u.endpoints, u.services, u.nodes, u.applied]), [[true, false, false, false], [false, true, false, false], [false, false, true, false]])
    assert.equal(desired[1].revision, w2.revision)
    assert.ok(f.state.nodes.has('n2') && f.state.endpoints.has('10.1.1.5') && f.state.services().services.length === 1)
    await f.close()
    await full.close()
    await r3.close()
    await reg.close()
  })

  it('compacted history: a follower from an older revision gets one resync and the current state, then follows on', async () => {
    const reg = await store.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.1.0/24'], reach: 'direct'}, {ttlSeconds: 30})
    const old = await store.snapshot()
    for (let i = 1; i <= 5; i++) await store.publishEndpoint({ip: `10.1.1.${i}`, node: 'n1', containerId: `c${i}`, labels: {}, identity: null}, reg)
    await store.deleteEndpoint('10.1.1.1', 'n1')
    const now = await store.snapshot()
    await store.compact(now.revision)
    // The raw watch says compacted rather than failing.
    const compacted: number[] = []
    const w = store.watch(old.revision + 1, {onEvents: () => undefined, onCompacted: (r) => compacted.push(r), onError: (e) => compacted.push(-1) && assert.fail(e.message)})
    await until('the compaction', () => compacted.length === 1)
    await w.close()
    const updates: FollowUpdate[] = []
    const f = await store.follow({from: old, onUpdate: (_s, u) => updates.push(u)})
    await until('the resync', () => updates.length === 1)
    assert.equal(updates[0].resync, true)
    assert.deepEqual([...f.state.endpoints.keys()].sort(), ['10.1.1.2', '10.1.1.3', '10.1.1.4', '10.1.1.5'])
    const w6 = await store.publishEndpoint({ip: '10.1.1.6', node: 'n1', containerId: 'c6', labels: {}, identity: null}, reg)
    await until('the next write', () => f.state.endpoints.has('10.1.1.6'))
    assert.deepEqual(updates.slice(1).map((u) => [u.revision, u.resync]), [[w6.revision, false]])
    await f.close()
    await reg.close()
  })

  it('etcd unreachable: keep-alive failures are reported, pn cluster status fails clearly and fast; after the restart the node is still registered', async () => {
    const errors: string[] = []
    let lost = false
    const s2 = openClusterStore(etcd.location, {timeoutMs: 1000})
    const reg = await s2.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.1.0/24'], reach: 'direct'}, {
      ttlSeconds: 3, onKeepAliveError: (e) => errors.push(e.code), onLost: () => (lost = true),
    })
    await etcd.stop('SIGKILL')
    await until('a failed keep-alive', () => errors.length > 0, 10_000)
    assert.equal(errors[0], 'PN_POOL_UNREACHABLE')
    const t0 = Date.now()
    const r = pn(['cluster', 'status', '--cluster', etcd.location, '--json'])
    assert.equal(r.json?.error?.code, 'PN_POOL_UNREACHABLE')
    assert.match(r.json!.error!.message, /cluster store .* etcd unreachable/)
    assert.ok(Date.now() - t0 < 15_000, 'no hang')
    await etcd.start()
    // etcd renews every lease's TTL when it comes back (a new leader), so a short outage costs the node nothing.
    const before = reg.renewedAt
    await until('a keep-alive after the restart', () => reg.renewedAt > before, 15_000)
    assert.equal(lost, false)
    assert.ok((await store.snapshot()).nodes.has('n1'))
    await reg.close()
    await s2.close()
  })

  it('refuses a store with a newer schema, in process and in pn cluster status (exit 6)', async () => {
    const keys = new ClusterKeys('/pn-test')
    const kv = new EtcdKv(etcd.location)
    await kv.txn([], [{put: keys.schema, value: '2'}])
    await kv.close()
    const fresh = openClusterStore(etcd.location)
    await assert.rejects(fresh.snapshot(), (e) => isPnError(e, 'PN_CLUSTER_SCHEMA') && /newer/.test(e.message))
    await fresh.close()
    // A store that had read schema 1 refuses at its next write.
    await assert.rejects(store.putServices([]), (e) => isPnError(e, 'PN_CLUSTER_SCHEMA'))
    const r = pn(['cluster', 'status', '--cluster', etcd.location, '--json'])
    assert.equal(r.status, 6)
    assert.equal(r.json?.error?.code, 'PN_CLUSTER_SCHEMA')
    assert.equal(pn(['cluster', 'init', '--cluster', etcd.location, '--json']).json?.error?.code, 'PN_CLUSTER_SCHEMA')
  })

  it('pn cluster status: registered nodes with lease age and applied revision, pool nodes without a registration, the pool shared by URL', async () => {
    assert.equal(pn(['pool', 'init', '--cidr', '10.1.0.0/16', '--mask-size', '24', '--pool', etcd.location, '--json']).json?.status, 'ok')
    for (const n of ['n1', 'n2', 'n3']) assert.equal(pn(['pool', 'alloc', n, '--pool', etcd.location, '--json']).json?.status, 'ok')
    const r1 = await store.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.0.0/24'], reach: 'direct'}, {ttlSeconds: 30})
    const r2 = await store.registerNode({name: 'n2', nodeIps: ['192.168.1.2'], podCidrs: ['10.1.1.0/24'], reach: 'bgp'}, {ttlSeconds: 30})
    const w = await store.putServices([svc('10.96.0.10:80', '10.1.0.5:8080')])
    await store.reportApplied(w.revision, r1)
    await store.reportApplied(w.revision - 1, r2)
    const s = pn(['cluster', 'status', '--json'], {env: {PN_CLUSTER: etcd.location}})
    assert.equal(s.json?.status, 'ok', s.stdout + s.stderr)
    const res = s.json!.result
    assert.equal(res.desiredRevision, w.revision)
    assert.equal(res.services.count, 1)
    assert.match(s.json!.warnings!.join(), /cluster store over plain http/)
    const nodes = res.nodes as {name: string; alive: boolean; reach?: string; appliedRevision: number | null; converged: boolean | null; leaseAgeSeconds?: number; podCidrs: string[]}[]
    assert.deepEqual(nodes.map((n) => [n.name, n.alive, n.reach ?? null, n.appliedRevision, n.converged]), [
      ['n1', true, 'direct', w.revision, true],
      ['n2', true, 'bgp', w.revision - 1, false],
      ['n3', false, null, null, null],
    ])
    assert.ok(nodes[0].leaseAgeSeconds! >= 0 && nodes[0].leaseAgeSeconds! < 60)
    assert.deepEqual(nodes[2].podCidrs, ['10.1.2.0/24'])
    const human = pn(['cluster', 'status', '--cluster', etcd.location])
    assert.match(human.stdout, /^n3\s+no\s/m)
    assert.match(human.stdout, /^n1\s+yes\s+direct\s+192\.168\.1\.1\s+10\.1\.0\.0\/24\s+\d+s\s+\d+\s+yes$/m)
    await r1.close()
    await r2.close()
  })
})

describe('cluster store on etcd over TLS with client certificates', function () {
  this.timeout(120_000)
  let dir: string
  let etcd: TestEtcd

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cluster-tls-'))
    etcd = new TestEtcd(dir, {tls: makeCerts(dir), clientCertAuth: true})
    await etcd.start()
  })
  after(async () => {
    await etcd.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('pn cluster init and status with --etcd-ca/--etcd-cert/--etcd-key (or PN_ETCD_*), PN_POOL_TLS without a client certificate', () => {
    const c = etcd.opts.tls!
    const init = pn(['cluster', 'init', '--cluster', etcd.location, '--etcd-ca', c.ca, '--etcd-cert', c.clientCert, '--etcd-key', c.clientKey, '--json'])
    assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
    assert.deepEqual(init.json!.warnings, [])
    const st = pn(['cluster', 'status', '--cluster', etcd.location, '--json'], {env: {PN_ETCD_CA: c.ca, PN_ETCD_CERT: c.clientCert, PN_ETCD_KEY: c.clientKey}})
    assert.equal(st.json?.status, 'ok', st.stdout + st.stderr)
    const bare = pn(['cluster', 'status', '--cluster', etcd.location, '--etcd-ca', c.ca, '--json'])
    assert.equal(bare.json?.error?.code, 'PN_POOL_TLS')
    assert.match(bare.json!.error!.message, /cluster store/)
  })
})
