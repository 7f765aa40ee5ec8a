/**
 * Safety rails of node init and IPAM (no root): a pod CIDR that overlaps the node's own networks
 * or another node's pool block is refused before anything changes, a node name is checked like
 * `pn pool alloc` checks it, and a hand-run release does not free a live endpoint's address.
 */
import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {foreignOverlaps, parseNodeNetworks} from '../../src/datapath/host.js'
import type {EndpointRecord} from '../../src/endpoint/store.js'
import {saveEndpoint} from '../../src/endpoint/store.js'
import {isPnError, PnError} from '../../src/errors.js'
import {DryRunRunner} from '../../src/exec/dry-run.js'
import type {Runner} from '../../src/exec/runner.js'
import {FakeKernel} from '../helpers/fake-kernel.js'
import {allocateIp, confirmIp, ipamExists, listIps, releaseIp, type HostIpamTarget, type IpamState} from '../../src/ipam/host.js'
import {allocatePodCidrs, initPool, listPool} from '../../src/ipam/pool.js'
import {writeNodeContext, type NodeContext} from '../../src/node/context.js'
import {initNode} from '../../src/node/init.js'
import {nodeIpamTarget, releaseNodeIps} from '../../src/node/ipam.js'
import {removeServiceTable, servicesFile} from '../../src/service/apply.js'
import {MemoryStore} from '../../src/state/store.js'

const code = (c: string) => (e: unknown) => isPnError(e, c as never)

/** `ip -j addr show` of a node whose uplink up0 holds 172.31.98.1/24, plus pn's devices. */
const ADDRS = JSON.stringify([
  {ifname: 'lo', addr_info: [{family: 'inet', local: '127.0.0.1', prefixlen: 8}, {family: 'inet6', local: '::1', prefixlen: 128}]},
  {ifname: 'up0', addr_info: [{family: 'inet', local: '172.31.98.1', prefixlen: 24}, {family: 'inet6', local: 'fe80::1', prefixlen: 64}]},
  {ifname: 'pn_host', addr_info: [{family: 'inet', local: '10.61.1.1', prefixlen: 32}]},
  {ifname: 'wg0', addr_info: [{family: 'inet', local: '192.168.50.1', prefixlen: 32, address: '192.168.50.2'}]},
])
const ROUTES4 = JSON.stringify([
  {dst: 'default', gateway: '172.31.98.254', dev: 'up0'},
  {dst: '172.31.98.0/24', dev: 'up0', protocol: 'kernel', scope: 'link', prefsrc: '172.31.98.1'},
  {dst: '10.61.1.0/24', gateway: '10.61.1.1', dev: 'pn_host', prefsrc: '10.61.1.1'},
  {dst: '10.61.1.9', dev: 'lxc0123456789ab', scope: 'link'},
  {dst: '10.40.0.0/16', nexthops: [{gateway: '172.31.98.2', dev: 'up0'}, {gateway: '10.61.1.7', dev: 'pn_host'}]},
  {type: 'blackhole', dst: '10.50.0.0/16'},
  {type: 'local', dst: '172.31.98.1', dev: 'up0', table: 'local'},
  {dst: '10.80.0.0/16', gateway: '172.31.98.3', dev: 'up0', table: '100'},
])
const ROUTES6 = JSON.stringify([
  {dst: 'fe80::/64', dev: 'up0'},
  {dst: 'default', gateway: 'fe80::ff', dev: 'up0'},
  {type: 'multicast', dst: 'ff00::/8', dev: 'up0', table: 'local'},
])

describe('node rails: pod CIDR against the node\'s addresses and routes (pure)', () => {
  const nets = parseNodeNetworks(ADDRS, [ROUTES4, ROUTES6])
  const hits = (cidr: string) => foreignOverlaps(cidr, nets).map((n) => `${n.kind} ${n.text}`)

  it('finds the uplink\'s own subnet as address, route and local route', () => {
    assert.deepEqual(hits('172.31.98.0/24'), [
      'address 172.31.98.1/24 dev up0',
      'route 172.31.98.0/24 dev up0',
      'route local 172.31.98.1 dev up0 table local',
    ])
    // Part of the subnet, or a CIDR around it: an overlap either way.
    assert.ok(hits('172.31.98.128/25').includes('address 172.31.98.1/24 dev up0'))
    assert.ok(hits('172.31.0.0/16').includes('route 172.31.98.0/24 dev up0'))
  })

  it('ignores default routes and what sits on pn_host, pn_net and lxc devices (an idempotent re-init)', () => {
    assert.deepEqual(hits('10.61.1.0/24'), [])
    assert.deepEqual(hits('10.99.0.0/24'), [], 'only the default routes cover it')
  })

  it('counts routes in other tables, device-less routes, multipath with a foreign next hop, point-to-point and link-local', () => {
    assert.deepEqual(hits('10.80.3.0/24'), ['route 10.80.0.0/16 via 172.31.98.3 dev up0 table 100'])
    assert.deepEqual(hits('10.50.1.0/24'), ['route blackhole 10.50.0.0/16'])
    assert.deepEqual(hits('10.40.0.0/24'), ['route 10.40.0.0/16 via 172.31.98.2 dev up0 nexthop via 10.61.1.7 dev pn_host'])
    assert.deepEqual(hits('192.168.50.0/24'), ['address 192.168.50.1/32 dev wg0'])
    assert.deepEqual(hits('192.168.50.2/32'), [], 'the peer of a point-to-point address is not the node\'s')
    assert.deepEqual(hits('fe80::/64'), ['address fe80::1/64 dev up0', 'route fe80::/64 dev up0'])
    assert.deepEqual(hits('127.0.0.0/24'), ['address 127.0.0.1/8 dev lo'])
  })
})

/** A kernel with one uplink, up0 = 172.31.98.1/24: answers reads, fails nothing. */
const uplinkKernel = () => new FakeKernel({uplink: {ifname: 'up0', mtu: 1500, address: '02:00:00:00:00:01'}, addrs: ADDRS, routes4: ROUTES4, routes6: ROUTES6})

describe('node rails: node init refuses before changing anything', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-rails-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))
  const init = (runner: Runner, over: Partial<Parameters<typeof initNode>[2]> = {}) =>
    initNode(runner, dir, {name: 'n1', uplink: 'up0', podCidrs: ['10.70.1.0/24'], routing: 'host-routes', ...over})

  it('PN_CIDR_CONFLICT for the uplink\'s subnet, naming both; no command that changes anything ran', async () => {
    const runner = new DryRunRunner(uplinkKernel())
    const err = await init(runner, {podCidrs: ['172.31.98.0/24']}).catch((e: unknown) => e)
    assert.ok(isPnError(err, 'PN_CIDR_CONFLICT'), String(err))
    assert.match(err.message, /pod cidr 172\.31\.98\.0\/24 overlaps address 172\.31\.98\.1\/24 dev up0/)
    assert.match(err.message, /route 172\.31\.98\.0\/24 dev up0/)
    assert.equal(err.exitCode, 4)
    assert.deepEqual(runner.records.map((r) => r.argv.join(' ')), [], 'nothing recorded: no change was attempted')
    assert.ok(!existsSync(path.join(dir, 'node.json')))
    assert.equal(await ipamExists(dir), false)
  })

  it('the same init with a CIDR of its own goes through', async () => {
    const r = await init(new DryRunRunner(uplinkKernel()))
    assert.deepEqual(r.node.podCidrs, ['10.70.1.0/24'])
  })

  it('checks --name with the validator of `pn pool alloc` (one validator)', async () => {
    const store = new MemoryStore<never>()
    for (const name of ['a b', '../etc', '..', 'n1/x', '']) {
      const err = await init(new DryRunRunner(uplinkKernel()), {name}).catch((e: unknown) => e)
      assert.ok(isPnError(err, 'PN_INVALID_ARGUMENT'), `${JSON.stringify(name)}: ${String(err)}`)
      const poolErr = await allocatePodCidrs(store, name).catch((e: unknown) => e)
      assert.equal((err as PnError).message, (poolErr as PnError).message, 'the same check, the same words')
    }
    assert.ok(!existsSync(path.join(dir, 'node.json')))
  })

  describe('--pod-cidr with --pool', () => {
    let pool: string
    beforeEach(async () => {
      pool = path.join(dir, 'pool.json')
      await initPool(pool, {cidrs: ['10.70.0.0/16'], maskSize: 24})
    })

    it('refuses another node\'s block, naming that node; the pool is unchanged', async () => {
      const other = await allocatePodCidrs(pool, 'n2')
      const before = (await import('node:fs')).readFileSync(pool, 'utf8')
      const err = await init(new DryRunRunner(uplinkKernel()), {podCidrs: other.cidrs, pool}).catch((e: unknown) => e)
      assert.ok(isPnError(err, 'PN_CIDR_CONFLICT'), String(err))
      assert.match(err.message, new RegExp(`pod cidr ${other.cidrs[0].replace(/[./]/g, '\\$&')} is not this node's: .*gave it to node n2`))
      assert.equal((await import('node:fs')).readFileSync(pool, 'utf8'), before)
    })

    it('refuses a block the pool did not allocate', async () => {
      const err = await init(new DryRunRunner(uplinkKernel()), {podCidrs: ['10.70.200.0/24'], pool}).catch((e: unknown) => e)
      assert.ok(isPnError(err, 'PN_CIDR_CONFLICT'), String(err))
      assert.match(err.message, /did not allocate it to n1/)
    })

    it('a block just taken from the pool that overlaps the uplink is refused and given back', async () => {
      const clash = path.join(dir, 'clash.json')
      await initPool(clash, {cidrs: ['172.31.98.0/24'], maskSize: 25})
      const err = await init(new DryRunRunner(uplinkKernel()), {podCidrs: undefined, pool: clash}).catch((e: unknown) => e)
      assert.ok(isPnError(err, 'PN_CIDR_CONFLICT'), String(err))
      assert.match(err.message, /pod cidr 172\.31\.98\.0\/25 overlaps address 172\.31\.98\.1\/24 dev up0/)
      assert.deepEqual((await listPool(clash)).nodes, [], 'the undo released it')
    })

    it('takes the block the pool gave this node, and remembers the pool (reset gives it back)', async () => {
      const mine = await allocatePodCidrs(pool, 'n1')
      const r = await init(new DryRunRunner(uplinkKernel()), {podCidrs: mine.cidrs, pool})
      assert.deepEqual(r.node.podCidrs, mine.cidrs)
      assert.equal(r.node.pool, pool)
    })
  })
})

function ipamTarget(): HostIpamTarget {
  return {stateDir: '/nonexistent', podCidrs: ['10.0.1.0/24', 'fd00:1::/64'], store: new MemoryStore<IpamState>()}
}

describe('ipam rails: one way to name addresses; release refuses what is in use', () => {
  it('release and confirm take several addresses', async () => {
    const t = ipamTarget()
    const a = await allocateIp(t, {owner: 'a', ip: ['10.0.1.10'], expirationMs: 60_000})
    const b = await allocateIp(t, {owner: 'b', ip: ['10.0.1.11'], expirationMs: 60_000})
    const c = await confirmIp(t, {ip: [a.allocations[0].ip, b.allocations[1].ip]})
    assert.deepEqual(c.allocations.map((x) => `${x.owner} ${x.family} ${x.state}`).sort(), ['a 4 confirmed', 'b 6 confirmed'])
    await assert.rejects(confirmIp(t, {ip: ['10.0.1.10', '10.0.1.99']}), (e) => isPnError(e, 'PN_IPAM_NOT_ALLOCATED') && /10\.0\.1\.99/.test((e as Error).message))
    const r = await releaseIp(t, {ip: [a.allocations[0].ip, b.allocations[0].ip, '10.0.1.200']})
    assert.deepEqual(r.released.map((x) => x.ip), ['10.0.1.10', '10.0.1.11'])
    await assert.rejects(releaseIp(t, {ip: ['10.0.1.10'], owner: 'a'}), code('PN_INVALID_ARGUMENT'))
    await assert.rejects(releaseIp(t, {ip: []}), code('PN_INVALID_ARGUMENT'))
  })

  it('an inUse answer refuses the whole release with PN_IPAM_IN_USE and releases nothing', async () => {
    const t = ipamTarget()
    await allocateIp(t, {owner: 'live:eth0', ip: ['10.0.1.20']})
    await allocateIp(t, {owner: 'gone:eth0', ip: ['10.0.1.21']})
    const inUse = (x: {owner: string}) => (x.owner === 'live:eth0' ? 'the live one' : undefined)
    await assert.rejects(releaseIp(t, {ip: ['10.0.1.21', '10.0.1.20']}, {inUse}), (e) => isPnError(e, 'PN_IPAM_IN_USE') && /10\.0\.1\.20: in use by the live one/.test((e as Error).message))
    assert.equal((await listIps(t)).length, 6, 'two routers, two owners × two families: nothing went')
    assert.equal((await releaseIp(t, {owner: 'gone:eth0'}, {inUse})).changed, true)
  })
})

describe('ipam rails: the node layer (endpoint records, node.json)', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-rails-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  const node: NodeContext = {
    version: 1, name: 'n1', uplink: 'eth0', podCidrs: ['10.0.7.0/24'], routerIps: ['10.0.7.1'],
    mtu: 1500, routeMtu: 1500, bpffsRoot: '/run/pn/bpffs/n1', routing: 'bpf', createdAt: '',
  }
  const record = (containerId: string, ips: string[], endpointId: number): EndpointRecord => ({
    id: `${containerId}:eth0`, containerId, ifname: 'eth0', netns: '/run/netns/x', ips, routerIps: ['10.0.7.1'],
    hostIfname: 'lxc000000000000', hostMac: '02:00:00:00:00:02', hostIfindex: 9, podIfname: 'eth0', podMac: '02:00:00:00:00:03',
    podIfindex: 2, mtu: 1500, endpointId, createdAt: '',
  })

  it('ipam works from node.json without --pod-cidr; the same --pod-cidr is fine, another one is refused clearly', async () => {
    await writeNodeContext(dir, node)
    const t = await nodeIpamTarget(dir)
    assert.deepEqual([t.podCidrs, t.source], [['10.0.7.0/24'], 'node'])
    assert.deepEqual((await nodeIpamTarget(dir, {podCidrs: ['10.0.7.0/24']})).source, 'node')
    await assert.rejects(nodeIpamTarget(dir, {podCidrs: ['10.0.8.0/24']}), (e) => isPnError(e, 'PN_NODE_CONFLICT') && /drop --pod-cidr/.test((e as PnError).hint ?? ''))
  })

  it('refuses to release a live endpoint\'s address (by IP and by owner), naming the endpoint; --force releases it', async () => {
    await writeNodeContext(dir, node)
    const t = await nodeIpamTarget(dir)
    const ip = (await allocateIp(t, {owner: 'c1:eth0'})).allocations[0].ip
    await saveEndpoint(dir, record('c1', [ip], 7))
    for (const sel of [{ip: [ip]}, {owner: 'c1:eth0'}]) {
      const err = await releaseNodeIps(t, sel).catch((e: unknown) => e)
      assert.ok(isPnError(err, 'PN_IPAM_IN_USE'), String(err))
      assert.match(err.message, /endpoint c1:eth0 \(container c1, ifname eth0, endpoint id 7\)/)
      assert.match(err.hint!, /--force/)
      assert.equal(err.exitCode, 4)
    }
    assert.ok((await listIps(t)).some((a) => a.ip === ip), 'still allocated')
    const forced = await releaseNodeIps(t, {ip: [ip]}, {force: true})
    assert.deepEqual(forced.released.map((a) => a.ip), [ip])
  })

  it('an address a record lists under another owner (veth create --ip) is in use too; one without a record is released', async () => {
    await writeNodeContext(dir, node)
    const t = await nodeIpamTarget(dir)
    await allocateIp(t, {owner: 'web', ip: ['10.0.7.50']})
    await allocateIp(t, {owner: 'old', ip: ['10.0.7.51']})
    await saveEndpoint(dir, record('r1', ['10.0.7.50'], 3))
    await assert.rejects(releaseNodeIps(t, {owner: 'web'}), (e) => isPnError(e, 'PN_IPAM_IN_USE') && /endpoint r1:eth0/.test((e as Error).message))
    assert.equal((await releaseNodeIps(t, {ip: ['10.0.7.51']})).changed, true)
  })
})

describe('node rails: reset forgets the service table', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-rails-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('removes services.bin and a pending table; twice is a no-op', async () => {
    const files = [servicesFile(dir), `${servicesFile(dir)}.pending`]
    for (const f of files) writeFileSync(f, 'x')
    assert.deepEqual((await removeServiceTable(dir)).sort(), [...files].sort())
    for (const f of files) assert.ok(!existsSync(f), f)
    assert.deepEqual(await removeServiceTable(dir), [])
  })
})
