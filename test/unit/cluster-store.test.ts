/** The cluster store on its directory backend (no root, no etcd): locations, schema, leases, endpoints, services, watches. */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {clusterPoolLocation, parseClusterLocation} from '../../src/cluster/location.js'
import {ClusterKeys, SERVICE_SHARDS, shardOf} from '../../src/cluster/layout.js'
import {ClusterState} from '../../src/cluster/state.js'
import {ClusterStore, openClusterStore} from '../../src/cluster/store.js'
import {clusterStatus} from '../../src/cluster/status.js'
import type {ClusterKv} from '../../src/cluster/kv.js'
import {allocatePodCidrs, initPool, openPoolStore} from '../../src/ipam/pool.js'
import {DirKv, LOG_REVISIONS} from '../../src/cluster/kv-dir.js'
import {parseService, type ServiceSpec} from '../../src/service/model.js'

const svc = (fe: string, ...be: string[]): ServiceSpec => parseService(fe, be)
const node = (name: string, ip: string, cidr: string) => ({name, nodeIps: [ip], podCidrs: [cidr], reach: 'direct' as const})
const ep = (ip: string, nodeName: string, extra = {}) => ({ip, node: nodeName, containerId: `c-${ip}`, labels: {app: 'web'}, identity: null, ...extra})

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('cluster store locations', () => {
  it('parses etcd://, etcds:// and directory locations, and names the cluster\'s pool', () => {
    const e = parseClusterLocation('etcd://10.0.0.5:2379,10.0.0.6:2379/lab')
    assert.deepEqual(e, {kind: 'etcd', location: 'etcd://10.0.0.5:2379,10.0.0.6:2379/lab', hosts: ['http://10.0.0.5:2379', 'http://10.0.0.6:2379'], prefix: '/lab', tls: false})
    assert.equal(clusterPoolLocation(e), 'etcd://10.0.0.5:2379,10.0.0.6:2379/lab')
    assert.equal(parseClusterLocation('etcds://h:2379').kind, 'etcd')
    assert.equal((parseClusterLocation('etcds://h:2379') as {prefix: string}).prefix, '/pn')
    const d = parseClusterLocation('lab/cluster', '/run/pn')
    assert.deepEqual(d, {kind: 'dir', location: 'lab/cluster', dir: '/run/pn/lab/cluster'})
    assert.equal(clusterPoolLocation(d), '/run/pn/lab/cluster/cluster-pool.json')
  })

  it('refuses a bad location with PN_INVALID_ARGUMENT naming a cluster location', () => {
    for (const bad of ['', 'etcd://host', 'etcd://h:1/a b', 'http://h:2379', 'consul://h:1']) {
      assert.throws(() => parseClusterLocation(bad), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /cluster/.test(e.message) && /--cluster/.test(e.hint ?? ''), bad)
    }
  })

  it('refuses TLS files for a directory, warns about plain http, and checks etcds:// pairs', () => {
    assert.throws(() => openClusterStore('/tmp/x', {etcdTls: {ca: '/ca.pem'}}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /etcds/.test(e.hint ?? ''))
    assert.match(openClusterStore('etcd://h:2379').warnings[0], /^cluster store over plain http/)
    assert.deepEqual(openClusterStore('etcds://h:2379', {etcdTls: {ca: '/ca.pem'}}).warnings, [])
    assert.throws(() => openClusterStore('etcds://h:2379', {etcdTls: {cert: '/c.pem'}}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /^open cluster store etcds:\/\/h:2379: --etcd-cert without --etcd-key/.test(e.message))
    assert.throws(() => openClusterStore('etcd://h:2379', {etcdTls: {ca: '/ca.pem'}}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /^open cluster store/.test(e.message) && /etcds:/.test(e.hint ?? ''))
  })
})

describe('cluster store (directory backend)', function () {
  this.timeout(30_000)
  let dir: string
  let clock: number
  let store: ClusterStore
  const open = () => openClusterStore(dir, {now: () => clock})

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cluster-'))
    clock = Date.now()
    store = open()
  })
  afterEach(async () => {
    await store.close()
    rmSync(dir, {recursive: true, force: true})
  })

  it('refuses to read or write before init (PN_CLUSTER_NOT_FOUND), then init writes the schema once', async () => {
    await assert.rejects(store.snapshot(), (e) => isPnError(e, 'PN_CLUSTER_NOT_FOUND') && /pn cluster init --cluster/.test(e.hint ?? ''))
    await assert.rejects(store.putServices([]), (e) => isPnError(e, 'PN_CLUSTER_NOT_FOUND'))
    assert.deepEqual(await store.init(), {location: dir, schema: 1, changed: true, pool: path.join(dir, 'cluster-pool.json')})
    assert.equal((await store.init()).changed, false)
    const s = await store.snapshot()
    assert.equal(s.schema, '1')
    assert.equal(s.nodes.size, 0)
  })

  it('refuses a store with a newer schema (PN_CLUSTER_SCHEMA), for init, reads and writes alike', async () => {
    await store.init()
    const file = path.join(dir, 'cluster.json')
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    // As etcd would: the change is a new revision of the key.
    doc.revision++
    doc.keys['/cluster/schema'] = {...doc.keys['/cluster/schema'], value: '2', mod: doc.revision}
    writeFileSync(file, JSON.stringify(doc))
    const fresh = open()
    for (const p of [fresh.init(), fresh.snapshot(), fresh.putServices([])]) {
      await assert.rejects(p, (e) => isPnError(e, 'PN_CLUSTER_SCHEMA') && /newer/.test(e.message) && /upgrade pn/.test(e.hint ?? '') && e.exitCode === 6)
    }
    // A store that had read schema 1 notices the change at its next write and refuses too.
    await assert.rejects(store.putServices([svc('10.96.0.1:80', '10.1.0.5:8080')]), (e) => isPnError(e, 'PN_CLUSTER_SCHEMA'))
    doc.keys['/cluster/schema'].value = 'x'
    writeFileSync(file, JSON.stringify(doc))
    await assert.rejects(open().snapshot(), (e) => isPnError(e, 'PN_CLUSTER_SCHEMA') && /not the one/.test(e.message))
  })

  it('registers a node under a lease; the keep-alive holds it, and without it the node and its endpoints expire', async () => {
    await store.init()
    const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'), {ttlSeconds: 2})
    await store.publishEndpoint(ep('10.1.1.5', 'n1'), reg)
    await store.reportApplied(7, reg)
    let s = await store.snapshot()
    assert.deepEqual(s.nodes.get('n1'), {...node('n1', '192.168.1.1', '10.1.1.0/24'), registeredAt: reg.node.registeredAt, leaseId: reg.leaseId})
    assert.deepEqual(s.endpoints.get('10.1.1.5'), ep('10.1.1.5', 'n1'))
    assert.equal(s.applied.get('n1')?.revision, 7)
    // Keep-alives (every third of the TTL) move the expiry on as the clock moves.
    for (let i = 0; i < 3; i++) {
      clock += 1000
      const before = reg.renewedAt
      await until('a keep-alive', () => reg.renewedAt > before)
    }
    assert.ok((await store.snapshot()).nodes.has('n1'))
    // The holder stops (as if killed): past the TTL, every key of the lease is gone, in one revision.
    await reg.close({revoke: false})
    const rev = (await store.snapshot()).revision
    clock += 2100
    s = await store.snapshot()
    assert.equal(s.nodes.size, 0)
    assert.equal(s.endpoints.size, 0)
    assert.equal(s.applied.size, 0)
    assert.equal(s.revision, rev + 1)
    // A write under the expired lease is refused.
    await assert.rejects(store.publishEndpoint(ep('10.1.1.6', 'n1'), reg), (e) => isPnError(e, 'PN_CLUSTER_LEASE_LOST'))
  })

  it('reports a lost lease to the holder, and revokes on close', async () => {
    await store.init()
    let lost = 0
    const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'), {ttlSeconds: 2, onLost: () => lost++})
    clock += 5000 // the holder was frozen past its TTL
    await until('the loss', () => lost === 1)
    assert.equal(reg.lost, true)
    const reg2 = await store.registerNode(node('n2', '192.168.1.2', '10.1.2.0/24'), {ttlSeconds: 2})
    await reg2.close()
    assert.equal((await store.snapshot()).nodes.size, 0)
  })

  it('validates what it publishes', async () => {
    await store.init()
    await assert.rejects(store.registerNode({...node('n1', '192.168.1.1', '10.1.1.0/24'), reach: 'wormhole' as never}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /direct, bgp, tunnel/.test(e.message))
    await assert.rejects(store.registerNode({...node('n1', '192.168.1.1', '10.1.1.0/24'), nodeIps: []}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    await assert.rejects(store.registerNode(node('-bad', '192.168.1.1', '10.1.1.0/24')), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    await assert.rejects(store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'), {ttlSeconds: 1}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
    await assert.rejects(store.publishEndpoint(ep('10.1.2.5', 'n2'), reg), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /n2/.test(e.message))
    await assert.rejects(store.publishEndpoint(ep('10.1.1.500', 'n1'), reg), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    await assert.rejects(store.putServices([svc('10.96.0.1:80', '10.1.0.5:8080'), svc('10.96.0.1:80/tcp', '10.1.0.6:8080')]), (e) => isPnError(e, 'PN_SERVICE_CONFLICT'))
    await reg.close()
  })

  it('publishes endpoints by canonical IP and deletes one only for the node that holds it', async () => {
    await store.init()
    const r1 = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
    const r2 = await store.registerNode(node('n2', 'fd00::2', 'fd00:10:2::/64'))
    await store.publishEndpoint(ep('10.1.1.5', 'n1'), r1)
    await store.publishEndpoint(ep('fd00:10:2:0::5', 'n2', {namespace: 'default', pod: 'web-1', identity: 1234}), r2)
    const s = await store.snapshot()
    assert.deepEqual([...s.endpoints.keys()].sort(), ['10.1.1.5', 'fd00:10:2::5'])
    assert.equal(s.endpoints.get('fd00:10:2::5')?.identity, 1234)
    assert.equal(s.endpoints.get('fd00:10:2::5')?.pod, 'web-1')
    assert.equal((await store.deleteEndpoint('10.1.1.5', 'n2')).deleted, false)
    assert.equal((await store.deleteEndpoint('10.1.1.5', 'n1')).deleted, true)
    assert.equal((await store.deleteEndpoint('10.1.1.5', 'n1')).deleted, false)
    assert.equal((await store.deleteEndpoint('fd00:10:2::5', 'n2')).deleted, true)
    await assert.rejects(store.deleteEndpoint('nope', 'n1'), (e) => isPnError(e, 'PN_INVALID_IP'))
    await r1.close()
    await r2.close()
  })

  it('writes the service table in shards, only what changed, and reads it back whole', async () => {
    await store.init()
    const table = Array.from({length: 200}, (_, i) => svc(`10.96.${i >> 8}.${(i & 255) + 1}:80`, `10.1.0.${(i % 250) + 1}:8080`))
    const w = await store.putServices(table)
    assert.equal(w.changed, true)
    assert.equal(w.count, 200)
    assert.ok(w.shards > 32 && w.shards <= SERVICE_SHARDS, `${w.shards} shards`)
    const again = await store.putServices([...table].reverse())
    assert.equal(again.changed, false)
    const s = await store.snapshot()
    const view = s.services()
    assert.equal(view.consistent, true)
    assert.equal(view.services.length, 200)
    assert.deepEqual(new Set(view.services.map((x) => JSON.stringify(x))), new Set(table.map((x) => JSON.stringify(x))))
    // One backend changes: one shard is rewritten (plus the table key).
    const next = table.map((x, i) => (i === 17 ? svc(`10.96.0.18:80`, '10.1.0.99:8080') : x))
    const one = await store.putServices(next)
    assert.equal(one.shards, 1)
    const keys = new ClusterKeys('')
    const events: string[] = []
    const watch = store.watch(one.revision, {onEvents: (_r, evs) => events.push(...evs.map((e) => e.key)), onCompacted: () => undefined, onError: () => undefined})
    await until('the write\'s events', () => events.length === 2)
    await watch.close()
    assert.deepEqual(events.sort(), [keys.shard(shardOf(next[17])), keys.table].sort())
    // Emptying the table deletes every shard.
    await store.putServices([])
    const empty = (await store.snapshot()).services()
    assert.deepEqual(empty.services, [])
    assert.equal(empty.consistent, true)
    assert.equal(empty.mark?.count, 0)
  })

  it('two writers of the service table at once end with one of the two tables, never a mix', async () => {
    await store.init()
    const a = Array.from({length: 40}, (_, i) => svc(`10.96.1.${i + 1}:80`, '10.1.0.1:8080'))
    const b = Array.from({length: 40}, (_, i) => svc(`10.96.2.${i + 1}:80`, '10.1.0.2:8080'))
    for (let round = 0; round < 3; round++) {
      const other = open()
      await Promise.all([store.putServices(a), other.putServices(b)])
      const got = (await store.snapshot()).services()
      assert.equal(got.consistent, true)
      const fes = got.services.map((s) => s.frontend.vip.split('.')[2])
      assert.ok(fes.every((x) => x === '1') || fes.every((x) => x === '2'), `round ${round}: a mix ${fes.join(',')}`)
      assert.equal(fes.length, 40)
      await other.close()
    }
  })

  it('follows the cluster from a revision, and resyncs from a fresh read when the history was compacted', async () => {
    await store.init()
    const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
    const base = await store.snapshot()
    const updates: {revision: number; resync: boolean; endpoints: boolean}[] = []
    const f = await store.follow({from: base, onUpdate: (_s, u) => updates.push({revision: u.revision, resync: u.resync, endpoints: u.endpoints})})
    const w1 = await store.publishEndpoint(ep('10.1.1.5', 'n1'), reg)
    await until('the endpoint', () => f.state.endpoints.has('10.1.1.5'))
    assert.deepEqual(updates, [{revision: w1.revision, resync: false, endpoints: true}])
    await f.close()

    // Resume from the state as it was (an agent that kept its view), after two more writes: both arrive, in order.
    const resumed = ClusterState.fromEntries(store.keys, f.state.revision, [])
    const w2 = await store.publishEndpoint(ep('10.1.1.6', 'n1'), reg)
    const w3 = await store.deleteEndpoint('10.1.1.6', 'n1')
    const seen: number[] = []
    const g = await store.follow({from: resumed, onUpdate: (_s, u) => seen.push(u.revision)})
    await until('both revisions', () => seen.length === 2)
    assert.deepEqual(seen, [w2.revision, w3.revision])
    await g.close()

    // Compacted past the follower's revision: one update with resync, the state rebuilt from a read.
    const stale = ClusterState.fromEntries(store.keys, base.revision, [])
    await store.publishEndpoint(ep('10.1.1.7', 'n1'), reg)
    await store.compact((await store.snapshot()).revision)
    const got: {resync: boolean}[] = []
    const h = await store.follow({from: stale, onUpdate: (_s, u) => got.push({resync: u.resync})})
    await until('the resync', () => got.length === 1)
    assert.deepEqual(got, [{resync: true}])
    assert.deepEqual([...h.state.endpoints.keys()].sort(), ['10.1.1.5', '10.1.1.7'])
    assert.ok(h.state.nodes.has('n1'))
    // And it keeps following after the resync.
    await store.publishEndpoint(ep('10.1.1.8', 'n1'), reg)
    await until('a change after the resync', () => h.state.endpoints.has('10.1.1.8'))
    await h.close()
    await reg.close()
  })

  it('a follower reports a watch failure and resumes after it, from the last revision it applied', async () => {
    await store.init()
    const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
    const errors: string[] = []
    const revs: number[] = []
    const f = await store.follow({retryMs: 50, onUpdate: (_s, u) => revs.push(u.revision), onError: (e) => errors.push(e.code)})
    const file = path.join(dir, 'cluster.json')
    const good = readFileSync(file, 'utf8')
    writeFileSync(file, '{"torn":')
    await until('the error', () => errors.length > 0)
    assert.equal(errors[0], 'PN_CLUSTER_CORRUPT')
    writeFileSync(file, good)
    const w = await store.publishEndpoint(ep('10.1.1.5', 'n1'), reg)
    await until('the write after the failure', () => f.state.endpoints.has('10.1.1.5'))
    assert.deepEqual(revs, [w.revision])
    await f.close()
    await reg.close()
  })

  it('keeps a bounded history: a watch from before it is compacted, one inside it gets every revision', async () => {
    const small = openClusterStore(dir, {now: () => clock, history: 5})
    await small.init() // revision 2
    const reg = await small.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
    for (let i = 1; i <= 6; i++) await small.publishEndpoint(ep(`10.1.1.${i}`, 'n1'), reg) // revisions 4…9
    const compacted: number[] = []
    const old = small.watch(4, {onEvents: () => assert.fail('events from a compacted revision'), onCompacted: (r) => compacted.push(r), onError: () => undefined})
    await until('the compaction', () => compacted.length === 1)
    await old.close()
    assert.deepEqual(compacted, [4]) // the history holds revisions 5…9
    const revs: number[] = []
    const w = small.watch(5, {onEvents: (r) => revs.push(r), onCompacted: () => assert.fail('compacted'), onError: () => undefined})
    await until('five revisions', () => revs.length === 5)
    await w.close()
    assert.deepEqual(revs, [5, 6, 7, 8, 9])
    assert.equal(LOG_REVISIONS, 1000) // the default, as docs/CLUSTER.md says
    await reg.close()
    await small.close()
  })

  it('skips and reports a key that does not decode, keeping the rest', () => {
    const keys = new ClusterKeys('/pn')
    const s = ClusterState.fromEntries(keys, 5, [
      {key: keys.schema, value: '1', createRevision: 1, modRevision: 1},
      {key: keys.node('n1'), value: JSON.stringify({...node('n1', '192.168.1.1', '10.1.1.0/24'), registeredAt: 'x'}), createRevision: 2, modRevision: 2, lease: '9'},
      {key: keys.node('n2'), value: '{"name":', createRevision: 3, modRevision: 3},
      {key: keys.shard(3), value: '[{"frontend":"10.96.0.1:80","backends":["bad"]}]', createRevision: 4, modRevision: 4},
      {key: `${keys.v1}unknown/x`, value: 'whatever', createRevision: 5, modRevision: 5},
    ])
    assert.deepEqual([...s.nodes.keys()], ['n1'])
    assert.equal(s.nodes.get('n1')?.leaseId, '9')
    assert.deepEqual([...s.problems.keys()].sort(), [keys.node('n2'), keys.shard(3)].sort())
    assert.ok([...s.problems.values()].every((e) => e.code === 'PN_CLUSTER_CORRUPT' || e.code === 'PN_SERVICE_INVALID'))
    // A table without its table key is not consistent (never applied half-written).
    assert.equal(s.services().consistent, true)
    s.applyEvents(6, [{type: 'put', key: keys.shard(5), value: '[{"frontend":"10.96.0.2:80","backends":["10.1.0.1:80"]}]', revision: 6}])
    assert.equal(s.services().consistent, false)
    s.applyEvents(7, [{type: 'put', key: keys.node('n2'), value: JSON.stringify({...node('n2', '192.168.1.2', '10.1.2.0/24'), registeredAt: 'y'}), revision: 7}])
    assert.equal(s.problems.has(keys.node('n2')), false)
    assert.equal(s.revision, 7)
  })

  it('pn cluster status\'s data: alive and pool-only nodes, applied revisions against the desired state', async () => {
    await store.init()
    const pool = openPoolStore(store.poolLocation)
    await initPool(pool, {cidrs: ['10.1.0.0/16'], maskSize: 24})
    for (const name of ['n1', 'n2', 'n3']) await allocatePodCidrs(pool, name)
    const r1 = await store.registerNode(node('n1', '192.168.1.1', '10.1.0.0/24'))
    const r2 = await store.registerNode({...node('n2', '192.168.1.2', '10.1.1.0/24'), reach: 'bgp'})
    const w = await store.publishEndpoint(ep('10.1.0.5', 'n1'), r1)
    await store.reportApplied(w.revision, r1)
    await store.reportApplied(w.revision - 1, r2)
    // 42 s later by the status's clock (the store's clock stays: the leases are not due).
    const s = await clusterStatus(store, {pool, now: clock + 42_000})
    assert.equal(s.desiredRevision, w.revision)
    assert.deepEqual(s.nodes.map((n) => [n.name, n.alive, n.reach ?? null, n.appliedRevision, n.converged, n.podCidrs.join()]), [
      ['n1', true, 'direct', w.revision, true, '10.1.0.0/24'],
      ['n2', true, 'bgp', w.revision - 1, false, '10.1.1.0/24'],
      ['n3', false, null, null, null, '10.1.2.0/24'],
    ])
    assert.ok(s.nodes[0].leaseAgeSeconds! >= 42)
    assert.deepEqual([s.endpoints, s.services, s.problems], [1, {count: 0, consistent: true}, []])
    await r1.close()
    await r2.close()
  })
})

describe('cluster store writes: counted, and never silent', () => {
  it('a write whose only compare is the schema\'s, failing with the schema unchanged, is an error (not a silent no-op)', async () => {
    // A backend whose transactions never commit (as etcd did when the compare named the wrong target).
    const kv: ClusterKv = {
      location: 'fake',
      range: async (prefix) => ({revision: 5, kvs: prefix.endsWith('schema') || prefix === '/cluster/' ? [{key: '/cluster/schema', value: '1', createRevision: 2, modRevision: 2}] : []}),
      txn: async () => ({succeeded: false, revision: 5}),
      grantLease: async (ttlSeconds) => ({id: '7', ttlSeconds, keepAlive: async () => true, revoke: async () => undefined}),
      watch: () => ({close: async () => undefined}),
      compact: async () => undefined,
      close: async () => undefined,
    }
    const store = new ClusterStore(kv, parseClusterLocation('/fake'))
    await assert.rejects(store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24')), (e) => isPnError(e, 'PN_INTERNAL') && /schema compare/.test(e.message))
    const reg = {leaseId: '7', node: {...node('n1', '192.168.1.1', '10.1.1.0/24'), registeredAt: 'x'}}
    await assert.rejects(store.publishEndpoint(ep('10.1.1.5', 'n1'), reg), (e) => isPnError(e, 'PN_INTERNAL'))
    await assert.rejects(store.reportApplied(3, reg), (e) => isPnError(e, 'PN_INTERNAL'))
  })

  it('costs one write per pod ADD (publish) and per DEL (delete), after the schema is read once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cluster-count-'))
    try {
      const inner = new DirKv(dir)
      const calls: string[] = []
      const kv: ClusterKv = {
        location: dir,
        range: (p) => (calls.push('read'), inner.range(p)),
        txn: (c, w) => (calls.push(`write ${w.length}`), inner.txn(c, w)),
        grantLease: (t) => (calls.push('lease'), inner.grantLease(t)),
        watch: (p, r, h) => inner.watch(p, r, h),
        compact: (r) => inner.compact(r),
        close: () => inner.close(),
      }
      const store = new ClusterStore(kv, parseClusterLocation(dir))
      await store.init()
      const reg = await store.registerNode(node('n1', '192.168.1.1', '10.1.1.0/24'))
      calls.length = 0
      await store.publishEndpoint(ep('10.1.1.5', 'n1'), reg)
      assert.deepEqual(calls, ['write 1'])
      calls.length = 0
      await store.deleteEndpoint('10.1.1.5', 'n1')
      assert.deepEqual(calls, ['read', 'write 1'])
      await reg.close()
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
