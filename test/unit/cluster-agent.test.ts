/**
 * The agent's cluster side (src/cluster/agent.ts) over a directory store and recording kernels:
 * registration, the publication queue, following and converging, the applied revision, and the
 * store's state when it cannot be used. The real-kernel, real-etcd version is
 * test/integration/cluster-agents.integration.ts.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ClusterAgent} from '../../src/cluster/agent.js'
import {pn} from '../helpers/cli.js'
import {PublicationQueue, type Publication} from '../../src/cluster/publish.js'
import {DirKv} from '../../src/cluster/kv-dir.js'
import type {ClusterKv} from '../../src/cluster/kv.js'
import {parseClusterLocation} from '../../src/cluster/location.js'
import {ClusterStore, openClusterStore} from '../../src/cluster/store.js'
import {decodeIpcacheInfo, decodeIpcacheKey} from '../../src/datapath/bpf/maps/ipcache.js'
import {deleteEndpoint, getEndpoint, saveEndpoint, type EndpointRecord} from '../../src/endpoint/store.js'
import {labelEndpoint} from '../../src/cluster/identities.js'
import {RecordingBackend} from '../../src/kernel/backend.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import type {NodeContext} from '../../src/node/context.js'
import {parseService, type ServiceSpec} from '../../src/service/model.js'
import {PnError} from '../../src/errors.js'

const ep = (ip: string, nodeName = 'a') => ({ip, node: nodeName, containerId: `c-${ip}`, labels: {}, identity: null})

async function until(what: string, cond: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('publication queue', () => {
  it('coalesces per IP (the newest wins), keeps the order of the newest changes, and sends nothing twice', async () => {
    const sent: string[] = []
    const q = new PublicationQueue(async (p) => {
      sent.push(`${p.kind} ${p.ip}`)
    })
    q.put(ep('10.1.0.1'))
    q.put(ep('10.1.0.2'))
    q.delete('10.1.0.1') // put then delete: a delete, moved behind .2
    q.delete('10.1.0.3')
    q.put(ep('10.1.0.3')) // delete then put: a put
    assert.deepEqual(q.list().map((p) => `${p.kind} ${p.ip}`), ['put 10.1.0.2', 'delete 10.1.0.1', 'put 10.1.0.3'])
    assert.equal(q.coalesced, 2)
    assert.equal(await q.drain(), true)
    assert.deepEqual(sent, ['put 10.1.0.2', 'delete 10.1.0.1', 'put 10.1.0.3'])
    assert.equal(q.size, 0)
    assert.equal(await q.drain(), true)
    assert.equal(sent.length, 3)
    // A drain of an empty queue must not stay behind as the running one (regression: it did, and nothing was sent again).
    q.put(ep('10.1.0.9'))
    assert.equal(await q.drain(), true)
    assert.deepEqual(sent.slice(3), ['put 10.1.0.9'])
  })

  it('a failing send stops the drain with the publication at the head; the next drain sends it first, in order', async () => {
    let up = false
    const sent: string[] = []
    const q = new PublicationQueue(async (p) => {
      if (!up) throw new Error('etcd unreachable')
      sent.push(`${p.kind} ${p.ip}`)
    })
    q.put(ep('10.1.0.1'))
    q.put(ep('10.1.0.2'))
    assert.equal(await q.drain(), false)
    assert.match(String(q.lastError), /etcd unreachable/)
    q.delete('10.1.0.2')
    q.put(ep('10.1.0.4'))
    assert.deepEqual(q.list().map((p) => `${p.kind} ${p.ip}`), ['put 10.1.0.1', 'delete 10.1.0.2', 'put 10.1.0.4'])
    up = true
    assert.equal(await q.drain(), true)
    assert.deepEqual(sent, ['put 10.1.0.1', 'delete 10.1.0.2', 'put 10.1.0.4'])
  })

  it('a change to an IP while its publication is in flight is sent after it, not dropped', async () => {
    const sent: Publication[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const q = new PublicationQueue(async (p) => {
      if (sent.length === 0) await gate
      sent.push(p)
    })
    q.put(ep('10.1.0.1'))
    const d = q.drain()
    q.delete('10.1.0.1')
    release()
    assert.equal(await d, true)
    assert.deepEqual(sent.map((p) => `${p.kind} ${p.ip}`), ['put 10.1.0.1', 'delete 10.1.0.1'])
  })
})

describe('cluster agent (directory store, recording kernel)', function () {
  this.timeout(30_000)
  let dir: string
  const agents: ClusterAgent[] = []
  const stores: ClusterStore[] = []

  const ctx = (name: string, cidr: string): NodeContext => ({
    version: 1, name, uplink: 'eth0', podCidrs: [cidr], routerIps: [cidr.replace(/0\/24$/, '1')], mtu: 1500, routeMtu: 1500, bpffsRoot: `/sys/fs/bpf/${name}`, routing: 'bpf', createdAt: '2026-01-01T00:00:00Z',
  })
  const rec = (id: string, ip: string): EndpointRecord => ({
    id: `${id}:eth0`, containerId: id, ifname: 'eth0', netns: `/run/netns/${id}`, ips: [ip], routerIps: [], hostIfname: 'lxc0', hostMac: '', hostIfindex: 1, podIfname: 'eth0', podMac: '', podIfindex: 2, mtu: 1500, endpointId: 1, podName: id, podNamespace: 'default', createdAt: '',
  })

  let clock: number | undefined
  function agent(name: string, cidr: string, nodeIp: string, more: {ttlSeconds?: number; localResyncMs?: number} = {}, refuseServices = 0) {
    const kernel = new RecordingBackend((op) => (op.kind === 'map.dump' ? {kind: 'map.dump', entries: []} : op.kind === 'route.list' ? {kind: 'route.list', routes: []} : undefined))
    const tables: ServiceSpec[][] = []
    const stateDir = mkdtempSync(path.join(dir, `${name}-`))
    const store = openClusterStore(path.join(dir, 'store'), {now: () => clock ?? Date.now()})
    stores.push(store)
    const a = new ClusterAgent({store, stateDir, node: ctx(name, cidr), kernel, nodeIps: [nodeIp], autoDirectRoutes: true, retryMs: 50, maxRetryMs: 200, applyServices: async (s) => {
      if (refuseServices-- > 0) throw new PnError('PN_SERVICE_CONFLICT', 'add service 10.96.0.10:80/tcp: VIP 10.96.0.10 is an address of this node')
      tables.push(s)
    }, ...more})
    agents.push(a)
    const ops = () => kernel.applied.flatMap((x) => x.ops).filter((o) => o.kind !== 'map.dump' && o.kind !== 'route.list')
    /** Refuse the next `k` tables (the node's service writer fails). */
    const refuse = (k: number) => void (refuseServices = k)
    return {a, ops, tables, stateDir, refuse, words: () => ops().map(word)}
  }

  function word(op: KernelOp): string {
    if (op.kind === 'map.update') return `ipcache ${decodeIpcacheKey(op.key).prefix} node ${decodeIpcacheInfo(op.value).nodeIp}`
    if (op.kind === 'map.delete') return `ipcache delete ${decodeIpcacheKey(op.key).prefix}`
    if (op.kind === 'route.add') return `route ${op.dst} via ${op.via} dev ${op.dev}`
    if (op.kind === 'route.del') return `route delete ${op.dst}`
    return op.kind
  }

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cagent-'))
    clock = undefined
  })
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop({revoke: true})
    for (const s of stores.splice(0)) await s.close()
    rmSync(dir, {recursive: true, force: true})
  })

  it('a node\'s endpoints and pod CIDR reach the other node\'s kernel, the service table reaches both, each reports its applied revision; DEL and the node\'s end remove them', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    const B = agent('b', '10.1.2.0/24', '192.168.0.2')
    A.a.start()
    B.a.start()
    await until('both registered and connected', () => A.a.status().registered && B.a.status().registered && A.a.status().store === 'connected')
    await until('routes to each other', () => A.words().includes('route 10.1.2.0/24 via 192.168.0.2 dev eth0') && B.words().includes('route 10.1.1.0/24 via 192.168.0.1 dev eth0'))

    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    await until('pod1 in B\'s ipcache', () => B.words().includes('ipcache 10.1.1.5/32 node 192.168.0.1'))
    assert.equal(A.words().filter((w) => w.startsWith('ipcache')).length, 0, 'a node never puts its own endpoints in its ipcache as remote')

    const svc = [parseService('10.96.0.10:80/tcp', ['10.1.1.5:8080'])]
    const put = await admin.putServices(svc)
    await until('the table on both', () => A.tables.length === 1 && B.tables.length === 1)
    assert.deepEqual(B.tables[0], svc)
    await until('applied revisions reported', () => (A.a.status().appliedRevision ?? 0) >= put.revision && (B.a.status().appliedRevision ?? 0) >= put.revision)
    let applied = 0
    for (let i = 0; i < 200 && applied < put.revision; i++) {
      applied = (await admin.snapshot()).applied.get('b')?.revision ?? 0
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.ok(applied >= put.revision, 'b reported a revision covering the service write to the store')
    assert.equal(A.tables.length, 1, 'an unchanged table is not applied again')

    const before = B.ops().length
    A.a.endpointDeleted(rec('pod1', '10.1.1.5'))
    await until('pod1 gone from B', () => B.words().includes('ipcache delete 10.1.1.5/32'))
    assert.deepEqual(B.ops().slice(before).map(word), ['ipcache delete 10.1.1.5/32'], 'only the deleted endpoint changes')

    A.a.endpointAdded(rec('pod2', '10.1.1.6'))
    await until('pod2 on B', () => B.words().includes('ipcache 10.1.1.6/32 node 192.168.0.1'))
    await A.a.stop({revoke: true})
    await until('A\'s entries and route gone from B', () => B.words().includes('ipcache delete 10.1.1.6/32') && B.words().includes('route delete 10.1.1.0/24'))
  })

  it('an endpoint event diffs the ipcache only (no route work); a node that joins or leaves diffs the routes too; a service change neither', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    const B = agent('b', '10.1.2.0/24', '192.168.0.2')
    A.a.start()
    B.a.start()
    await until('routes to each other', () => A.words().includes('route 10.1.2.0/24 via 192.168.0.2 dev eth0') && B.words().includes('route 10.1.1.0/24 via 192.168.0.1 dev eth0'))
    // Settled: B has applied what it has seen (both registrations), and nothing more comes.
    let d0 = B.a.status().diffs
    for (let quiet = 0; quiet < 10; ) {
      await new Promise((r) => setTimeout(r, 30))
      const st = B.a.status()
      quiet = st.appliedRevision === st.seenRevision && JSON.stringify(st.diffs) === JSON.stringify(d0) ? quiet + 1 : 0
      d0 = st.diffs
    }
    const ops0 = B.ops().length

    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    await until('pod1 on B', () => B.words().includes('ipcache 10.1.1.5/32 node 192.168.0.1'))
    A.a.endpointAdded(rec('pod2', '10.1.1.6'))
    await until('pod2 on B', () => B.words().includes('ipcache 10.1.1.6/32 node 192.168.0.1'))
    A.a.endpointDeleted(rec('pod1', '10.1.1.5'))
    await until('pod1 gone from B', () => B.words().includes('ipcache delete 10.1.1.5/32'))
    const d1 = B.a.status().diffs
    assert.equal(d1.routes, d0.routes, `endpoint events did no route work (diffs ${JSON.stringify(d0)} → ${JSON.stringify(d1)})`)
    assert.ok(d1.ipcache > d0.ipcache && d1.ipcache <= d0.ipcache + 3, `one ipcache diff per endpoint event at most (${JSON.stringify(d0)} → ${JSON.stringify(d1)})`)
    assert.deepEqual(B.ops().slice(ops0).map(word), ['ipcache 10.1.1.5/32 node 192.168.0.1', 'ipcache 10.1.1.6/32 node 192.168.0.1', 'ipcache delete 10.1.1.5/32'])

    const put = await admin.putServices([parseService('10.96.0.10:80/tcp', ['10.1.1.6:8080'])])
    await until('B applied the table', () => B.tables.length === 1 && (B.a.status().appliedRevision ?? 0) >= put.revision)
    assert.deepEqual(B.a.status().diffs, d1, 'a service change diffs neither')

    const C = agent('c', '10.1.3.0/24', '192.168.0.3')
    C.a.start()
    await until('B routes to c', () => B.words().includes('route 10.1.3.0/24 via 192.168.0.3 dev eth0'))
    const d2 = B.a.status().diffs
    assert.ok(d2.routes > d1.routes && d2.ipcache > d1.ipcache, `a node that joins diffs both (${JSON.stringify(d1)} → ${JSON.stringify(d2)})`)
    await C.a.stop({revoke: true})
    await until('B\'s route to c gone', () => B.words().includes('route delete 10.1.3.0/24'))
    assert.ok(B.a.status().diffs.routes > d2.routes, 'and one that leaves')
  })

  it('a watch that lost its history (compacted): the agent resyncs from a fresh read and changes only what differs (no entry or route deleted and re-added)', async () => {
    const where = path.join(dir, 'store')
    const admin = openClusterStore(where)
    stores.push(admin)
    await admin.init()
    const loc = parseClusterLocation(where)
    const inner = new DirKv(loc.kind === 'dir' ? loc.dir : where)
    // B's watches: each can be cut (its events dropped, as on a broken stream) and told its history is gone.
    const watches: {cut: boolean; compacted: (rev: number) => void}[] = []
    const kv: ClusterKv = {
      location: inner.location,
      range: (p) => inner.range(p),
      txn: (c, w) => inner.txn(c, w),
      grantLease: (t) => inner.grantLease(t),
      watch: (p, r, h, o) => {
        const w = {cut: false, compacted: (rev: number) => h.onCompacted(rev)}
        watches.push(w)
        return inner.watch(p, r, {...h, onEvents: (rev, evs) => (w.cut ? undefined : h.onEvents(rev, evs))}, o)
      },
      compact: (r) => inner.compact(r),
      close: () => inner.close(),
    }
    const store = new ClusterStore(kv, loc)
    stores.push(store)
    const kernel = new RecordingBackend((op) => (op.kind === 'map.dump' ? {kind: 'map.dump', entries: []} : op.kind === 'route.list' ? {kind: 'route.list', routes: []} : undefined))
    const B = new ClusterAgent({store, stateDir: mkdtempSync(path.join(dir, 'b-')), node: ctx('b', '10.1.2.0/24'), kernel, nodeIps: ['192.168.0.2'], autoDirectRoutes: true, retryMs: 50, maxRetryMs: 200, applyServices: async () => undefined})
    agents.push(B)
    const bWords = () => kernel.applied.flatMap((x) => x.ops).filter((o) => o.kind !== 'map.dump' && o.kind !== 'route.list').map(word)
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    A.a.start()
    B.start()
    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    A.a.endpointAdded(rec('pod2', '10.1.1.6'))
    await until('B has the route and both pods', () => ['route 10.1.1.0/24 via 192.168.0.1 dev eth0', 'ipcache 10.1.1.5/32 node 192.168.0.1', 'ipcache 10.1.1.6/32 node 192.168.0.1'].every((w) => bWords().includes(w)))
    const before = bWords().length
    const seen = B.status().seenRevision ?? 0

    for (const w of watches) w.cut = true
    A.a.endpointDeleted(rec('pod1', '10.1.1.5'))
    A.a.endpointAdded(rec('pod3', '10.1.1.7'))
    await until('the store has the changes', () => A.a.status().queued === 0 && A.a.status().published >= 4)
    await new Promise((r) => setTimeout(r, 300))
    assert.equal(bWords().length, before, 'B saw nothing while its watch was cut')
    assert.equal(B.status().seenRevision, seen)

    watches.at(-1)!.compacted(seen)
    await until('B resynced', () => bWords().includes('ipcache 10.1.1.7/32 node 192.168.0.1') && bWords().includes('ipcache delete 10.1.1.5/32'))
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(bWords().slice(before), ['ipcache delete 10.1.1.5/32', 'ipcache 10.1.1.7/32 node 192.168.0.1'], 'only the difference: pod2 and the route stay as they were')
    assert.ok((B.status().seenRevision ?? 0) > seen)
  })

  it('follows only the desired state: the other agents\' applied reports are never sent to its watch (with N agents each change would send it N)', async () => {
    const where = path.join(dir, 'store')
    const admin = openClusterStore(where)
    stores.push(admin)
    await admin.init()
    const loc = parseClusterLocation(where)
    const inner = new DirKv(loc.kind === 'dir' ? loc.dir : where)
    const watched: string[] = []
    const kv: ClusterKv = {
      location: inner.location,
      range: (p) => inner.range(p),
      txn: (c, w) => inner.txn(c, w),
      grantLease: (t) => inner.grantLease(t),
      watch: (p, r, h, o) => inner.watch(p, r, {...h, onEvents: (rev, evs) => (watched.push(...evs.map((e) => e.key)), h.onEvents(rev, evs))}, o),
      compact: (r) => inner.compact(r),
      close: () => inner.close(),
    }
    const store = new ClusterStore(kv, loc)
    stores.push(store)
    const kernel = new RecordingBackend((op) => (op.kind === 'map.dump' ? {kind: 'map.dump', entries: []} : op.kind === 'route.list' ? {kind: 'route.list', routes: []} : undefined))
    const tables: ServiceSpec[][] = []
    const A = new ClusterAgent({store, stateDir: mkdtempSync(path.join(dir, 'a-')), node: ctx('a', '10.1.1.0/24'), kernel, nodeIps: ['192.168.0.1'], autoDirectRoutes: true, retryMs: 50, maxRetryMs: 200, applyServices: async (t) => void tables.push(t)})
    agents.push(A)
    const B = agent('b', '10.1.2.0/24', '192.168.0.2')
    A.start()
    B.a.start()
    await until('both registered', () => A.status().registered && B.a.status().registered)
    B.a.endpointAdded(rec('pod1', '10.1.2.5'))
    const put = await admin.putServices([parseService('10.96.0.10:80/tcp', ['10.1.2.5:8080'])])
    await until('both applied the write', () => (A.status().appliedRevision ?? 0) >= put.revision && (B.a.status().appliedRevision ?? 0) >= put.revision && tables.length === 1)
    let reported = 0
    for (let i = 0; i < 200 && reported < put.revision; i++) {
      reported = (await admin.snapshot()).applied.get('b')?.revision ?? 0
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.ok(reported >= put.revision, 'b reported its applied revision to the store')
    await new Promise((r) => setTimeout(r, 300)) // a watch tick past b's report
    assert.ok(watched.some((k) => k.endsWith('/nodes/b')) && watched.some((k) => k.endsWith('/endpoints/10.1.2.5')) && watched.some((k) => k.endsWith('/services-table')), `A watched nodes, endpoints and services: ${watched.join(' ')}`)
    assert.deepEqual(watched.filter((k) => k.includes('/applied/') || k.endsWith('/schema')), [], 'no applied report (or schema key) reached A\'s watch')
  })

  it('a store with a newer schema: the agent refuses it (never registers, publishes or programs), and its status says why', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const file = path.join(dir, 'store', 'cluster.json')
    const doc = JSON.parse(readFileSync(file, 'utf8'))
    doc.revision++
    doc.keys['/cluster/schema'] = {...doc.keys['/cluster/schema'], value: '2', mod: doc.revision}
    writeFileSync(file, JSON.stringify(doc))
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    A.a.start()
    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    await until('the schema error in the status', () => /newer/.test(A.a.status().error ?? ''))
    await new Promise((r) => setTimeout(r, 300)) // retries meanwhile
    const s = A.a.status()
    assert.equal(s.store, 'retrying')
    assert.match(s.error ?? '', /schema/)
    assert.deepEqual([s.registered, s.appliedRevision, s.queued], [false, null, 1])
    assert.deepEqual(A.ops(), [], 'nothing programmed from a store it cannot read')
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).keys['/cluster/schema'].value, '2', 'the store is left as it was')
    assert.equal(Object.keys(JSON.parse(readFileSync(file, 'utf8')).keys).filter((k) => k.includes('/v1/')).length, 0, 'no key written')
  })

  it('an unusable store: retrying (with the cause) while publications queue; once it works, connected, and the queue is sent', async () => {
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    A.a.start()
    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    await until('a failed registration', () => /register/.test(A.a.status().error ?? ''))
    const s = A.a.status()
    assert.equal(s.store, 'retrying')
    assert.match(s.error ?? '', /no cluster there/)
    assert.equal(s.queued, 1)
    assert.equal(s.registered, false)

    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    await until('connected, the queue sent', () => A.a.status().store === 'connected' && A.a.status().queued === 0)
    const snap = await admin.snapshot()
    // Published with the identity of its (empty) label set in its namespace: the first cluster identity.
    assert.deepEqual(snap.endpoints.get('10.1.1.5'), {ip: '10.1.1.5', node: 'a', containerId: 'pod1', ifname: 'eth0', namespace: 'default', pod: 'pod1', labels: {}, identity: 256})
    assert.ok(snap.nodes.has('a'))
    assert.ok(Date.parse(A.a.status().since) > Date.parse(s.since))
  })

  it('a lease the store dropped (away longer than the TTL): the agent registers again and publishes the node\'s endpoints again from its records', async () => {
    const admin = openClusterStore(path.join(dir, 'store'), {now: () => clock ?? Date.now()})
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1', {ttlSeconds: 2})
    await saveEndpoint(A.stateDir, rec('pod1', '10.1.1.5'))
    A.a.start()
    await until('pod1 published from its record at registration', () => A.a.status().registered && A.a.status().queued === 0 && A.a.status().published >= 1)
    const lease = A.a.status().leaseId
    assert.ok((await admin.snapshot()).endpoints.has('10.1.1.5'))
    // The store's clock passes the TTL with no keep-alive: the lease and every key on it go.
    clock = Date.now() + 60_000
    await until('registered again under a new lease', () => A.a.status().registered && A.a.status().leaseId !== lease, 10_000)
    let snap = await admin.snapshot()
    for (let i = 0; i < 100 && !snap.endpoints.has('10.1.1.5'); i++) {
      await new Promise((r) => setTimeout(r, 20))
      snap = await admin.snapshot()
    }
    assert.equal(snap.nodes.get('a')?.leaseId, A.a.status().leaseId)
    assert.equal(snap.endpoints.get('10.1.1.5')?.containerId, 'pod1', 'the endpoint is published again under the new lease')
  })

  it('an ADD that replaces the attachment (same netns, a new IP) withdraws the old IP at once, and a failed ADD that tore the old one down withdraws it too', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    const B = agent('b', '10.1.2.0/24', '192.168.0.2')
    A.a.start()
    B.a.start()
    const env = {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'pod1', CNI_IFNAME: 'eth0'}
    await A.a.aroundCni(env, async () => {
      await saveEndpoint(A.stateDir, rec('pod1', '10.1.1.5'))
      return {exitCode: 0}
    })
    await until('pod1 on B', () => B.words().includes('ipcache 10.1.1.5/32 node 192.168.0.1'))
    // The same ADD again: the attachment is rebuilt with a new IP (the periodic comparison is 30 s away).
    await A.a.aroundCni(env, async () => {
      await saveEndpoint(A.stateDir, rec('pod1', '10.1.1.7'))
      return {exitCode: 0}
    })
    await until('the new IP on B and the old one gone', () => B.words().includes('ipcache 10.1.1.7/32 node 192.168.0.1') && B.words().includes('ipcache delete 10.1.1.5/32'))
    let snap = await admin.snapshot()
    assert.deepEqual([...snap.endpoints.keys()].sort(), ['10.1.1.7'])
    // An ADD that fails after the old attachment went: its IP is withdrawn, nothing is published.
    const failed = await A.a.aroundCni(env, async () => {
      await deleteEndpoint(A.stateDir, 'pod1', 'eth0')
      return {exitCode: 7}
    })
    assert.equal(failed.exitCode, 7)
    await until('the old IP gone from B', () => B.words().includes('ipcache delete 10.1.1.7/32'))
    snap = await admin.snapshot()
    assert.deepEqual([...snap.endpoints.keys()], [])
    // A failed ADD that left the attachment alone (e.g. 116, another live netns) withdraws nothing.
    await A.a.aroundCni(env, async () => {
      await saveEndpoint(A.stateDir, rec('pod1', '10.1.1.8'))
      return {exitCode: 0}
    })
    await until('10.1.1.8 on B', () => B.words().includes('ipcache 10.1.1.8/32 node 192.168.0.1'))
    await A.a.aroundCni(env, async () => ({exitCode: 116}))
    await new Promise((r) => setTimeout(r, 300))
    assert.ok(!B.words().includes('ipcache delete 10.1.1.8/32'))
    assert.deepEqual([...(await admin.snapshot()).endpoints.keys()], ['10.1.1.8'])
  })

  it('endpoints of CNI calls the agent did not see (the standalone path) are published, and records gone are withdrawn, by the periodic comparison', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1', {localResyncMs: 100})
    A.a.start()
    await until('A registered', () => A.a.status().registered)
    // A standalone ADD: a record, no publication through the agent.
    await saveEndpoint(A.stateDir, rec('solo', '10.1.1.9'))
    const listed = async (ip: string) => (await admin.snapshot()).endpoints.get(ip)
    let ep
    for (let i = 0; i < 200 && !ep; i++) {
      await new Promise((r) => setTimeout(r, 20))
      ep = await listed('10.1.1.9')
    }
    assert.equal(ep?.containerId, 'solo')
    // A standalone DEL: the record goes, the store entry follows.
    await deleteEndpoint(A.stateDir, 'solo', 'eth0')
    for (let i = 0; i < 200 && ep; i++) {
      await new Promise((r) => setTimeout(r, 20))
      ep = await listed('10.1.1.9')
    }
    assert.equal(ep, undefined)
  })

  it('publishes a pod with the identity of its labels; a relabel in the store (pn endpoint label) survives the periodic comparison: the record takes the store\'s labels', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1', {localResyncMs: 50})
    A.a.start()
    await until('A registered', () => A.a.status().registered)
    await saveEndpoint(A.stateDir, {...rec('web', '10.1.1.7'), labels: {app: 'web'}})
    const listed = async () => (await admin.snapshot()).endpoints.get('10.1.1.7')
    let ep
    for (let i = 0; i < 200 && !ep?.identity; i++) {
      await new Promise((r) => setTimeout(r, 20))
      ep = await listed()
    }
    assert.deepEqual(ep?.labels, {app: 'web'})
    assert.ok(ep?.identity && ep.identity >= 256, 'published with a cluster identity')
    const before = ep!.identity
    await labelEndpoint(admin, 'default/web', {set: {tier: 'front'}, remove: []})
    // Several periodic comparisons later the store still has the new labels, and so has the record.
    await new Promise((r) => setTimeout(r, 400))
    ep = await listed()
    assert.deepEqual(ep?.labels, {app: 'web', tier: 'front'})
    assert.notEqual(ep?.identity, before)
    assert.deepEqual((await getEndpoint(A.stateDir, 'web', 'eth0'))?.labels, {app: 'web', tier: 'front'})
  })

  it('a service table the node refuses: endpoints and routes still converge, the cause shows in the status, no applied revision is reported until the table is taken', async () => {
    const admin = openClusterStore(path.join(dir, 'store'))
    stores.push(admin)
    await admin.init()
    const A = agent('a', '10.1.1.0/24', '192.168.0.1')
    // Refusing until told otherwise: a loaded machine must not let a retry take the table before the checks.
    const B = agent('b', '10.1.2.0/24', '192.168.0.2', {}, Infinity)
    A.a.start()
    B.a.start()
    await until('B applied once', () => B.a.status().appliedRevision !== null)
    const put = await admin.putServices([parseService('10.96.0.10:80/tcp', ['10.1.1.5:8080'])])
    A.a.endpointAdded(rec('pod1', '10.1.1.5'))
    await until('the refusal in B\'s status', () => /PN_SERVICE_CONFLICT/.test(B.a.status().servicesError ?? ''))
    await until('pod1 in B\'s ipcache all the same', () => B.words().includes('ipcache 10.1.1.5/32 node 192.168.0.1'))
    assert.ok((B.a.status().appliedRevision ?? 0) < put.revision, 'the revision with the refused table is not reported as applied')
    assert.equal(B.tables.length, 0)
    B.refuse(0)
    await until('the table taken on a retry', () => B.tables.length === 1 && B.a.status().servicesError === undefined, 10_000)
    await until('then reported', () => (B.a.status().appliedRevision ?? 0) >= put.revision)
  })
})

describe('pn service apply|list --cluster (directory store)', function () {
  this.timeout(60_000)
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-csvc-'))
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('writes the table once (again: unchanged), lists it in the apply file\'s format, and refuses a store that is not there or a bad file', () => {
    const store = path.join(dir, 'store')
    const file = path.join(dir, 'svc.json')
    writeFileSync(file, JSON.stringify([{frontend: '10.96.0.10:80', backends: ['10.1.1.5:8080', '10.1.2.5:8080']}, {frontend: '10.96.0.11:53/udp', backends: []}]))
    const missing = pn(['service', 'apply', file, '--cluster', store, '--json'])
    assert.equal(missing.json?.error?.code, 'PN_CLUSTER_NOT_FOUND')
    assert.match(missing.json?.error?.hint ?? '', /pn cluster init --cluster/)
    assert.equal(pn(['cluster', 'init', '--cluster', store, '--json']).status, 0)
    const dry = pn(['service', 'apply', file, '--cluster', store, '--dry-run', '--json'])
    assert.deepEqual([dry.json?.result.dryRun, dry.json?.result.changed, dry.json?.result.count], [true, true, 2])
    assert.deepEqual(pn(['service', 'list', '--cluster', store, '--json']).json?.result, [], 'a dry run writes nothing')
    const w = pn(['service', 'apply', file, '--cluster', store, '--json'])
    assert.equal(w.status, 0, w.stdout + w.stderr)
    assert.deepEqual([w.json?.result.changed, w.json?.result.count, w.json?.result.shards], [true, 2, 2])
    assert.equal(pn(['service', 'apply', file, '--cluster', store, '--json']).json?.result.changed, false)
    const listed = pn(['service', 'list', '--cluster', store, '--json']).json?.result
    assert.deepEqual(listed, [{frontend: '10.96.0.10:80/tcp', backends: ['10.1.1.5:8080', '10.1.2.5:8080']}, {frontend: '10.96.0.11:53/udp', backends: []}])
    // The list is an apply file: given back, nothing changes.
    writeFileSync(file, JSON.stringify(listed))
    assert.equal(pn(['service', 'apply', file, '--cluster', store, '--json']).json?.result.changed, false)
    writeFileSync(file, '[{"frontend": "10.96.0.10"}]')
    const bad = pn(['service', 'apply', file, '--cluster', store, '--json'])
    assert.equal(bad.json?.error?.code, 'PN_SERVICE_INVALID')
    assert.equal(pn(['service', 'list', '--cluster', store, '--json']).json?.result.length, 2, 'a refused file changes nothing')
    assert.match(pn(['service', 'list', '--cluster', store]).stdout, /10\.96\.0\.10:80\/tcp\s+10\.1\.1\.5:8080,10\.1\.2\.5:8080/)
  })
})
