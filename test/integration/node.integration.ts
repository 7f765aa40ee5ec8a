/**
 * pn node init/show/reset for real, inside throwaway `pn-` namespaces: a node netns with an
 * uplink veth whose other end sits in a "network" netns. Nothing touches the root netns.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, rmSync} from 'node:fs'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

function links(ns: string): {ifname: string; address: string; ifindex: number; mtu: number; flags: string[]}[] {
  return JSON.parse(inNs(ns, ['ip', '-j', 'link', 'show']))
}

function sysctl(ns: string, key: string): string {
  return inNs(ns, ['sysctl', '-n', key]).trim()
}

describe('pn node (root, netns)', function () {
  this.timeout(120_000)
  let n: ReturnType<typeof makeNode>
  const initArgs = (cidr = '10.61.1.0/24') => ['node', 'init', '--name', 'n1', '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'host-routes']

  before(() => ensureBpffsMounted())
  beforeEach(() => {
    n = makeNode('nd')
  })
  afterEach(() => {
    spawnSync('rm', ['-rf', n.bpffsRoot])
    rmSync(n.stateDir, {recursive: true, force: true})
    cleanupNamespaces()
  })

  it('creates pn_host/pn_net with random local MACs, the router /32, the pod CIDR route and the sysctls', () => {
    const r = n.run([...initArgs(), '--bpffs-root', n.bpffsRoot])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    const res = r.json!.result
    assert.equal(res.changed, true)
    assert.deepEqual(res.node.podCidrs, ['10.61.1.0/24'])
    assert.deepEqual(res.node.routerIps, ['10.61.1.1'])
    assert.equal(res.node.mtu, 1450, 'MTU comes from the uplink')
    const ls = links(n.node)
    const host = ls.find((l) => l.ifname === 'pn_host')!
    const net = ls.find((l) => l.ifname === 'pn_net')!
    assert.ok(host && net)
    for (const l of [host, net]) {
      assert.equal(parseInt(l.address.slice(0, 2), 16) & 0x03, 0x02, `${l.address} is locally administered unicast`)
      assert.ok(l.flags.includes('UP'))
      assert.equal(l.mtu, 1450)
    }
    assert.notEqual(host.address, net.address)
    assert.match(inNs(n.node, ['ip', 'addr', 'show', 'dev', 'pn_host']), /inet 10\.61\.1\.1\/32 scope link pn_host/)
    assert.match(inNs(n.node, ['ip', 'route', 'show', '10.61.1.0/24']), /^10\.61\.1\.0\/24 via 10\.61\.1\.1 dev pn_host src 10\.61\.1\.1/)
    assert.equal(sysctl(n.node, 'net.ipv4.ip_forward'), '1')
    assert.equal(sysctl(n.node, 'net.ipv4.conf.all.rp_filter'), '0')
    for (const dev of ['pn_host', 'pn_net']) {
      assert.equal(sysctl(n.node, `net.ipv4.conf.${dev}.forwarding`), '1')
      assert.equal(sysctl(n.node, `net.ipv4.conf.${dev}.rp_filter`), '0')
      assert.equal(sysctl(n.node, `net.ipv4.conf.${dev}.accept_local`), '1')
      assert.equal(sysctl(n.node, `net.ipv4.conf.${dev}.send_redirects`), '0')
    }
    assert.ok(existsSync(path.join(n.stateDir, 'node.json')))
    assert.equal(execFileSync('stat', ['-f', '-c', '%T', n.bpffsRoot], {encoding: 'utf8'}).trim(), 'bpf_fs')
    const ipam = n.run(['ipam', 'list'])
    assert.ok(JSON.stringify(ipam.json?.result).includes('"owner":"router"'), 'router IP reserved in IPAM: ' + ipam.stdout)
  })

  it('is idempotent: a re-run changes nothing and keeps MACs and ifindexes', () => {
    assert.equal(n.run([...initArgs(), '--bpffs-root', n.bpffsRoot]).json?.status, 'ok')
    const before = links(n.node)
    const again = n.run([...initArgs(), '--bpffs-root', n.bpffsRoot])
    assert.equal(again.json?.status, 'ok', again.stdout)
    assert.equal(again.json!.result.changed, false)
    assert.deepEqual(again.json!.result.actions, [])
    const noFlags = n.run(['node', 'init', '--name', 'n1', '--device', 'eth0'])
    assert.equal(noFlags.json!.result.changed, false, 'a re-run without --pod-cidr reuses node.json')
    assert.deepEqual(links(n.node).map((l) => [l.ifname, l.ifindex, l.address]), before.map((l) => [l.ifname, l.ifindex, l.address]))
  })

  it('refuses a different pod CIDR with PN_NODE_CONFLICT unless --force', () => {
    assert.equal(n.run([...initArgs(), '--bpffs-root', n.bpffsRoot]).json?.status, 'ok')
    const r = n.run([...initArgs('10.61.2.0/24'), '--bpffs-root', n.bpffsRoot])
    assert.equal(r.status, 4)
    assert.equal(r.json?.error?.code, 'PN_NODE_CONFLICT')
    assert.match(r.json!.error!.hint!, /pn node reset/)
    const forced = n.run([...initArgs('10.61.2.0/24'), '--bpffs-root', n.bpffsRoot, '--force'])
    assert.equal(forced.json?.status, 'ok', forced.stdout)
    const routes = inNs(n.node, ['ip', 'route'])
    assert.match(routes, /10\.61\.2\.0\/24 via 10\.61\.2\.1 dev pn_host/)
    assert.doesNotMatch(routes, /10\.61\.1\.0/)
    assert.doesNotMatch(inNs(n.node, ['ip', 'addr', 'show', 'dev', 'pn_host']), /10\.61\.1\.1/)
  })

  it('fails on a missing uplink without leaving anything behind', () => {
    const r = n.run(['node', 'init', '--name', 'n1', '--device', 'nope0', '--pod-cidr', '10.61.1.0/24', '--routing', 'host-routes', '--bpffs-root', n.bpffsRoot])
    assert.equal(r.json?.error?.code, 'PN_LINK_NOT_FOUND')
    assert.ok(!links(n.node).some((l) => l.ifname.startsWith('pn_')))
    assert.ok(!existsSync(path.join(n.stateDir, 'node.json')))
  })

  it('takes the pod CIDR from the cluster pool and gives it back on reset', () => {
    const pool = path.join(n.stateDir, 'pool.json')
    const init = pn(['pool', 'init', '--cidr', '10.62.0.0/16', '--mask-size', '24', '--pool', pool, '--json'])
    assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
    const r = n.run(['node', 'init', '--name', 'n1', '--device', 'eth0', '--pool', pool, '--routing', 'host-routes', '--bpffs-root', n.bpffsRoot])
    assert.equal(r.json?.status, 'ok', r.stdout)
    const cidr = r.json!.result.node.podCidrs[0]
    assert.match(cidr, /^10\.62\.\d+\.0\/24$/)
    assert.equal(r.json!.result.node.pool, pool)
    const reset = n.run(['node', 'reset'])
    assert.ok(reset.json!.result.removed.some((x: string) => x.startsWith('pod cidr')), reset.stdout)
    const shown = pn(['pool', 'show', '--pool', pool, '--json'])
    assert.equal(shown.json!.result.clusterCidrs[0].used, 0, shown.stdout)
    assert.ok(!JSON.stringify(shown.json!.result.nodes).includes(cidr), shown.stdout)
  })

  it('node show reports drift', () => {
    assert.equal(n.run([...initArgs(), '--bpffs-root', n.bpffsRoot]).json?.status, 'ok')
    let s = n.run(['node', 'show'])
    assert.equal(s.json!.result.ok, true, s.stdout)
    inNs(n.node, ['ip', 'route', 'del', '10.61.1.0/24'])
    inNs(n.node, ['sysctl', '-q', '-w', 'net.ipv4.conf.pn_host.rp_filter=1'])
    s = n.run(['node', 'show'])
    assert.equal(s.json!.result.ok, false)
    const bad = s.json!.result.checks.filter((c: {ok: boolean}) => !c.ok).map((c: {check: string}) => c.check)
    assert.deepEqual(bad.sort(), ['route 10.61.1.0/24', 'sysctl net.ipv4.conf.pn_host.rp_filter'])
    const repaired = n.run([...initArgs(), '--bpffs-root', n.bpffsRoot])
    assert.equal(repaired.json!.result.changed, true)
    assert.equal(n.run(['node', 'show']).json!.result.ok, true)
  })

  it('reset removes endpoints, devices, routes, pins and state, and nothing else; twice is fine', () => {
    assert.equal(n.run([...initArgs(), '--bpffs-root', n.bpffsRoot]).json?.status, 'ok')
    const pod = createNamespace('ndp')
    const v = n.run(['veth', 'create', '--container-id', 'r1', '--netns', `/run/netns/${pod.name}`, '--ip', '10.61.1.9'])
    assert.equal(v.json?.status, 'ok', v.stdout)
    // A real pinned map stands for the programs and maps the BPF datapath pins there.
    execFileSync('bpftool', ['map', 'create', path.join(n.bpffsRoot, 'pn_test'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '4', 'name', 'pn_test'])
    const reset = n.run(['node', 'reset'])
    assert.equal(reset.json?.status, 'ok', reset.stdout)
    assert.equal(reset.json!.result.changed, true)
    assert.deepEqual(links(n.node).map((l) => l.ifname).sort(), ['eth0', 'lo'])
    assert.equal(inNs(n.node, ['ip', 'route']).trim(), '')
    assert.deepEqual(links(pod.name).map((l) => l.ifname), ['lo'])
    assert.ok(!existsSync(n.bpffsRoot))
    for (const f of ['node.json', 'ipam.json', 'ipam', 'endpoints']) assert.ok(!existsSync(path.join(n.stateDir, f)), f)
    assert.ok(tryInNs(n.net, ['ip', 'link', 'show', 'up0']).status === 0, 'the network side is untouched')
    const again = n.run(['node', 'reset'])
    assert.equal(again.json?.status, 'ok')
    assert.equal(again.json!.result.changed, false)
  })
})
