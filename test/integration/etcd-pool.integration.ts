/**
 * The cluster pool on a real etcd (Debian etcd-server): one etcd per test on 127.0.0.1 with
 * free ports and its data dir in a temp folder, stopped by its pid (test/helpers/etcd.ts). `pn pool`
 * runs as separate processes, like operators on different machines; the races of many nodes run
 * in process against the per-key layout (src/ipam/pool-etcd.ts), each node its own client.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {allocatePodCidrs, initPool, listPool, releasePodCidrs, type PoolState} from '../../src/ipam/pool.js'
import {EtcdPool} from '../../src/ipam/pool-etcd.js'
import {EtcdStore} from '../../src/state/etcd-store.js'
import {pn, pnAsync, type CliResult} from '../helpers/cli.js'
import {makeCerts, TestEtcd, type TestCerts} from '../helpers/etcd.js'

describe('cluster pool on etcd (real etcd on loopback)', function () {
  this.timeout(180_000)
  let dir: string
  let etcd: TestEtcd
  const run = (args: string[]): CliResult => pn([...args, '--pool', etcd.location, '--json'])
  const runAsync = (args: string[]) => pnAsync([...args, '--pool', etcd.location, '--json'])

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-etcd-'))
    etcd = new TestEtcd(dir)
    await etcd.start()
  })
  afterEach(async () => {
    await etcd.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('has the file pool semantics: init, alloc, idempotent re-alloc, list, show, release without rewinding the cursor', () => {
    const init = run(['pool', 'init', '--cidr', '10.20.30.40/24', '--mask-size', '26'])
    assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
    assert.equal(init.json!.result.pool, etcd.location)
    assert.match(init.json!.warnings!.join(), /host bits set/)
    assert.match(init.json!.warnings!.join('\n'), /^pool over plain http: etcd:\/\/127\.0\.0\.1/m)
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/24', '--mask-size', '26']).json?.error?.code, 'PN_POOL_EXISTS')
    assert.deepEqual(['n1', 'n2', 'n3'].map((n) => run(['pool', 'alloc', n]).json?.result.cidrs[0]), ['10.20.30.0/26', '10.20.30.64/26', '10.20.30.128/26'])
    const again = run(['pool', 'alloc', 'n1'])
    assert.deepEqual([again.json?.result.changed, again.json?.result.cidrs[0]], [false, '10.20.30.0/26'])
    assert.equal(run(['pool', 'show', 'n2']).json?.result.cidrs[0], '10.20.30.64/26')
    assert.equal(run(['pool', 'show', 'zz']).json?.error?.code, 'PN_NODE_UNKNOWN')
    assert.deepEqual(run(['pool', 'release', 'n2']).json?.result.released, ['10.20.30.64/26'])
    assert.equal(run(['pool', 'alloc', 'n4']).json?.result.cidrs[0], '10.20.30.192/26', 'the cursor is not rewound')
    assert.deepEqual(run(['pool', 'list']).json?.result.map((n: {name: string}) => n.name), ['n1', 'n3', 'n4'])
    assert.equal(run(['pool', 'show']).json?.result.clusterCidrs[0].used, 3)
    // a pool that is not there
    const other = pn(['pool', 'alloc', 'n1', '--pool', `etcd://127.0.0.1:${etcd.clientPort}/elsewhere`, '--json'])
    assert.equal(other.json?.error?.code, 'PN_POOL_NOT_FOUND')
  })

  it('20 concurrent pn pool alloc processes get 20 distinct CIDRs (create-if-absent per block)', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const runs = await Promise.all(Array.from({length: 20}, (_, i) => runAsync(['pool', 'alloc', `node-${i}`])))
    for (const r of runs) assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    const cidrs = runs.map((r) => r.json!.result.cidrs[0])
    assert.equal(new Set(cidrs).size, 20, cidrs.join(' '))
    const list = run(['pool', 'list']).json!.result
    assert.equal(list.length, 20)
    assert.equal(run(['pool', 'show']).json!.result.clusterCidrs[0].used, 20)
    for (const n of list) assert.equal(cidrs[Number(n.name.slice(5))], n.cidrs[0])
  })

  it('keeps every allocation across an etcd restart', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const before = ['a', 'b', 'c'].map((n) => run(['pool', 'alloc', n]).json!.result.cidrs[0])
    await etcd.stop('SIGTERM')
    await etcd.start()
    assert.deepEqual(['a', 'b', 'c'].map((n) => run(['pool', 'show', n]).json?.result.cidrs[0]), before)
    const again = run(['pool', 'alloc', 'b'])
    assert.deepEqual([again.json?.result.changed, again.json?.result.cidrs[0]], [false, before[1]])
    assert.equal(run(['pool', 'alloc', 'd']).json?.result.cidrs[0], '10.0.3.0/24')
  })

  it('killing etcd mid-run gives a clear error, no hang, and no corrupted pool', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const runs = Array.from({length: 12}, (_, i) => runAsync(['pool', 'alloc', `k-${i}`]))
    // Kill it as soon as the first allocation has landed, while the others are in flight.
    await Promise.race(runs)
    await etcd.stop('SIGKILL')
    const results = await Promise.all(runs)
    const ok = results.filter((r) => r.json?.status === 'ok')
    const failed = results.filter((r) => r.json?.status !== 'ok')
    assert.ok(ok.length >= 1)
    assert.ok(failed.length >= 1, 'some allocations were in flight when etcd died')
    for (const r of failed) {
      assert.equal(r.json?.error?.code, 'PN_POOL_UNREACHABLE', r.stdout + r.stderr)
      assert.equal(r.status, 7)
      assert.match(r.json!.error!.message, /etcd unreachable/)
      assert.match(r.json!.error!.hint ?? '', new RegExp(`127\\.0\\.0\\.1:${etcd.clientPort}`))
    }
    // With etcd down, a new command fails the same way, within its deadline.
    const down = run(['pool', 'list'])
    assert.equal(down.json?.error?.code, 'PN_POOL_UNREACHABLE')
    await etcd.start()
    const list = run(['pool', 'list'])
    assert.equal(list.json?.status, 'ok', list.stdout + list.stderr)
    const nodes: {name: string; cidrs: string[]}[] = list.json!.result
    assert.equal(new Set(nodes.map((n) => n.cidrs[0])).size, nodes.length, 'no CIDR twice')
    for (const r of ok) {
      assert.deepEqual(nodes.find((n) => n.name === r.json!.result.node)?.cidrs, r.json!.result.cidrs, 'every reported allocation is kept')
    }
    // Every node can still get its CIDR (the ones that failed included), all distinct.
    const all = Array.from({length: 12}, (_, i) => run(['pool', 'alloc', `k-${i}`]).json?.result.cidrs[0])
    assert.equal(new Set(all).size, 12)
  })

  it('an unreachable etcd is PN_POOL_UNREACHABLE (exit 7), not a hang', async () => {
    await etcd.stop('SIGKILL')
    const r = pn(['pool', 'alloc', 'n1', '--pool', etcd.location, '--json'])
    assert.equal(r.json?.error?.code, 'PN_POOL_UNREACHABLE', r.stdout + r.stderr)
    assert.equal(r.status, 7)
    assert.equal(pn(['pool', 'list', '--pool', 'etcd://127.0.0.1:0x/a', '--json']).json?.error?.code, 'PN_INVALID_ARGUMENT')
  })

  describe('per-key layout: many nodes at once, in process (each node its own pool client)', () => {
    const node = (i: number) => `node-${String(i).padStart(3, '0')}`
    const open = () => new EtcdPool(etcd.location)
    const code = (c: string) => (e: unknown) => isPnError(e, c as never)

    it('50 concurrent allocations: 50 distinct CIDRs, one per node; past the last block PN_POOL_EXHAUSTED, and nothing half-made', async () => {
      // 10.0.0.0/24 in /30 blocks: 64 of them.
      await initPool(open(), {cidrs: ['10.0.0.0/24'], maskSize: 30})
      const first = await Promise.all(Array.from({length: 50}, (_, i) => allocatePodCidrs(open(), node(i))))
      assert.ok(first.every((r) => r.changed && r.cidrs.length === 1))
      assert.equal(new Set(first.map((r) => r.cidrs[0])).size, 50, 'no CIDR twice')
      const more = await Promise.allSettled(Array.from({length: 20}, (_, i) => allocatePodCidrs(open(), node(50 + i))))
      const ok = more.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{cidrs: string[]}>[]
      const failed = more.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
      assert.equal(ok.length, 14, 'exactly the 14 free blocks are handed out')
      assert.equal(failed.length, 6)
      for (const f of failed) {
        assert.ok(isPnError(f.reason, 'PN_POOL_EXHAUSTED'), String(f.reason))
        assert.match(f.reason.message, /every IPv4 cluster cidr is full \(10\.0\.0\.0\/24: 64\/64\)/)
      }
      const all = [...first.map((r) => r.cidrs[0]), ...ok.map((r) => r.value.cidrs[0])]
      assert.equal(new Set(all).size, 64)
      const list = await listPool(open())
      assert.equal(list.nodes.length, 64, 'a node refused for exhaustion left no key behind')
      assert.deepEqual([list.clusterCidrs[0].used, list.clusterCidrs[0].free], [64, 0])
      for (const r of first) assert.deepEqual(list.nodes.find((n) => n.name === r.node)?.cidrs, r.cidrs)
    })

    it('release then re-allocate: the freed blocks go to the new nodes, exactly once', async () => {
      await initPool(open(), {cidrs: ['10.1.0.0/24'], maskSize: 28}) // 16 blocks
      const got = await Promise.all(Array.from({length: 16}, (_, i) => allocatePodCidrs(open(), node(i))))
      const freed = (await Promise.all([3, 7, 11].map((i) => releasePodCidrs(open(), node(i))))).flatMap((r) => r.released)
      assert.deepEqual(freed.sort(), [3, 7, 11].map((i) => got[i].cidrs[0]).sort())
      const again = await Promise.all(['x', 'y', 'z'].map((n) => allocatePodCidrs(open(), n)))
      assert.deepEqual(again.map((r) => r.cidrs[0]).sort(), freed)
      await assert.rejects(allocatePodCidrs(open(), 'w'), code('PN_POOL_EXHAUSTED'))
      const rel = await releasePodCidrs(open(), node(3))
      assert.deepEqual([rel.changed, rel.released], [false, []], 'released twice: no-op')
    })

    it('the same node allocating from 10 processes at once gets one CIDR (changed once), and again later', async () => {
      await initPool(open(), {cidrs: ['10.2.0.0/16'], maskSize: 24})
      await Promise.all(Array.from({length: 10}, (_, i) => allocatePodCidrs(open(), node(i))))
      const same = await Promise.all(Array.from({length: 10}, () => allocatePodCidrs(open(), 'twin')))
      assert.equal(new Set(same.map((r) => r.cidrs[0])).size, 1)
      assert.equal(same.filter((r) => r.changed).length, 1)
      const later = await allocatePodCidrs(open(), 'twin')
      assert.deepEqual([later.changed, later.cidrs], [false, same[0].cidrs])
      assert.equal((await listPool(open())).nodes.length, 11)
    })

    it('30 nodes starting at once each get their block in their first round trip: etcd tries each one\'s candidates in order, so the blocks are the first 30', async () => {
      await initPool(open(), {cidrs: ['10.12.0.0/16'], maskSize: 24})
      const pools = Array.from({length: 30}, () => open())
      const got = await Promise.all(pools.map((p, i) => allocatePodCidrs(p, node(i))))
      assert.deepEqual(pools.map((p) => p.stats.retries), Array(30).fill(0), 'no claim lost all its candidates')
      assert.deepEqual(pools.map((p) => p.stats.commits), Array(30).fill(1))
      const third = (c: string) => Number(c.split('.')[2])
      assert.deepEqual(got.map((r) => third(r.cidrs[0])).sort((a, b) => a - b), Array.from({length: 30}, (_, i) => i), 'no block skipped')
    })

    it('a long-lived client whose view misses blocks taken since claims the first free one in one transaction, skipping the others inside etcd', async () => {
      await initPool(open(), {cidrs: ['10.11.0.0/24'], maskSize: 28}) // 16 blocks
      // random 0: the spread (5 nodes wrote during its last round trip) takes the first candidates, in order.
      const kept = new EtcdPool(etcd.location, {keepOpen: true, random: () => 0})
      try {
        assert.deepEqual((await allocatePodCidrs(kept, 'a')).cidrs, ['10.11.0.0/28'])
        for (const n of ['b', 'c', 'd', 'e', 'f']) await allocatePodCidrs(open(), n) // .16 to .80, behind the view's back
        const before = {...kept.stats}
        assert.deepEqual((await allocatePodCidrs(kept, 'g')).cidrs, ['10.11.0.96/28'], 'the first free block')
        assert.deepEqual([kept.stats.commits - before.commits, kept.stats.retries - before.retries, kept.stats.taken - before.taken], [1, 0, 5])
        // Its view now knows them (and the cursor hint): the next one is the next block, first try.
        assert.deepEqual((await allocatePodCidrs(kept, 'h')).cidrs, ['10.11.0.112/28'])
        assert.deepEqual([kept.stats.retries - before.retries, kept.stats.taken - before.taken], [0, 5])
      } finally {
        await kept.close()
      }
    })

    it('dual stack: 30 nodes at once each get one block per family, none twice, and the node key names both', async () => {
      // A first claim of one block per family nests fewer levels (25), within etcd's 128 operations a transaction.
      await initPool(open(), {cidrs: ['10.3.0.0/16', 'fd00:3::/112'], maskSize: 24, maskSizeV6: 120})
      const got = await Promise.all(Array.from({length: 30}, (_, i) => allocatePodCidrs(open(), node(i))))
      assert.ok(got.every((r) => r.cidrs.length === 2 && r.cidrs[0].startsWith('10.3.') && r.cidrs[1].startsWith('fd00:3::')))
      assert.equal(new Set(got.map((r) => r.cidrs[0])).size, 30)
      assert.equal(new Set(got.map((r) => r.cidrs[1])).size, 30)
      const list = await listPool(open())
      for (const r of got) assert.deepEqual(list.nodes.find((n) => n.name === r.node)?.cidrs, r.cidrs)
    })

    it('without a race the order is the seed\'s: cluster CIDRs in order, blocks round-robin from the cursor', async () => {
      await initPool(open(), {cidrs: ['10.4.0.0/29', '10.5.0.0/24'], maskSize: 30})
      const seq: string[] = []
      for (const n of ['a', 'b', 'c', 'd']) seq.push((await allocatePodCidrs(open(), n)).cidrs[0])
      assert.deepEqual(seq, ['10.4.0.0/30', '10.4.0.4/30', '10.5.0.0/30', '10.5.0.4/30'], 'first cluster CIDR until full, then the next')
      await releasePodCidrs(open(), 'c')
      assert.deepEqual((await allocatePodCidrs(open(), 'e')).cidrs, ['10.5.0.8/30'], 'the cursor is not rewound')
      const show = await listPool(open())
      assert.equal(show.clusterCidrs[1].nextCandidate, 3)
    })

    it('a long-lived client (keepOpen) keeps a view of taken blocks: others\' allocations never give a duplicate, and a block released elsewhere is found when the pool looks full', async () => {
      await initPool(open(), {cidrs: ['10.9.0.0/28'], maskSize: 30}) // 4 blocks
      const kept = new EtcdPool(etcd.location, {keepOpen: true})
      try {
        const mine = [(await allocatePodCidrs(kept, 'a')).cidrs[0]]
        const theirs = (await allocatePodCidrs(open(), 'b')).cidrs[0] // behind the kept view's back
        mine.push((await allocatePodCidrs(kept, 'c')).cidrs[0], (await allocatePodCidrs(kept, 'd')).cidrs[0])
        assert.equal(new Set([...mine, theirs]).size, 4)
        assert.deepEqual((await releasePodCidrs(open(), 'c')).released, [mine[1]])
        assert.deepEqual((await allocatePodCidrs(kept, 'e')).cidrs, [mine[1]], 'the view looked full: read again, found the released block')
        await assert.rejects(allocatePodCidrs(kept, 'f'), code('PN_POOL_EXHAUSTED'))
        // Re-created under the view (init --force): the transaction's schema compare sends it back to a read.
        await initPool(open(), {cidrs: ['10.10.0.0/28'], maskSize: 30, force: true})
        assert.deepEqual((await allocatePodCidrs(kept, 'a')).cidrs, ['10.10.0.0/30'])
      } finally {
        await kept.close()
      }
    })

    it('keeps its keys where docs/IPAM.md says, and init --force empties them', async () => {
      await initPool(open(), {cidrs: ['10.6.0.0/24'], maskSize: 26})
      await allocatePodCidrs(open(), 'n1')
      const {Etcd3} = await import('etcd3')
      const c = new Etcd3({hosts: `http://127.0.0.1:${etcd.clientPort}`})
      try {
        const keys = (await c.getAll().prefix('/pn-test/').keys()).sort()
        assert.deepEqual(keys, ['/pn-test/pool/schema', '/pn-test/pool/v1/cidrs/10.6.0.0/26', '/pn-test/pool/v1/config', '/pn-test/pool/v1/cursor/10.6.0.0/24', '/pn-test/pool/v1/nodes/n1'])
        assert.equal(await c.get('/pn-test/pool/v1/cidrs/10.6.0.0/26').string(), 'n1')
        assert.equal(await c.get('/pn-test/pool/schema').string(), '1')
        const r = await initPool(open(), {cidrs: ['10.7.0.0/24'], maskSize: 26, force: true})
        assert.equal(r.replaced, true)
        assert.deepEqual((await c.getAll().prefix('/pn-test/').keys()).sort(), ['/pn-test/pool/schema', '/pn-test/pool/v1/config'])
      } finally {
        c.close()
      }
    })

    it('a pool in the old single-key layout is refused with PN_POOL_LAYOUT naming the key, and init --force replaces it', async () => {
      // The layout of an earlier pn, written by the old store.
      const old = new EtcdStore<PoolState>({location: etcd.location, name: 'cluster-pool', spec: {what: 'cluster pool', corruptCode: 'PN_POOL_CORRUPT', validate: (v): v is PoolState => !!v}})
      await old.update(() => ({next: {version: 1, createdAt: new Date().toISOString(), clusterCidrs: [{cidr: '10.8.0.0/16', maskSize: 24, nextCandidate: 1}], nodes: [{name: 'n1', cidrs: ['10.8.0.0/24'], allocatedAt: ''}]}, result: undefined}))
      for (const args of [['pool', 'alloc', 'n2'], ['pool', 'list'], ['pool', 'show'], ['pool', 'release', 'n1'], ['pool', 'init', '--cidr', '10.9.0.0/16', '--mask-size', '24']]) {
        const r = run(args)
        assert.equal(r.json?.error?.code, 'PN_POOL_LAYOUT', `${args.join(' ')}: ${r.stdout}${r.stderr}`)
        assert.match(r.json!.error!.message, /key \/pn-test\/cluster-pool holds a pool in the single-key layout of an earlier pn/)
        assert.match(r.json!.error!.hint!, /pn pool init --force/)
      }
      assert.ok(await old.read(), 'refusing changed nothing')
      const init = run(['pool', 'init', '--cidr', '10.9.0.0/16', '--mask-size', '24', '--force'])
      assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
      assert.equal(await old.read(), undefined, 'the old key is gone')
      assert.equal(run(['pool', 'alloc', 'n1']).json?.result.cidrs[0], '10.9.0.0/24')
    })
  })
})

describe('cluster pool on etcd over TLS (client certificates)', function () {
  this.timeout(180_000)
  let dir: string
  let certs: TestCerts
  let etcd: TestEtcd
  const tlsFlags = () => ['--etcd-ca', certs.ca, '--etcd-cert', certs.clientCert, '--etcd-key', certs.clientKey]
  const run = (args: string[], env?: NodeJS.ProcessEnv): CliResult => pn([...args, '--pool', etcd.location, '--json'], {env: {...process.env, ...env}})

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-etcds-'))
    certs = makeCerts(dir)
    etcd = new TestEtcd(dir, {tls: certs, clientCertAuth: true})
    await etcd.start()
  })
  after(async () => {
    await etcd?.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('etcds:// with --etcd-ca/--etcd-cert/--etcd-key: init, alloc, show, release; no plain-http warning', () => {
    assert.match(etcd.location, /^etcds:\/\/127\.0\.0\.1:\d+\/pn-test$/)
    const init = run(['pool', 'init', '--cidr', '10.30.0.0/16', '--mask-size', '24', ...tlsFlags()])
    assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
    assert.deepEqual(init.json!.warnings, [])
    const a = run(['pool', 'alloc', 'n1', ...tlsFlags()])
    assert.deepEqual([a.json?.result.cidrs, a.json?.warnings], [['10.30.0.0/24'], []])
    assert.equal(run(['pool', 'show', 'n1', ...tlsFlags()]).json?.result.cidrs[0], '10.30.0.0/24')
    assert.deepEqual(run(['pool', 'release', 'n1', ...tlsFlags()]).json?.result.released, ['10.30.0.0/24'])
  })

  it('PN_ETCD_CA/PN_ETCD_CERT/PN_ETCD_KEY in the environment do the same; a flag overrides its variable', () => {
    const env = {PN_ETCD_CA: certs.ca, PN_ETCD_CERT: certs.clientCert, PN_ETCD_KEY: certs.clientKey}
    const a = run(['pool', 'alloc', 'env-node'], env)
    assert.equal(a.json?.status, 'ok', a.stdout + a.stderr)
    assert.equal(run(['pool', 'list'], env).json?.result.length, 1)
    const bad = run(['pool', 'list', '--etcd-cert', certs.otherClientCert, '--etcd-key', certs.otherClientKey], env)
    assert.equal(bad.json?.error?.code, 'PN_POOL_TLS', bad.stdout + bad.stderr)
  })

  it('a client without a certificate, or with one etcd does not trust, is refused: PN_POOL_TLS, exit 7, a hint that names the flags', () => {
    for (const args of [['--etcd-ca', certs.ca], ['--etcd-ca', certs.ca, '--etcd-cert', certs.otherClientCert, '--etcd-key', certs.otherClientKey]]) {
      const t0 = Date.now()
      const r = run(['pool', 'list', ...args])
      assert.equal(r.json?.error?.code, 'PN_POOL_TLS', r.stdout + r.stderr)
      assert.equal(r.status, 7)
      assert.match(r.json!.error!.message, /^read cluster pool etcds:\/\/127\.0\.0\.1:\d+\/pn-test: TLS to etcd failed/)
      assert.match(r.json!.error!.hint!, /--etcd-cert/)
      assert.ok(Date.now() - t0 < 15_000, 'refused within the deadline')
    }
    // A CA that did not sign etcd's certificate: the client refuses the server.
    const wrongCa = run(['pool', 'list', '--etcd-ca', certs.otherCa, '--etcd-cert', certs.clientCert, '--etcd-key', certs.clientKey])
    assert.equal(wrongCa.json?.error?.code, 'PN_POOL_TLS', wrongCa.stdout + wrongCa.stderr)
    // Plain etcd:// against the TLS port, and TLS files with a plain location: clear errors, not a hang.
    const missing = run(['pool', 'list', '--etcd-ca', path.join(dir, 'nope.pem')])
    assert.equal(missing.json?.error?.code, 'PN_INVALID_ARGUMENT')
    assert.match(missing.json!.error!.message, /read etcd ca .*nope\.pem: no such file/)
    const plain = pn(['pool', 'list', '--pool', etcd.location.replace('etcds:', 'etcd:'), '--etcd-ca', certs.ca, '--json'])
    assert.equal(plain.json?.error?.code, 'PN_INVALID_ARGUMENT')
    assert.match(plain.json!.error!.message, /--etcd-ca given for a plain-http etcd:\/\/ location/)
  })
})
