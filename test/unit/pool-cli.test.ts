/** `pn pool` as real processes (no root): the issue example, errors, and 50 concurrent allocs. */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {pn, pnAsync} from '../helpers/cli.js'

describe('pn pool (CLI processes)', function () {
  this.timeout(120000)
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-pool-cli-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('runs the issue example: normalisation warning, order, round-robin', () => {
    const init = pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.20.30.40/24', '--cidr', '50.60.70.0/24', '--mask-size', '26', '--json'])
    assert.equal(init.status, 0, init.stdout + init.stderr)
    assert.match(init.json?.warnings?.join() ?? '', /has host bits set; using its network 10\.20\.30\.0\/24/)
    const got = ['n1', 'n2', 'n3', 'n4', 'n5'].map((n) => pn(['pool', 'alloc', n, '--state-dir', dir, '--json']).json?.result.cidrs[0])
    assert.deepEqual(got, ['10.20.30.0/26', '10.20.30.64/26', '10.20.30.128/26', '10.20.30.192/26', '50.60.70.0/26'])
    assert.equal(pn(['pool', 'alloc', 'n1', '--state-dir', dir, '--json']).json?.result.changed, false)
    assert.equal(pn(['pool', 'show', 'n5', '--state-dir', dir, '--json']).json?.result.cidrs[0], '50.60.70.0/26')
    const pool = pn(['pool', 'show', '--state-dir', dir, '--json']).json?.result
    assert.deepEqual(pn(['pool', 'list', '--state-dir', dir, '--json']).json?.result.map((n: {name: string}) => n.name), ['n1', 'n2', 'n3', 'n4', 'n5'])
    assert.deepEqual(pool.clusterCidrs.map((c: {used: number; free: number}) => [c.used, c.free]), [[4, 0], [1, 3]])
    assert.equal(pn(['pool', 'release', 'n2', '--state-dir', dir, '--json']).json?.result.released[0], '10.20.30.64/26')
    // the first cluster CIDR is no longer full, so it is used again (its cursor had wrapped to 0; .0 is taken)
    assert.equal(pn(['pool', 'alloc', 'n6', '--state-dir', dir, '--json']).json?.result.cidrs[0], '10.20.30.64/26')
  })

  it('--cluster (PN_CLUSTER) names the cluster store\'s pool: DIR/cluster-pool.json for a directory store; --pool wins', () => {
    const store = path.join(dir, 'store')
    const init = pn(['pool', 'init', '--state-dir', dir, '--cluster', store, '--cidr', '10.30.0.0/16', '--mask-size', '24', '--json'])
    assert.equal(init.status, 0, init.stdout + init.stderr)
    assert.equal(init.json?.result.pool, path.join(store, 'cluster-pool.json'))
    assert.equal(pn(['pool', 'alloc', 'n1', '--state-dir', dir, '--json'], {env: {PN_CLUSTER: store}}).json?.result.cidrs[0], '10.30.0.0/24')
    assert.equal(pn(['pool', 'show', 'n1', '--state-dir', dir, '--cluster', store, '--json']).json?.result.cidrs[0], '10.30.0.0/24')
    // --pool names another pool: it wins over PN_CLUSTER (none there yet).
    const other = pn(['pool', 'show', '--state-dir', dir, '--pool', path.join(dir, 'other.json'), '--json'], {env: {PN_CLUSTER: store}})
    assert.notEqual(other.status, 0)
    assert.match(other.stdout + other.stderr, /other\.json/)
  })

  it('maps errors to codes and exit statuses', () => {
    const f = path.join(dir, 'shared.json')
    const opts = {env: {PN_POOL: f}}
    assert.equal(pn(['pool', 'alloc', 'n1', '--state-dir', dir, '--json'], opts).json?.error?.code, 'PN_POOL_NOT_FOUND')
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.0.0.0/8', '--cidr', '10.1.0.0/16', '--mask-size', '24', '--json'], opts).json?.error?.code, 'PN_CIDR_OVERLAP')
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.0.0.0/24', '--mask-size', '24', '--json'], opts).json?.error?.code, 'PN_INVALID_MASK_SIZE')
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', 'fd00::/64', '--mask-size-v6', '120', '--json'], opts).json?.error?.code, 'PN_INVALID_MASK_SIZE')
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '1.2.3/24', '--mask-size', '26', '--json'], opts).json?.error?.code, 'PN_INVALID_CIDR')
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.0.0.0/30', '--mask-size', '30', '--json'], opts).status, 2)
    assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.0.0.0/29', '--mask-size', '30', '--json'], opts).status, 0)
    const again = pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.0.0.0/29', '--mask-size', '30', '--json'], opts)
    assert.deepEqual([again.status, again.json?.error?.code], [4, 'PN_POOL_EXISTS'])
    pn(['pool', 'alloc', 'a', '--json'], opts)
    pn(['pool', 'alloc', 'b', '--json'], opts)
    const full = pn(['pool', 'alloc', 'c', '--json'], opts)
    assert.deepEqual([full.status, full.json?.error?.code], [5, 'PN_POOL_EXHAUSTED'])
    assert.equal(pn(['pool', 'show', 'zz', '--json'], opts).json?.error?.code, 'PN_NODE_UNKNOWN')
    writeFileSync(f, '{"version":1,')
    const bad = pn(['pool', 'alloc', 'd', '--json'], opts)
    assert.deepEqual([bad.status, bad.json?.error?.code], [6, 'PN_POOL_CORRUPT'])
    assert.equal(readFileSync(f, 'utf8'), '{"version":1,')
  })

  it('50 concurrent allocs of different nodes get 50 distinct CIDRs and leave a valid pool file', async () => {
    const f = path.join(dir, 'pool.json')
    assert.equal(pn(['pool', 'init', '--pool', f, '--cidr', '10.0.0.0/16', '--cidr', 'fd00:10::/104', '--mask-size', '24', '--mask-size-v6', '120']).status, 0)
    const runs = await Promise.all(Array.from({length: 50}, (_, i) => pnAsync(['pool', 'alloc', `node-${i}`, '--pool', f, '--json'])))
    for (const r of runs) assert.equal(r.status, 0, r.stdout + r.stderr)
    const v4 = runs.map((r) => r.json?.result.cidrs[0])
    const v6 = runs.map((r) => r.json?.result.cidrs[1])
    assert.equal(new Set(v4).size, 50)
    assert.equal(new Set(v6).size, 50)
    const s = JSON.parse(readFileSync(f, 'utf8'))
    assert.equal(s.nodes.length, 50)
    assert.equal(s.clusterCidrs[0].nextCandidate, 50)
  })
})
