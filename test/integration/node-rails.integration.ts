/**
 * Safety rails of `pn node` and `pn ipam` on a real kernel, inside throwaway `pn-` namespaces: a
 * pod CIDR overlapping the uplink's own subnet is refused with nothing changed, reset never takes
 * a route pn did not make, a live pod's address is not released by hand, and a reset node starts
 * the next init without the old service table.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

/** Everything the kernel knows about addresses and routes of the netns, pn's devices left out. */
function foreignState(ns: string): string {
  const pn = (dev?: string) => dev === 'pn_host' || dev === 'pn_net' || /^lxc[0-9a-f]{12}$/.test(dev ?? '')
  const addrs = (JSON.parse(inNs(ns, ['ip', '-j', 'addr', 'show'])) as {ifname: string; addr_info: {local: string; prefixlen: number}[]}[])
    .filter((l) => !pn(l.ifname))
    .flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen} dev ${l.ifname}`))
  const routes = ['-4', '-6'].flatMap((f) => (JSON.parse(inNs(ns, ['ip', f, '-j', 'route', 'show', 'table', 'all'])) as {dst: string; dev?: string; gateway?: string; table?: string; type?: string}[])
    .filter((r) => !pn(r.dev))
    .map((r) => `${r.type ?? ''} ${r.dst} ${r.gateway ?? ''} ${r.dev ?? ''} ${r.table ?? ''}`))
  return [...addrs, ...routes].sort().join('\n')
}

const linkNames = (ns: string) => (JSON.parse(inNs(ns, ['ip', '-j', 'link', 'show'])) as {ifname: string}[]).map((l) => l.ifname).sort()

describe('pn node and ipam rails (root, netns)', function () {
  this.timeout(180_000)
  let n: ReturnType<typeof makeNode>
  const init = (cidr: string, extra: string[] = []) =>
    n.run(['node', 'init', '--name', 'n1', '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'host-routes', '--bpffs-root', n.bpffsRoot, ...extra])

  before(() => ensureBpffsMounted())
  beforeEach(() => {
    n = makeNode('rl')
    // The uplink holds an address of its own, with its subnet route and a route beyond it.
    inNs(n.node, ['ip', 'addr', 'add', '172.31.98.1/24', 'dev', 'eth0'])
    inNs(n.node, ['ip', 'route', 'add', '10.90.0.0/16', 'via', '172.31.98.254'])
  })
  afterEach(() => {
    spawnSync('rm', ['-rf', n.bpffsRoot])
    rmSync(n.stateDir, {recursive: true, force: true})
    cleanupNamespaces()
  })

  it('refuses a pod CIDR overlapping the uplink\'s subnet (PN_CIDR_CONFLICT, naming both) and changes nothing; reset keeps the uplink\'s route', () => {
    const before = foreignState(n.node)
    for (const cidr of ['172.31.98.0/24', '172.31.98.128/25', '10.90.4.0/24']) {
      const r = init(cidr)
      assert.equal(r.status, 4, r.stdout + r.stderr)
      assert.equal(r.json?.error?.code, 'PN_CIDR_CONFLICT')
      assert.match(r.json!.error!.message, new RegExp(`pod cidr ${cidr.replace(/[./]/g, '\\$&')} overlaps .*dev eth0`))
    }
    assert.match(init('172.31.98.0/24').json!.error!.message, /address 172\.31\.98\.1\/24 dev eth0/)
    assert.deepEqual(linkNames(n.node), ['eth0', 'lo'], 'no pn_host/pn_net')
    assert.equal(foreignState(n.node), before, 'addresses and routes as they were')
    for (const f of ['node.json', 'ipam']) assert.ok(!existsSync(path.join(n.stateDir, f)), f)
    const reset = n.run(['node', 'reset'])
    assert.equal(reset.json?.status, 'ok', reset.stdout)
    assert.equal(foreignState(n.node), before)
    assert.match(inNs(n.node, ['ip', 'route', 'show', '172.31.98.0/24']), /172\.31\.98\.0\/24 dev eth0 proto kernel/)
  })

  it('a re-init passes its own routes (and a pod\'s), and reset deletes no route it did not make', () => {
    const before = foreignState(n.node)
    assert.equal(init('10.61.1.0/24').json?.status, 'ok')
    const pod = createNamespace('rlp')
    const v = n.run(['veth', 'create', '--container-id', 'p1', '--netns', `/run/netns/${pod.name}`, '--ip', '10.61.1.9'])
    assert.equal(v.json?.status, 'ok', v.stdout)
    assert.match(inNs(n.node, ['ip', 'route', 'show', '10.61.1.9']), /dev lxc/, 'host-routes: a route on the pod\'s lxc')
    const again = init('10.61.1.0/24')
    assert.equal(again.json?.status, 'ok', again.stdout)
    assert.equal(again.json!.result.changed, false)
    // A route someone adds later that shadows part of the pod CIDR is refused on the next run too.
    inNs(n.node, ['ip', 'route', 'add', '10.61.1.128/25', 'via', '172.31.98.254'])
    const shadowed = init('10.61.1.0/24')
    assert.equal(shadowed.json?.error?.code, 'PN_CIDR_CONFLICT', shadowed.stdout)
    assert.match(shadowed.json!.error!.message, /route 10\.61\.1\.128\/25 via 172\.31\.98\.254 dev eth0/)
    const show = n.run(['node', 'show'])
    assert.equal(show.json!.result.ok, false, 'node show reports the overlap as drift')
    const bad = show.json!.result.checks.filter((c: {ok: boolean}) => !c.ok)
    assert.deepEqual(bad.map((c: {check: string}) => c.check), ["pod cidr 10.61.1.0/24 apart from the node's networks"])
    assert.match(bad[0].actual, /route 10\.61\.1\.128\/25 via 172\.31\.98\.254 dev eth0/)
    inNs(n.node, ['ip', 'route', 'del', '10.61.1.128/25'])
    assert.equal(n.run(['node', 'show']).json!.result.ok, true)
    const reset = n.run(['node', 'reset'])
    assert.equal(reset.json?.status, 'ok', reset.stdout)
    assert.deepEqual(linkNames(n.node), ['eth0', 'lo'])
    assert.equal(foreignState(n.node), before, 'every address and route pn did not make is still there')
  })

  it('reset leaves a pn_host it did not make alone, with its address and route; init refuses it', () => {
    inNs(n.node, ['ip', 'link', 'add', 'pn_host', 'type', 'veth', 'peer', 'name', 'other0'])
    inNs(n.node, ['ip', 'link', 'set', 'pn_host', 'up'])
    inNs(n.node, ['ip', 'addr', 'add', '192.168.77.1/24', 'dev', 'pn_host'])
    const r = init('10.61.1.0/24')
    assert.equal(r.json?.error?.code, 'PN_NODE_CONFLICT', r.stdout)
    assert.doesNotMatch(r.json!.error!.hint!, /node reset/)
    const reset = n.run(['node', 'reset'])
    assert.equal(reset.json?.status, 'ok', reset.stdout)
    assert.ok(reset.json!.warnings!.some((w: string) => /pn_host left alone/.test(w)), reset.stdout)
    assert.deepEqual(linkNames(n.node), ['eth0', 'lo', 'other0', 'pn_host'])
    assert.match(inNs(n.node, ['ip', 'route', 'show', '192.168.77.0/24']), /dev pn_host/)
  })

  it('refuses a --name pool alloc refuses, and another node\'s pool block for --pod-cidr', () => {
    for (const name of ['../etc', 'a b']) {
      const r = n.run(['node', 'init', '--name', name, '--device', 'eth0', '--pod-cidr', '10.61.1.0/24', '--routing', 'host-routes'])
      assert.deepEqual([r.status, r.json?.error?.code], [2, 'PN_INVALID_ARGUMENT'], r.stdout)
    }
    const pool = path.join(n.stateDir, 'pool.json')
    assert.equal(pn(['pool', 'init', '--cidr', '10.62.0.0/16', '--mask-size', '24', '--pool', pool, '--json']).json?.status, 'ok')
    const other = pn(['pool', 'alloc', 'n2', '--pool', pool, '--json']).json!.result.cidrs[0]
    const r = init(other, ['--pool', pool])
    assert.equal(r.json?.error?.code, 'PN_CIDR_CONFLICT', r.stdout)
    assert.match(r.json!.error!.message, /gave it to node n2/)
    assert.deepEqual(linkNames(n.node), ['eth0', 'lo'])
    const mine = pn(['pool', 'alloc', 'n1', '--pool', pool, '--json']).json!.result.cidrs[0]
    const ok = init(mine, ['--pool', pool])
    assert.equal(ok.json?.status, 'ok', ok.stdout)
    assert.equal(ok.json!.result.node.pool, pool)
  })

  it('ipam works from node.json; a live pod\'s address is not released by hand (PN_IPAM_IN_USE) unless --force', () => {
    assert.equal(init('10.61.1.0/24').json?.status, 'ok')
    const alloc = n.run(['ipam', 'alloc', '--owner', 'p1:eth0'])
    assert.equal(alloc.json?.status, 'ok', alloc.stdout)
    const ip = alloc.json!.result.allocations[0].ip as string
    assert.deepEqual(n.run(['ipam', 'list']).json!.result.map((a: {owner: string}) => a.owner).sort(), ['p1:eth0', 'router'])
    assert.equal(n.run(['ipam', 'show']).json!.result[0].used, 2)
    const pod = createNamespace('rlp')
    assert.equal(n.run(['veth', 'create', '--container-id', 'p1', '--netns', `/run/netns/${pod.name}`, '--ip', ip]).json?.status, 'ok')
    const endpointId = n.run(['endpoint', 'show', '--container-id', 'p1']).json!.result.endpointId
    for (const sel of [[ip], ['--ip', ip], ['--owner', 'p1:eth0']]) {
      const r = n.run(['ipam', 'release', ...sel])
      assert.equal(r.status, 4, r.stdout)
      assert.equal(r.json?.error?.code, 'PN_IPAM_IN_USE')
      assert.match(r.json!.error!.message, new RegExp(`endpoint p1:eth0 \\(container p1, ifname eth0, endpoint id ${endpointId}\\)`))
    }
    const second = n.run(['ipam', 'alloc', '--owner', 'p2:eth0', '--ip', ip])
    assert.equal(second.json?.error?.code, 'PN_IPAM_IP_TAKEN', 'the address stayed with the live pod')
    const forced = n.run(['ipam', 'release', '--ip', ip, '--force'])
    assert.equal(forced.json?.status, 'ok', forced.stdout)
    assert.deepEqual(forced.json!.result.released.map((a: {ip: string}) => a.ip), [ip])
    const wrong = n.run(['ipam', 'list', '--pod-cidr', '10.61.2.0/24'])
    assert.equal(wrong.json?.error?.code, 'PN_NODE_CONFLICT')
    assert.match(wrong.json!.error!.hint!, /drop --pod-cidr/)
  })

  it('reset removes the service table: the next node lists no services it never programmed', function () {
    const cidr = '10.61.1.0/24'
    const bpfInit = () => n.run(['node', 'init', '--name', 'n1', '--device', 'eth0', '--pod-cidr', cidr, '--bpffs-root', n.bpffsRoot])
    const first = bpfInit()
    assert.equal(first.json?.status, 'ok', first.stdout + first.stderr)
    const file = path.join(n.stateDir, 'svc.json')
    writeFileSync(file, JSON.stringify([{frontend: '10.96.0.10:80', backends: ['10.61.1.20:8080']}]))
    const applied = n.run(['service', 'apply', file])
    assert.equal(applied.json?.status, 'ok', applied.stdout + applied.stderr)
    assert.equal(n.run(['service', 'list']).json!.result.length, 1)
    const reset = n.run(['node', 'reset'])
    assert.equal(reset.json?.status, 'ok', reset.stdout)
    assert.ok(reset.json!.result.removed.includes(path.join(n.stateDir, 'services.bin')), reset.stdout)
    assert.ok(!existsSync(path.join(n.stateDir, 'services.bin')))
    assert.equal(bpfInit().json?.status, 'ok')
    const list = n.run(['service', 'list'])
    assert.equal(list.json?.status, 'ok', list.stdout)
    assert.deepEqual(list.json!.result, [])
    assert.deepEqual(list.json!.warnings, [], 'no service the maps lack: nothing to re-apply')
  })
})
