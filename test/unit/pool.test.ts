import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {
  allocatePodCidrs,
  initPool,
  listPool,
  resolvePoolLocation as poolPath,
  releasePodCidrs,
  showPoolNode,
  type PoolState,
} from '../../src/ipam/pool.js'
import {MemoryStore} from '../../src/state/store.js'

const code = (c: string) => (e: unknown) => isPnError(e, c as never)

async function pool(cidrs: string[], maskSize?: number, maskSizeV6?: number) {
  const store = new MemoryStore<PoolState>()
  const r = await initPool(store, {cidrs, maskSize, maskSizeV6})
  return {store, init: r}
}

describe('pool (cluster pool)', () => {
  it('uses cluster CIDRs in order and blocks round-robin (the issue example)', async () => {
    const {store, init} = await pool(['10.20.30.40/24', '50.60.70.0/24'], 26)
    assert.match(init.warnings?.join() ?? '', /10\.20\.30\.40\/24 has host bits set; using its network 10\.20\.30\.0\/24/)
    const got: string[] = []
    for (const n of ['n1', 'n2', 'n3', 'n4', 'n5']) got.push(...(await allocatePodCidrs(store, n)).cidrs)
    assert.deepEqual(got, ['10.20.30.0/26', '10.20.30.64/26', '10.20.30.128/26', '10.20.30.192/26', '50.60.70.0/26'])
  })

  it('gives a known node the same CIDR (changed:false) without writing', async () => {
    const {store} = await pool(['10.0.0.0/16'], 24)
    const a = await allocatePodCidrs(store, 'node-1')
    const writes = store.writes
    const b = await allocatePodCidrs(store, 'node-1')
    assert.deepEqual([a.changed, b.changed, b.cidrs], [true, false, a.cidrs])
    assert.equal(store.writes, writes)
  })

  it('allocates one CIDR per family for dual-stack pools', async () => {
    const {store} = await pool(['fd00:10::/104', '10.0.0.0/16'], 24, 120)
    assert.deepEqual((await allocatePodCidrs(store, 'a')).cidrs, ['10.0.0.0/24', 'fd00:10::/120'])
    assert.deepEqual((await allocatePodCidrs(store, 'b')).cidrs, ['10.0.1.0/24', 'fd00:10::100/120'])
  })

  it('does not rewind the cursor on release; a released block is reused after wrap-around', async () => {
    const {store} = await pool(['10.20.30.0/24'], 26)
    for (const n of ['a', 'b', 'c']) await allocatePodCidrs(store, n)
    const rel = await releasePodCidrs(store, 'a')
    assert.deepEqual([rel.changed, rel.released], [true, ['10.20.30.0/26']])
    assert.deepEqual((await allocatePodCidrs(store, 'd')).cidrs, ['10.20.30.192/26'])
    assert.deepEqual((await allocatePodCidrs(store, 'e')).cidrs, ['10.20.30.0/26'])
    await assert.rejects(allocatePodCidrs(store, 'f'), code('PN_POOL_EXHAUSTED'))
    const list = await listPool(store)
    assert.deepEqual(list.clusterCidrs.map((c) => [c.cidr, c.used, c.free]), [['10.20.30.0/24', 4, 0]])
    assert.deepEqual(list.nodes.map((n) => n.name), ['b', 'c', 'd', 'e'])
  })

  it('an exhausted family fails the whole allocation (nothing half-allocated)', async () => {
    const {store} = await pool(['10.0.0.0/29', 'fd00::/120'], 30, 122) // two v4 blocks, four v6 blocks
    await allocatePodCidrs(store, 'a')
    await allocatePodCidrs(store, 'b')
    await assert.rejects(allocatePodCidrs(store, 'c'), code('PN_POOL_EXHAUSTED'))
    assert.deepEqual((await listPool(store)).clusterCidrs.map((c) => c.used), [2, 2])
  })

  it('release of an unknown node is a no-op; show of one is PN_NODE_UNKNOWN', async () => {
    const {store} = await pool(['10.0.0.0/16'], 24)
    const r = await releasePodCidrs(store, 'ghost')
    assert.deepEqual([r.changed, r.released], [false, []])
    await assert.rejects(showPoolNode(store, 'ghost'), code('PN_NODE_UNKNOWN'))
    await allocatePodCidrs(store, 'n1')
    assert.deepEqual((await showPoolNode(store, 'n1')).cidrs, ['10.0.0.0/24'])
    await assert.rejects(allocatePodCidrs(store, 'bad name'), code('PN_INVALID_ARGUMENT'))
  })

  it('refuses overlapping, invalid CIDRs and bad mask sizes', async () => {
    const init = (cidrs: string[], m?: number, m6?: number) => initPool(new MemoryStore<PoolState>(), {cidrs, maskSize: m, maskSizeV6: m6})
    await assert.rejects(init(['10.0.0.0/8', '10.20.0.0/16'], 24), code('PN_CIDR_OVERLAP'))
    await assert.rejects(init(['10.0.0.0/16', '10.0.0.0/16'], 24), code('PN_CIDR_OVERLAP'))
    for (const bad of ['10.0.0.0/33', '10.0.0.256/24', '1.2.3/24', 'fe80::/129', 'garbage']) {
      await assert.rejects(init([bad], 24), code('PN_INVALID_CIDR'), bad)
    }
    await assert.rejects(init(['10.0.0.0/24'], 24), code('PN_INVALID_MASK_SIZE')) // not longer than the prefix
    await assert.rejects(init(['10.0.0.0/24'], 16), code('PN_INVALID_MASK_SIZE'))
    await assert.rejects(init(['10.0.0.0/24'], 31), code('PN_INVALID_MASK_SIZE'))
    await assert.rejects(init(['fd00::/64'], undefined, 120), code('PN_INVALID_MASK_SIZE')) // 2^56 blocks
    await assert.rejects(init(['fd00::/104']), code('PN_INVALID_MASK_SIZE')) // no v6 mask size
    await assert.rejects(init(['10.0.0.0/16']), code('PN_INVALID_MASK_SIZE')) // no v4 mask size
    await assert.rejects(init([], 24), code('PN_INVALID_ARGUMENT'))
  })

  describe('pool file', () => {
    let dir: string
    beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-pool-'))))
    afterEach(() => rmSync(dir, {recursive: true, force: true}))

    it('defaults to <state-dir>/cluster-pool.json; --pool wins', () => {
      assert.equal(poolPath('/var/lib/pn'), '/var/lib/pn/cluster-pool.json')
      assert.equal(poolPath('/var/lib/pn', '/run/lab/pool.json'), '/run/lab/pool.json')
      // A location with a scheme names another store and passes through untouched.
      assert.equal(poolPath('/var/lib/pn', 'etcd://127.0.0.1:2379/pn'), 'etcd://127.0.0.1:2379/pn')
    })

    it('refuses to re-init without force, replaces with force', async () => {
      const f = poolPath(dir)
      await initPool(f, {cidrs: ['10.0.0.0/16'], maskSize: 24})
      await allocatePodCidrs(f, 'n1')
      await assert.rejects(initPool(f, {cidrs: ['10.1.0.0/16'], maskSize: 24}), code('PN_POOL_EXISTS'))
      const r = await initPool(f, {cidrs: ['10.1.0.0/16'], maskSize: 24, force: true})
      assert.equal(r.replaced, true)
      assert.deepEqual((await listPool(f)).nodes, [])
    })

    it('a missing pool is PN_POOL_NOT_FOUND and is not created', async () => {
      const f = poolPath(dir)
      await assert.rejects(allocatePodCidrs(f, 'n1'), code('PN_POOL_NOT_FOUND'))
      await assert.rejects(listPool(f), code('PN_POOL_NOT_FOUND'))
      assert.equal(existsSync(f), false)
    })

    for (const [what, text] of [
      ['torn JSON', '{"version":1,"clusterCidrs":['],
      ['wrong shape', '{"version":1,"clusterCidrs":"x","nodes":[]}'],
      ['a node outside the cluster CIDRs', JSON.stringify({version: 1, createdAt: '', clusterCidrs: [{cidr: '10.0.0.0/16', maskSize: 24, nextCandidate: 0}], nodes: [{name: 'a', cidrs: ['10.9.0.0/24'], allocatedAt: ''}]})],
      ['a block allocated twice', JSON.stringify({version: 1, createdAt: '', clusterCidrs: [{cidr: '10.0.0.0/16', maskSize: 24, nextCandidate: 0}], nodes: [{name: 'a', cidrs: ['10.0.1.0/24'], allocatedAt: ''}, {name: 'b', cidrs: ['10.0.1.0/24'], allocatedAt: ''}]})],
    ]) {
      it(`refuses a corrupt pool file (${what}) and never overwrites it`, async () => {
        const f = poolPath(dir)
        writeFileSync(f, text)
        await assert.rejects(allocatePodCidrs(f, 'n1'), code('PN_POOL_CORRUPT'))
        await assert.rejects(releasePodCidrs(f, 'a'), code('PN_POOL_CORRUPT'))
        await assert.rejects(listPool(f), code('PN_POOL_CORRUPT'))
        assert.equal(readFileSync(f, 'utf8'), text)
      })
    }
  })
})
