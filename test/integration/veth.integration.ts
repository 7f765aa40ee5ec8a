/**
 * pn veth create/delete and endpoint records for real: a node netns initialised with pn (host-routes),
 * pod netns created per test. Every error case checks that nothing leaked (no lxc link, no record).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs, ping} from '../helpers/netns.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

function lxcLinks(ns: string): string[] {
  return (JSON.parse(inNs(ns, ['ip', '-j', 'link', 'show'])) as {ifname: string}[]).map((l) => l.ifname).filter((n) => n.startsWith('lxc'))
}

describe('pn veth + endpoints (root, netns)', function () {
  this.timeout(120_000)
  let n: ReturnType<typeof makeNode>

  before(() => ensureBpffsMounted())
  beforeEach(() => {
    n = makeNode('vt')
    const r = n.run(['node', 'init', '--name', 'v1', '--device', 'eth0', '--pod-cidr', '10.63.1.0/24', '--routing', 'host-routes', '--bpffs-root', n.bpffsRoot])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
  })
  afterEach(() => {
    spawnSync('rm', ['-rf', n.bpffsRoot])
    rmSync(n.stateDir, {recursive: true, force: true})
    cleanupNamespaces()
  })

  function endpointFiles(): string[] {
    const dir = path.join(n.stateDir, 'endpoints')
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []
  }

  it('gives the pod the seed routing table, writes the endpoint and lets pods reach each other and the router', () => {
    const p1 = createNamespace('vp')
    const p2 = createNamespace('vp')
    const a1 = n.run(['ipam', 'alloc', '--owner', 'c1:eth0'])
    assert.equal(a1.json?.status, 'ok', a1.stdout + a1.stderr)
    const ip1: string = a1.json!.result.allocations[0].ip
    const r1 = n.run(['veth', 'create', '--container-id', 'c1', '--netns', p1.path, '--ip', ip1, '--pod-name', 'web', '--pod-namespace', 'default'])
    assert.equal(r1.json?.status, 'ok', r1.stdout + r1.stderr)
    const v = r1.json!.result
    assert.equal(v.hostIfname, hostIfnameFor('c1', 'eth0'))
    assert.equal(v.podIfname, 'eth0')
    // Pod side: /32, and exactly `default via R dev eth0 mtu M` + `R dev eth0 scope link`.
    assert.match(inNs(p1.name, ['ip', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet ${ip1.replaceAll('.', '\\.')}/32 scope global eth0`))
    const routes = inNs(p1.name, ['ip', 'route']).trim().split('\n').map((l) => l.trim())
    assert.deepEqual(routes, ['default via 10.63.1.1 dev eth0 mtu 1450', '10.63.1.1 dev eth0 scope link'])
    // MACs and ifindexes the result reports are the kernel's.
    const podLink = JSON.parse(inNs(p1.name, ['ip', '-j', 'link', 'show', 'dev', 'eth0']))[0]
    const hostLink = JSON.parse(inNs(n.node, ['ip', '-j', 'link', 'show', 'dev', v.hostIfname]))[0]
    assert.equal(podLink.address, v.podMac)
    assert.equal(podLink.ifindex, v.podIfindex)
    assert.equal(hostLink.address, v.hostMac)
    assert.equal(hostLink.ifindex, v.hostIfindex)
    assert.equal(hostLink.mtu, 1450)
    assert.equal(inNs(n.node, ['sysctl', '-n', `net.ipv4.conf.${v.hostIfname}.rp_filter`]).trim(), '0')
    assert.match(inNs(n.node, ['ip', 'route', 'show', `${ip1}/32`]), new RegExp(`dev ${v.hostIfname} scope link`))
    // Endpoint record.
    const ep = n.run(['endpoint', 'show', '--container-id', 'c1'])
    assert.equal(ep.json?.status, 'ok')
    const rec = ep.json!.result
    assert.deepEqual([rec.id, rec.ips, rec.hostIfname, rec.hostMac, rec.podMac, rec.podName, rec.podNamespace, rec.netns],
      ['c1:eth0', [ip1], v.hostIfname, v.hostMac, v.podMac, 'web', 'default', p1.path])
    assert.equal(rec.endpointId, 1)

    const a2 = n.run(['ipam', 'alloc', '--owner', 'c2:eth0'])
    const ip2: string = a2.json!.result.allocations[0].ip
    assert.equal(n.run(['veth', 'create', '--container-id', 'c2', '--netns', p2.path, '--ip', ip2]).json?.status, 'ok')
    assert.equal(n.run(['endpoint', 'list']).json!.result.length, 2)
    assert.ok(ping(p1.name, ip2, 2), 'pod-to-pod')
    assert.ok(ping(p2.name, ip1, 2), 'pod-to-pod (reverse)')
    assert.ok(ping(p1.name, '10.63.1.1', 1), 'pod-to-router')
  })

  it('refuses bad input and collisions with nothing left behind', () => {
    const p = createNamespace('vp')
    const notNs = path.join(n.stateDir, 'not-a-netns')
    writeFileSync(notNs, '')
    inNs(p.name, ['ip', 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1p'])
    const cases: [string[], string][] = [
      [['--container-id', 'e1', '--netns', '/run/netns/pn-does-not-exist'], 'PN_NETNS_NOT_FOUND'],
      [['--container-id', 'e1', '--netns', notNs], 'PN_NETNS_INVALID'],
      [['--container-id', 'e1', '--netns', p.path, '--ifname', 'eth1'], 'PN_LINK_EXISTS'],
      [['--container-id', 'e1', '--netns', p.path, '--ifname', 'a/b'], 'PN_INVALID_IFNAME'],
      [['--container-id', 'e1', '--netns', p.path, '--ifname', 'x'.repeat(16)], 'PN_INVALID_IFNAME'],
      [['--container-id', 'e1', '--netns', p.path, '--ifname', '..'], 'PN_INVALID_IFNAME'],
      [['--container-id', '-bad', '--netns', p.path], 'PN_INVALID_CONTAINER_ID'],
      [['--container-id', 'a b', '--netns', p.path], 'PN_INVALID_CONTAINER_ID'],
    ]
    for (const [args, code] of cases) {
      const r = n.run(['veth', 'create', ...args, '--ip', '10.63.1.50'])
      assert.equal(r.json?.error?.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
      assert.deepEqual(lxcLinks(n.node), [], `no lxc leaked after ${code}`)
      assert.deepEqual(endpointFiles(), [], `no record after ${code}`)
    }
    // Host-side collision: the same container id + ifname again.
    assert.equal(n.run(['veth', 'create', '--container-id', 'e2', '--netns', p.path, '--ip', '10.63.1.51']).json?.status, 'ok')
    const p2 = createNamespace('vp')
    const dup = n.run(['veth', 'create', '--container-id', 'e2', '--netns', p2.path, '--ip', '10.63.1.52'])
    assert.equal(dup.json?.error?.code, 'PN_LINK_EXISTS')
    assert.match(dup.json!.error!.hint!, /pn veth delete --container-id e2/)
    assert.deepEqual(lxcLinks(n.node), [hostIfnameFor('e2', 'eth0')], 'the existing pair is untouched')
    assert.equal(inNs(p2.name, ['ip', '-o', 'link']).trim().split('\n').length, 1, 'nothing created in the second pod')
    assert.deepEqual(endpointFiles(), ['e2:eth0.json'])
  })

  it('removes the pair when configuring the pod fails after it was created', () => {
    const p = createNamespace('vp')
    // A route to the router IP already in the pod makes `route add 10.63.1.1/32 dev eth0` fail (File exists).
    inNs(p.name, ['ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd0p'])
    inNs(p.name, ['ip', 'link', 'set', 'd0', 'up'])
    inNs(p.name, ['ip', 'link', 'set', 'd0p', 'up'])
    inNs(p.name, ['ip', 'route', 'add', '10.63.1.1/32', 'dev', 'd0'])
    const r = n.run(['veth', 'create', '--container-id', 'f1', '--netns', p.path, '--ip', '10.63.1.60'])
    assert.equal(r.json?.error?.code, 'PN_COMMAND_FAILED', r.stdout)
    // The failing op, found from the kernel state after the batch: the route, not the address before it.
    assert.match(r.json?.error?.message ?? '', /add route 10\.63\.1\.1\/32 dev eth0 in \S+: File exists$/, r.stdout)
    assert.equal((r.json?.error as {details?: {index?: number}} | undefined)?.details?.index, 2, r.stdout)
    assert.deepEqual(lxcLinks(n.node), [])
    assert.doesNotMatch(inNs(p.name, ['ip', 'link']), /eth0/)
    assert.deepEqual(endpointFiles(), [])
    assert.doesNotMatch(inNs(n.node, ['ip', 'route']), /10\.63\.1\.60/)
  })

  it('delete succeeds repeatedly and after the netns vanished', () => {
    const p = createNamespace('vp')
    assert.equal(n.run(['veth', 'create', '--container-id', 'd1', '--netns', p.path, '--ip', '10.63.1.70']).json?.status, 'ok')
    deleteNamespace(p.name) // the pod side goes with the netns, and with it the host side
    const r = n.run(['veth', 'delete', '--container-id', 'd1', '--netns', p.path])
    assert.equal(r.json?.status, 'ok', r.stdout)
    assert.equal(r.json!.result.endpointDeleted, true)
    assert.deepEqual(lxcLinks(n.node), [])
    const again = n.run(['veth', 'delete', '--container-id', 'd1', '--netns', p.path])
    assert.equal(again.json?.status, 'ok')
    assert.equal(again.json!.result.changed, false)
    const never = n.run(['veth', 'delete', '--container-id', 'never-seen'])
    assert.equal(never.json?.status, 'ok')
  })

  it('endpoint delete --purge removes record and veth; without --purge only the record', () => {
    const p = createNamespace('vp')
    assert.equal(n.run(['veth', 'create', '--container-id', 'g1', '--netns', p.path]).json?.status, 'ok')
    const keep = n.run(['endpoint', 'delete', '--container-id', 'g1'])
    assert.deepEqual([keep.json!.result.recordDeleted, keep.json!.result.linkDeleted], [true, false])
    assert.deepEqual(lxcLinks(n.node), [hostIfnameFor('g1', 'eth0')])
    assert.equal(n.run(['endpoint', 'show', '--container-id', 'g1']).json?.error?.code, 'PN_ENDPOINT_NOT_FOUND')
    const purge = n.run(['endpoint', 'delete', '--container-id', 'g1', '--purge'])
    assert.equal(purge.json!.result.linkDeleted, true)
    assert.deepEqual(lxcLinks(n.node), [])
  })
})
