import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {parseDuration} from '../../src/ipam/duration.js'
import {HostAllocator} from '../../src/ipam/host-allocator.js'
import {
  allocateIp,
  confirmIp,
  gcIps,
  ipamDir,
  listIps,
  releaseIp,
  reserveRouterIps,
  resetIpam,
  showIpam,
  type HostIpamTarget,
  type IpamState,
} from '../../src/ipam/host.js'
import {MemoryStore} from '../../src/state/store.js'
import {nodeIpamTarget} from '../../src/node/ipam.js'
import {writeNodeContext, type NodeContext} from '../../src/node/context.js'

function target(podCidrs = ['10.0.1.0/24', 'fd00:1::/64'], extra: Partial<HostIpamTarget> = {}) {
  let clock = Date.parse('2030-01-01T00:00:00Z')
  const store = new MemoryStore<IpamState>()
  const t: HostIpamTarget = {stateDir: '/nonexistent', podCidrs, store, now: () => clock, ...extra}
  return {t, store, advance: (ms: number) => (clock += ms)}
}

const code = (c: string) => (e: unknown) => isPnError(e, c as never)

describe('ipam (host scope): allocation', () => {
  it('reserves the router IP on first use and never hands out network, router or broadcast', async () => {
    const {t} = target(['10.0.1.0/29'])
    const got = new Set<string>()
    for (let i = 0; i < 5; i++) got.add((await allocateIp(t, {owner: `o${i}`})).allocations[0].ip)
    assert.deepEqual([...got].sort(), ['10.0.1.2', '10.0.1.3', '10.0.1.4', '10.0.1.5', '10.0.1.6'])
    await assert.rejects(allocateIp(t, {owner: 'o6'}), code('PN_IPAM_EXHAUSTED'))
    const router = (await listIps(t)).find((a) => a.owner === 'router')
    assert.deepEqual([router?.ip, router?.state], ['10.0.1.1', 'reserved'])
  })

  it('returns one address per family with the router as gateway; same owner → same addresses, changed:false', async () => {
    const {t, store} = target()
    const a = await allocateIp(t, {owner: 'c1:eth0'})
    assert.equal(a.changed, true)
    assert.deepEqual(a.allocations.map((x) => [x.family, x.cidr, x.gateway, x.state]), [
      [4, '10.0.1.0/24', '10.0.1.1', 'confirmed'],
      [6, 'fd00:1::/64', 'fd00:1::1', 'confirmed'],
    ])
    const writes = store.writes
    const b = await allocateIp(t, {owner: 'c1:eth0'})
    assert.equal(b.changed, false)
    assert.deepEqual(b.allocations.map((x) => x.ip), a.allocations.map((x) => x.ip))
    assert.equal(store.writes, writes, 'an idempotent re-run does not write')
  })

  it('generates a unique anon-<hex> owner when none is given', async () => {
    const {t} = target()
    const a = await allocateIp(t)
    const b = await allocateIp(t)
    assert.match(a.owner, /^anon-[0-9a-f]{12}$/)
    assert.notEqual(a.owner, b.owner)
  })

  it('contiguous takes the lowest free address; random uses the injected random start', async () => {
    const {t} = target(['10.0.1.0/24'])
    assert.equal((await allocateIp(t, {owner: 'a', strategy: 'contiguous'})).allocations[0].ip, '10.0.1.2')
    assert.equal((await allocateIp(t, {owner: 'b', strategy: 'contiguous'})).allocations[0].ip, '10.0.1.3')
    const r = target(['10.0.1.0/24'], {random: () => 99})
    assert.equal((await allocateIp(r.t, {owner: 'x'})).allocations[0].ip, '10.0.1.100') // offset 99 = network+100
    assert.equal((await allocateIp(r.t, {owner: 'y'})).allocations[0].ip, '10.0.1.101')
  })

  it('claims a specific address per family, or fails clearly', async () => {
    const {t} = target()
    const a = await allocateIp(t, {owner: 'web', ip: ['10.0.1.50', 'fd00:1::50']})
    assert.deepEqual(a.allocations.map((x) => x.ip), ['10.0.1.50', 'fd00:1::50'])
    await assert.rejects(allocateIp(t, {owner: 'other', ip: ['10.0.1.50']}), code('PN_IPAM_IP_TAKEN'))
    await assert.rejects(allocateIp(t, {owner: 'other', ip: ['10.0.1.1']}), code('PN_IPAM_IP_TAKEN')) // router
    for (const ip of ['10.0.1.0', '10.0.1.255', '10.0.2.7', 'fd00:1::ffff', 'fd00:2::1']) {
      await assert.rejects(allocateIp(t, {owner: 'other', ip: [ip]}), code('PN_IPAM_IP_OUT_OF_RANGE'), ip)
    }
    await assert.rejects(allocateIp(t, {owner: 'other', ip: ['10.0.1.300']}), code('PN_INVALID_IP'))
    await assert.rejects(allocateIp(t, {owner: 'other', ip: ['10.0.1.7', '10.0.1.8']}), code('PN_INVALID_ARGUMENT'))
    // a failed claim leaves nothing behind
    assert.equal((await listIps(t)).some((x) => x.owner === 'other'), false)
  })

  it('releases by IP or owner, idempotently, and refuses the router reservation', async () => {
    const {t} = target()
    const a = await allocateIp(t, {owner: 'c1'})
    const r1 = await releaseIp(t, {ip: a.allocations[0].ip})
    assert.deepEqual([r1.changed, r1.released.length], [true, 1])
    const r2 = await releaseIp(t, {owner: 'c1'})
    assert.deepEqual([r2.changed, r2.released.map((x) => x.ip)], [true, [a.allocations[1].ip]])
    assert.equal((await releaseIp(t, {owner: 'c1'})).changed, false)
    assert.equal((await releaseIp(t, {ip: a.allocations[0].ip})).changed, false)
    const out = await releaseIp(t, {ip: '192.168.9.9'})
    assert.equal(out.changed, false)
    assert.match(out.warnings?.join() ?? '', /not in any pod CIDR/)
    await assert.rejects(releaseIp(t, {owner: 'router'}), code('PN_INVALID_ARGUMENT'))
    await assert.rejects(releaseIp(t, {ip: '10.0.1.1'}), code('PN_INVALID_ARGUMENT'))
    await assert.rejects(releaseIp(t, {}), code('PN_INVALID_ARGUMENT'))
    await assert.rejects(releaseIp(t, {ip: 'x'}), code('PN_INVALID_IP'))
  })

  it('reports capacity, used and free per CIDR (IPv6 capped at 65534 like Cilium)', async () => {
    const {t} = target()
    await allocateIp(t, {owner: 'a', expirationMs: 1000})
    const s = await showIpam(t)
    assert.deepEqual(s.map((x) => [x.cidr, x.capacity, x.used, x.free, x.pending, x.routerIp, x.lastIp]), [
      ['10.0.1.0/24', 254, 2, 252, 1, '10.0.1.1', '10.0.1.254'],
      ['fd00:1::/64', 65534, 2, 65532, 1, 'fd00:1::1', 'fd00:1::fffe'],
    ])
  })

  it('refuses pod CIDRs too small, two of one family, and a state made for other ranges', async () => {
    for (const c of ['10.0.0.0/31', '10.0.0.0/32', 'fd00::/127', 'fd00::/128']) {
      await assert.rejects(allocateIp(target([c]).t), code('PN_INVALID_CIDR'), c)
    }
    await assert.rejects(allocateIp(target(['10.0.0.0/24', '10.1.0.0/24']).t), code('PN_INVALID_ARGUMENT'))
    const {t, store} = target(['10.0.1.0/24'])
    await allocateIp(t, {owner: 'a'})
    await assert.rejects(allocateIp({...t, podCidrs: ['10.0.2.0/24']}), code('PN_NODE_CONFLICT'))
    await assert.rejects(allocateIp({...t, podCidrs: ['10.0.1.0/24', 'fd00::/64']}), code('PN_NODE_CONFLICT'))
    await assert.rejects(allocateIp({...t, routerIps: ['10.0.1.254']}), code('PN_NODE_CONFLICT'))
    assert.equal((await allocateIp({...t, podCidrs: ['10.0.1.9/24']}, {owner: 'a'})).warnings?.length, 1) // host bits: warning
    assert.ok(store.writes >= 1)
  })

  it('uses a standalone --router-ip, and refuses one outside the range', async () => {
    const {t} = target(['10.0.1.0/24'], {routerIps: ['10.0.1.254']})
    assert.equal((await allocateIp(t, {owner: 'a'})).allocations[0].gateway, '10.0.1.254')
    await assert.rejects(allocateIp(target(['10.0.1.0/24'], {routerIps: ['10.0.1.255']}).t), code('PN_IPAM_IP_OUT_OF_RANGE'))
    await assert.rejects(allocateIp(target(['10.0.1.0/24'], {routerIps: ['fd00::1']}).t), code('PN_IPAM_IP_OUT_OF_RANGE'))
  })

  it('refuses a corrupt state instead of overwriting it', async () => {
    const {t, store} = target(['10.0.1.0/24'])
    store.set({version: 1, ranges: [{cidr: '10.0.1.0/24', routerIp: '10.0.1.1'}], allocations: [{ip: '10.9.9.9', owner: 'x', state: 'confirmed', createdAt: ''}]})
    await assert.rejects(allocateIp(t), code('PN_STATE_CORRUPT'))
    store.set({version: 1, ranges: [{cidr: '10.0.1.0/24', routerIp: '10.0.1.1'}], allocations: [
      {ip: '10.0.1.5', owner: 'x', state: 'confirmed', createdAt: ''},
      {ip: '10.0.1.5', owner: 'y', state: 'confirmed', createdAt: ''},
    ]})
    await assert.rejects(allocateIp(t), code('PN_STATE_CORRUPT'))
  })
})

describe('ipam (host scope): expiry (AllocateNextWithExpiration)', () => {
  it('keeps a pending allocation until confirmed; an expired one returns at the next mutation', async () => {
    const {t, advance} = target(['10.0.1.0/24'])
    const a = await allocateIp(t, {owner: 'c1:eth0', ip: ['10.0.1.9'], expirationMs: 10_000})
    assert.equal(a.allocations[0].state, 'pending')
    assert.equal(a.allocations[0].expiresAt, '2030-01-01T00:00:10.000Z')
    advance(9_999)
    await allocateIp(t, {owner: 'other'})
    assert.ok((await listIps(t)).some((x) => x.ip === '10.0.1.9'))
    advance(1)
    const b = await allocateIp(t, {owner: 'third', ip: ['10.0.1.9']}) // the expired one was returned first
    assert.equal(b.allocations[0].ip, '10.0.1.9')
    assert.match(b.warnings?.join() ?? '', /returned 1 expired pending allocation\(s\) to the pool: 10\.0\.1\.9 \(c1:eth0\)/)
  })

  it('confirm makes it permanent; confirming an expired or unknown one fails', async () => {
    const {t, advance} = target(['10.0.1.0/24'])
    await allocateIp(t, {owner: 'c1', expirationMs: 1000})
    await allocateIp(t, {owner: 'c2', expirationMs: 1000})
    const c = await confirmIp(t, {owner: 'c1'})
    assert.deepEqual([c.changed, c.allocations[0].state, c.allocations[0].expiresAt], [true, 'confirmed', undefined])
    assert.equal((await confirmIp(t, {owner: 'c1'})).changed, false)
    advance(1000)
    await assert.rejects(confirmIp(t, {owner: 'c2'}), code('PN_IPAM_NOT_ALLOCATED'))
    await assert.rejects(confirmIp(t, {ip: '10.0.1.77'}), code('PN_IPAM_NOT_ALLOCATED'))
    // a failed call writes nothing, so the expired c2 is still listed until the next successful mutation
    assert.equal((await listIps(t)).filter((x) => x.owner !== 'router').map((x) => x.owner).sort().join(), 'c1,c2')
    await gcIps(t)
    assert.equal((await listIps(t)).filter((x) => x.owner !== 'router').map((x) => x.owner).join(), 'c1')
  })

  it('gc returns expired allocations and reports them', async () => {
    const {t, advance} = target()
    await allocateIp(t, {owner: 'c1', expirationMs: 500})
    await allocateIp(t, {owner: 'c2'})
    assert.deepEqual((await gcIps(t)).released, [])
    advance(500)
    const g = await gcIps(t)
    assert.deepEqual(g.released.map((x) => [x.owner, x.family]), [['c1', 4], ['c1', 6]])
    assert.equal(g.warnings, undefined)
    assert.deepEqual((await showIpam(t)).map((x) => x.used), [2, 2])
  })

  it('a retried allocation re-arms the expiry of a pending one', async () => {
    const {t, advance} = target(['10.0.1.0/24'])
    await allocateIp(t, {owner: 'c1', expirationMs: 1000})
    advance(900)
    const again = await allocateIp(t, {owner: 'c1', expirationMs: 1000})
    assert.equal(again.changed, false)
    advance(900)
    assert.equal((await gcIps(t)).released.length, 0)
  })

  it('parses durations', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('10m'), 600_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('1m30s'), 90_000)
    assert.equal(parseDuration('1.5s'), 1500)
    for (const bad of ['', '10', 'ms', '5x', '-1s', '0s', '1s 2s']) {
      assert.throws(() => parseDuration(bad), code('PN_INVALID_DURATION'), bad)
    }
  })
})

describe('ipam (host scope): node context, router reservation, reset', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-ipam-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))
  // IPAM takes its CIDRs; the node layer reads them from node.json (src/node/ipam.ts).
  const t = () => nodeIpamTarget(dir)

  const node = (over: Partial<NodeContext> = {}): NodeContext => ({
    version: 1, name: 'n1', uplink: 'eth0', podCidrs: ['10.0.7.0/24', 'fd00:7::/112'], routerIps: ['10.0.7.1', 'fd00:7::1'],
    mtu: 1500, routeMtu: 1500, bpffsRoot: '/run/pn/bpf', routing: 'bpf', createdAt: '', ...over,
  })

  it('works from node.json (ipam.json in the state dir) and refuses without one', async () => {
    await assert.rejects(t(), code('PN_NODE_NOT_INITIALIZED'))
    await writeNodeContext(dir, node({routerIps: ['10.0.7.254', 'fd00:7::1']}))
    const a = await allocateIp(await t(), {owner: 'c1:eth0'})
    assert.deepEqual(a.allocations.map((x) => x.gateway), ['10.0.7.254', 'fd00:7::1'])
    const meta = JSON.parse((await import('node:fs')).readFileSync(path.join(ipamDir(dir), 'meta.json'), 'utf8')) as {ranges: {cidr: string}[]}
    assert.deepEqual(meta.ranges.map((r) => r.cidr), ['10.0.7.0/24', 'fd00:7::/112'])
  })

  it('reserveRouterIps (re)writes the router reservation idempotently', async () => {
    await writeNodeContext(dir, node())
    const r1 = await reserveRouterIps(await t())
    assert.deepEqual([r1.changed, r1.allocations.map((x) => x.ip)], [true, ['10.0.7.1', 'fd00:7::1']])
    assert.equal((await reserveRouterIps(await t())).changed, false)
    await allocateIp(await t(), {owner: 'p', ip: ['10.0.7.9']})
    await writeNodeContext(dir, node({routerIps: ['10.0.7.200', 'fd00:7::1']}))
    await assert.rejects(allocateIp(await t(), {owner: 'q'}), code('PN_NODE_CONFLICT'))
    const r2 = await reserveRouterIps(await t())
    assert.equal(r2.changed, true)
    const routers = (await listIps(await t())).filter((x) => x.owner === 'router').map((x) => x.ip)
    assert.deepEqual(routers, ['10.0.7.200', 'fd00:7::1'])
    await writeNodeContext(dir, node({routerIps: ['10.0.7.9', 'fd00:7::1']}))
    await assert.rejects(reserveRouterIps(await t()), code('PN_IPAM_IP_TAKEN'))
  })

  it('resetIpam removes the ipam state (no temp directory left) and is idempotent', async () => {
    await writeNodeContext(dir, node())
    await allocateIp(await t())
    assert.deepEqual(await resetIpam(dir), {removed: true, file: ipamDir(dir)})
    assert.deepEqual((await import('node:fs')).readdirSync(dir).filter((f) => f.includes('ipam') && !f.endsWith('.lock')), [])
    assert.equal((await resetIpam(dir)).removed, false)
  })
})

// Speed is bench/ipam's job (interleaved, with a baseline); a wall-clock assert here only flakes on a busy machine.
describe('ipam (host scope): a full /16', () => {
  for (const strategy of ['random', 'contiguous'] as const) {
    it(`fills a /16 (65,534 addresses) with distinct addresses, then is exhausted (${strategy})`, () => {
      const a = new HostAllocator(HostAllocator.initialState([{cidr: '10.99.0.0/16'}]))
      const seen = new Set<string>()
      for (let i = 0; i < 65533; i++) seen.add(a.allocate({owner: `o${i}`, strategy}).allocations[0].ip)
      assert.equal(seen.size, 65533)
      assert.equal(a.show()[0].free, 0)
      assert.throws(() => a.allocate({owner: 'last', strategy}), code('PN_IPAM_EXHAUSTED'))
    })
  }
})
