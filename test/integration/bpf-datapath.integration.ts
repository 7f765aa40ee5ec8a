/**
 * The BPF datapath on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc─┐                              ┌─lxc──[pod c]
 *   [pod b]──lxc─┤ node 1 ──eth0── switch ──eth0── node 2
 *
 * Both nodes run `pn node init` (routing bpf: no per-pod host routes), pods are made with
 * `pn veth create` and attached with `pn bpf load --container-id`. Nodes know each other's pod
 * CIDR by a static route via the other's uplink IP.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, ping, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const BPFFS = '/run/pn/bpffs'

interface Node {
  ns: string
  stateDir: string
  cidr: string
  uplinkIp: string
  run: (args: string[]) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  id: string
  ip: string
}

function metric(node: Node, point: string, reason: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {point: string; reason: string}; value: {packets: number}}[])
    .filter((e) => e.key.point === point && e.key.reason === reason)
    .reduce((n, e) => n + e.value.packets, 0)
}

describe('bpf datapath (root, netns)', function () {
  this.timeout(120_000)
  const tmpDirs: string[] = []
  const children: ChildProcess[] = []
  let n1: Node
  let n2: Node
  let a: Pod
  let b: Pod
  let c: Pod

  function makeNode(sw: string, idx: number): Node {
    const ns = createNamespace(`bn${idx}`).name
    const port = `sw${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    const ip = `172.31.0.${idx}`
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-bpf-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${150 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, uplinkIp: ip, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'bpf']), `node init ${ns}`)
    return node
  }

  function makePod(node: Node, ip: string): Pod {
    const ns = createNamespace('bp').name
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, id: ns, ip}
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    const sw = createNamespace('bsw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    n1 = makeNode(sw, 1)
    n2 = makeNode(sw, 2)
    inNs(n1.ns, ['ip', 'route', 'add', n2.cidr, 'via', n2.uplinkIp])
    inNs(n2.ns, ['ip', 'route', 'add', n1.cidr, 'via', n1.uplinkIp])
    a = makePod(n1, '10.151.0.10')
    b = makePod(n1, '10.151.0.11')
    c = makePod(n2, '10.152.0.10')
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) process.kill(ch.pid)
    for (const n of [n1, n2]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
    for (const n of [n1, n2]) if (n) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  it('tc filter show lists pn programs on lxc ingress, pn_host ingress/egress and the uplink', () => {
    const lxc = ok(n1.run(['endpoint', 'show', '--container-id', a.id]), 'endpoint show').hostIfname as string
    const expect: [string, string, string][] = [
      [lxc, 'ingress', 'from_container'],
      ['pn_host', 'ingress', 'to_host'],
      ['pn_host', 'egress', 'from_host'],
      ['eth0', 'ingress', 'from_netdev'],
      ['eth0', 'egress', 'to_netdev'],
    ]
    for (const [dev, dir, prog] of expect) {
      const out = inNs(n1.ns, ['tc', 'filter', 'show', 'dev', dev, dir])
      assert.match(out, new RegExp(`handle 0x1 ${prog}:\\[\\*fsobj\\] direct-action .* name ${prog} tag [0-9a-f]{16}`), `${dev} ${dir}: ${out}`)
    }
    const status = ok(n1.run(['bpf', 'status']), 'bpf status')
    assert.equal(status.loaded, true)
    assert.equal(status.attachments.length, 6) // 2 pods + 4 host hooks
    assert.ok(status.attachments.every((x: {current: boolean; tag?: string}) => x.current && x.tag))
  })

  it('delivers pod-to-pod on one node in BPF with no pod host routes (ping and TCP)', async () => {
    const routes = JSON.parse(inNs(n1.ns, ['ip', '-j', 'route', 'show'])) as {dst: string}[]
    assert.deepEqual(routes.filter((r) => r.dst === a.ip || r.dst === b.ip || r.dst.endsWith('/32')), [], 'no per-pod routes in the node')
    const before = metric(n1, 'from-container', 'TRACE_REDIRECT_PEER')
    assert.ok(ping(a.ns, b.ip, 3), 'a → b ping')
    assert.ok(ping(b.ns, a.ip, 3), 'b → a ping')
    // TCP: one iperf3 run of 1 s.
    const server = spawn('ip', ['netns', 'exec', b.ns, 'iperf3', '-s', '-1', '-p', '5301'], {stdio: 'ignore'})
    children.push(server)
    let r = {status: 1, stdout: '', stderr: ''}
    for (let i = 0; i < 20 && r.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 150))
      r = tryInNs(a.ns, ['iperf3', '-c', b.ip, '-p', '5301', '-t', '1', '-J'])
    }
    assert.equal(r.status, 0, `iperf3: ${r.stderr}`)
    const bps = JSON.parse(r.stdout).end.sum_received.bits_per_second as number
    assert.ok(bps > 1e8, `TCP throughput ${bps} b/s`)
    // The node's IP stack forwarded nothing: delivery was bpf_redirect_peer.
    assert.ok(metric(n1, 'from-container', 'TRACE_REDIRECT_PEER') - before > 1000)
  })

  it('detaching from-container breaks pod delivery; attaching again restores it', () => {
    ok(n1.run(['bpf', 'unload', '--container-id', b.id]), 'unload b')
    assert.equal(ping(a.ns, b.ip, 2), false, 'a → b must fail without BPF (no host route, no ARP responder)')
    const dump = ok(n1.run(['bpf', 'map', 'dump', 'pn_endpoints']), 'dump').entries as {key: {ip: string}}[]
    assert.equal(dump.some((e) => e.key.ip === b.ip), false, 'b is gone from pn_endpoints')
    ok(n1.run(['bpf', 'load', '--container-id', b.id]), 'load b')
    assert.ok(ping(a.ns, b.ip, 2), 'a → b works again')
  })

  it('drops a spoofed source IP from a pod and counts it as DROP_INVALID_SOURCE', () => {
    const before = metric(n1, 'from-container', 'DROP_INVALID_SOURCE')
    inNs(a.ns, ['ip', 'addr', 'add', '10.151.0.99/32', 'dev', 'eth0'])
    assert.equal(tryInNs(a.ns, ['ping', '-c', '3', '-W', '1', '-i', '0.2', '-I', '10.151.0.99', b.ip]).status === 0, false)
    assert.ok(metric(n1, 'from-container', 'DROP_INVALID_SOURCE') - before >= 3)
    assert.ok(ping(a.ns, b.ip, 1), 'the real source still works')
  })

  it('the node reaches its pods through from-host', () => {
    assert.ok(ping(n1.ns, a.ip, 2))
    assert.ok(metric(n1, 'from-host', 'TRACE_REDIRECT') >= 2)
  })

  it('pods on two nodes reach each other both ways via from-container → uplink (BPF host routing) → from-netdev', () => {
    const before2 = metric(n2, 'from-netdev', 'TRACE_REDIRECT_PEER')
    const before1 = metric(n1, 'from-netdev', 'TRACE_REDIRECT_PEER')
    assert.ok(ping(a.ns, c.ip, 3), 'node1/a → node2/c')
    assert.ok(ping(c.ns, b.ip, 3), 'node2/c → node1/b')
    assert.ok(metric(n2, 'from-netdev', 'TRACE_REDIRECT_PEER') - before2 >= 3)
    assert.ok(metric(n1, 'from-netdev', 'TRACE_REDIRECT_PEER') - before1 >= 3)
    assert.ok(metric(n1, 'to-netdev', 'TRACE_TO_STACK') >= 3)
    const hostRouted = (n: Node) => metric(n, 'from-container', 'TRACE_FIB_REDIRECT') + metric(n, 'from-container', 'TRACE_FIB_REDIRECT_NEIGH')
    assert.ok(hostRouted(n1) >= 3 && hostRouted(n2) >= 3, 'both directions left by BPF host routing')
  })

  it('map list and dump decode keys and values; each node has its own maps', () => {
    const maps = ok(n1.run(['bpf', 'map', 'list']), 'map list') as {name: string; entries: number}[]
    assert.deepEqual(maps.slice(0, 4).map((m) => m.name), ['pn_endpoints', 'pn_lxc', 'pn_ipcache', 'pn_metrics'])
    const eps = ok(n1.run(['bpf', 'map', 'dump', 'pn_endpoints']), 'dump').entries as {key: {ip: string}; value: {flags: number; podMac: string}}[]
    assert.deepEqual(eps.map((e) => e.key.ip).sort(), ['10.151.0.1', a.ip, b.ip].sort())
    assert.match(eps.find((e) => e.key.ip === a.ip)!.value.podMac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
    const eps2 = ok(n2.run(['bpf', 'map', 'dump', 'pn_endpoints']), 'dump').entries as {key: {ip: string}}[]
    assert.deepEqual(eps2.map((e) => e.key.ip).sort(), ['10.152.0.1', c.ip].sort())
  })

  it('unload reverses load: filters and pn-made qdiscs go, pins stay while pods are attached', () => {
    const r = ok(n2.run(['bpf', 'unload', '--host']), 'unload host')
    assert.equal(r.detached.length, 4)
    assert.equal(r.unpinned, false)
    assert.doesNotMatch(inNs(n2.ns, ['tc', 'qdisc', 'show', 'dev', 'eth0']), /clsact/)
    ok(n2.run(['bpf', 'unload', '--container-id', c.id]), 'unload c')
    const r2 = ok(n2.run(['bpf', 'unload', '--host']), 'unload host again')
    assert.equal(r2.unpinned, true)
    const status = ok(n2.run(['bpf', 'status']), 'status')
    assert.equal(status.loaded, false)
    assert.equal(status.attachments.length, 0)
  })
})
