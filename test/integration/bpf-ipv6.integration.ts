/**
 * IPv6 in the BPF datapath on a real kernel, in throwaway `pn-v6…` namespaces only:
 *
 *   [pod a]──lxc─┐                              ┌─lxc──[pod c]
 *   [pod b]──lxc─┤ node 1 ──eth0── switch ──eth0── node 2
 *
 * Both nodes are dual stack (`pn node init` with an IPv4 and an IPv6 pod CIDR, routing bpf: no
 * per-pod host routes), so every IPv6 packet to a pod is delivered by BPF, and the pods' neighbour
 * discovery for their router is answered by BPF (the kernel would not: the router address is on
 * pn_host, not on the lxc). Nodes know each other's IPv6 pod CIDR by a static route.
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
  cidr6: string
  router6: string
  uplinkIp6: string
  run: (args: string[]) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  id: string
  ip: string
  ip6: string
}

function metric(node: Node, point: string, reason: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {point: string; reason: string}; value: {packets: number}}[])
    .filter((e) => e.key.point === point && e.key.reason === reason)
    .reduce((n, e) => n + e.value.packets, 0)
}

function endpointIps(node: Node): string[] {
  return (ok(node.run(['bpf', 'map', 'dump', 'pn_endpoints']), 'dump').entries as {key: {ip: string}}[]).map((e) => e.key.ip)
}

function ipcachePrefixes(node: Node): string[] {
  return (ok(node.run(['bpf', 'map', 'dump', 'pn_ipcache']), 'dump').entries as {key: {prefix: string}}[]).map((e) => e.key.prefix)
}

describe('bpf datapath, IPv6 (root, netns, dual stack)', function () {
  this.timeout(180_000)
  const tmpDirs: string[] = []
  const children: ChildProcess[] = []
  let n1: Node
  let n2: Node
  let a: Pod
  let b: Pod
  let c: Pod

  function makeNode(sw: string, idx: number): Node {
    const ns = createNamespace(`v6n${idx}`).name
    const port = `s6${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    const uplinkIp6 = `fd00:172:31::${idx}`
    inNs(ns, ['ip', 'addr', 'add', `172.31.6.${idx}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'addr', 'add', `${uplinkIp6}/64`, 'dev', 'eth0', 'nodad'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-v6-'))
    tmpDirs.push(stateDir)
    const cidr6 = `fd00:16${idx}::/112`
    const node: Node = {ns, stateDir, cidr6, router6: `fd00:16${idx}::1`, uplinkIp6, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    const init = ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', `10.16${idx}.0.0/24`, '--pod-cidr', cidr6, '--routing', 'bpf']), `node init ${ns}`)
    assert.deepEqual(init.node?.routerIps ?? init.routerIps, [`10.16${idx}.0.1`, node.router6])
    return node
  }

  function makePod(node: Node, ip: string, ip6: string): Pod {
    const ns = createNamespace('v6p').name
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip, '--ip', ip6]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, id: ns, ip, ip6}
  }

  async function tcp(from: Pod, to: string, port: number): Promise<void> {
    const server = spawn('ip', ['netns', 'exec', (to === b.ip6 ? b : c).ns, 'iperf3', '-s', '-1', '-p', String(port)], {stdio: 'ignore'})
    children.push(server)
    let r = {status: 1, stdout: '', stderr: ''}
    for (let i = 0; i < 20 && r.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 150))
      r = tryInNs(from.ns, ['iperf3', '-6', '-c', to, '-p', String(port), '-t', '1', '-J'])
    }
    assert.equal(r.status, 0, `iperf3 over IPv6 to ${to}: ${r.stderr}`)
    const bps = JSON.parse(r.stdout).end.sum_received.bits_per_second as number
    assert.ok(bps > 1e8, `TCP throughput ${bps} b/s`)
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    const sw = createNamespace('v6sw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    n1 = makeNode(sw, 1)
    n2 = makeNode(sw, 2)
    inNs(n1.ns, ['ip', '-6', 'route', 'add', n2.cidr6, 'via', n2.uplinkIp6])
    inNs(n2.ns, ['ip', '-6', 'route', 'add', n1.cidr6, 'via', n1.uplinkIp6])
    a = makePod(n1, '10.161.0.10', 'fd00:161::10')
    b = makePod(n1, '10.161.0.11', 'fd00:161::11')
    c = makePod(n2, '10.162.0.10', 'fd00:162::10')
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) process.kill(ch.pid)
    for (const n of [n1, n2]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
    for (const n of [n1, n2]) if (n) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  it('node init gives pn_host a router address of each family; a pod gets one address and routes of each', () => {
    const addrs = JSON.parse(inNs(n1.ns, ['ip', '-j', 'addr', 'show', 'dev', 'pn_host'])) as {addr_info: {local: string; scope: string}[]}[]
    const global = addrs[0].addr_info.filter((x) => x.scope !== 'link' || !x.local.startsWith('fe80')).map((x) => x.local)
    assert.ok(global.includes('10.161.0.1') && global.includes('fd00:161::1'), `pn_host addresses: ${global}`)
    const podAddrs = JSON.parse(inNs(a.ns, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])) as {addr_info: {local: string; scope: string}[]}[]
    assert.deepEqual(podAddrs[0].addr_info.filter((x) => x.scope === 'global').map((x) => x.local).sort(), [a.ip, a.ip6].sort())
    const r6 = JSON.parse(inNs(a.ns, ['ip', '-6', '-j', 'route', 'show', 'dev', 'eth0'])) as {dst: string; gateway?: string}[]
    assert.ok(r6.some((r) => r.dst === 'fd00:161::1'), 'link route to the IPv6 router')
    assert.ok(r6.some((r) => r.dst === 'default' && r.gateway === 'fd00:161::1'), 'IPv6 default route via the router')
    assert.deepEqual(JSON.parse(inNs(n1.ns, ['ip', '-6', '-j', 'route', 'show', 'exact', a.ip6])), [], 'no per-pod IPv6 route in the node')
  })

  it('answers the pod\'s neighbour solicitation for its IPv6 router in BPF, with a valid ICMPv6 checksum', () => {
    const before = metric(n1, 'from-container', 'TRACE_NDP_REPLY')
    inNs(a.ns, ['ip', '-6', 'neigh', 'flush', 'dev', 'eth0'])
    assert.ok(ping(a.ns, n1.router6, 2), 'a → its IPv6 router')
    // The kernel verifies the ICMPv6 checksum and the NDP rules (hop limit 255, target option)
    // before it takes an advertisement: a REACHABLE entry with the lxc MAC proves both.
    const lxcMac = (ok(n1.run(['endpoint', 'show', '--container-id', a.id]), 'endpoint show').hostMac as string).toLowerCase()
    const neigh = JSON.parse(inNs(a.ns, ['ip', '-6', '-j', 'neigh', 'show', 'dev', 'eth0', 'to', n1.router6])) as {lladdr: string; state: string[]; router?: null}[]
    assert.equal(neigh.length, 1, JSON.stringify(neigh))
    assert.equal(neigh[0].lladdr, lxcMac)
    assert.ok(neigh[0].state.includes('REACHABLE') || neigh[0].state.includes('STALE') || neigh[0].state.includes('DELAY'), JSON.stringify(neigh[0]))
    assert.ok(metric(n1, 'from-container', 'TRACE_NDP_REPLY') - before >= 1)
    // The pod's own link-local address passed DAD: the responder never answers a DAD probe.
    const ll = (JSON.parse(inNs(a.ns, ['ip', '-6', '-j', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])) as {addr_info: {family?: string; local?: string; dadfailed?: boolean; tentative?: boolean}[]}[])[0]
      .addr_info.filter((x) => x.family === 'inet6')
    assert.equal(ll.length, 1, JSON.stringify(ll))
    assert.match(ll[0].local!, /^fe80:/)
    assert.ok(!ll[0].dadfailed && !ll[0].tentative, JSON.stringify(ll))
  })

  it('delivers pod-to-pod over IPv6 on one node by bpf_redirect_peer (ping -6 and TCP)', async () => {
    const before = metric(n1, 'from-container', 'TRACE_REDIRECT_PEER')
    assert.ok(ping(a.ns, b.ip6, 3), 'a → b over IPv6')
    assert.ok(ping(b.ns, a.ip6, 3), 'b → a over IPv6')
    assert.ok(ping(a.ns, b.ip, 1), 'a → b over IPv4 (dual stack)')
    await tcp(a, b.ip6, 5361)
    assert.ok(metric(n1, 'from-container', 'TRACE_REDIRECT_PEER') - before > 1000)
  })

  it('the node reaches its pods over IPv6 through from-host (NDP for the pod answered there)', () => {
    const ndp = metric(n1, 'from-host', 'TRACE_NDP_REPLY')
    const redirect = metric(n1, 'from-host', 'TRACE_REDIRECT')
    inNs(n1.ns, ['ip', '-6', 'neigh', 'flush', 'dev', 'pn_host'])
    assert.ok(ping(n1.ns, a.ip6, 2), 'node 1 → a over IPv6')
    assert.ok(metric(n1, 'from-host', 'TRACE_NDP_REPLY') - ndp >= 1)
    assert.ok(metric(n1, 'from-host', 'TRACE_REDIRECT') - redirect >= 2)
  })

  /** Packets from-container sent to the uplink by BPF host routing (either flavour). */
  const fibSent = (n: Node) => metric(n, 'from-container', 'TRACE_FIB_REDIRECT') + metric(n, 'from-container', 'TRACE_FIB_REDIRECT_NEIGH')

  it('pods on two nodes reach each other over IPv6 both ways: BPF host routing out, from-netdev in', async () => {
    const before2 = metric(n2, 'from-netdev', 'TRACE_REDIRECT_PEER')
    const before1 = metric(n1, 'from-netdev', 'TRACE_REDIRECT_PEER')
    const fib1 = fibSent(n1)
    const fib2 = fibSent(n2)
    const forwarded = () => Number(/Ip6OutForwDatagrams\s+(\d+)/.exec(inNs(n1.ns, ['nstat', '-asz', 'Ip6OutForwDatagrams']))?.[1] ?? 0)
    const fwd = forwarded()
    assert.ok(ping(a.ns, c.ip6, 3), 'node1/a → node2/c over IPv6')
    assert.ok(ping(c.ns, b.ip6, 3), 'node2/c → node1/b over IPv6')
    assert.ok(metric(n2, 'from-netdev', 'TRACE_REDIRECT_PEER') - before2 >= 3)
    assert.ok(metric(n1, 'from-netdev', 'TRACE_REDIRECT_PEER') - before1 >= 3)
    // Out of each node by bpf_fib_lookup + bpf_redirect(_neigh), not by the stack: node 1's
    // IPv6 forwarding counter does not move for a → c.
    assert.ok(fibSent(n1) - fib1 >= 3, 'node 1 sent a → c by BPF host routing')
    assert.ok(fibSent(n2) - fib2 >= 3, 'node 2 sent c → b by BPF host routing')
    assert.ok(forwarded() - fwd < 3, `node 1's stack forwarded ${forwarded() - fwd} IPv6 packets`)
    await tcp(a, c.ip6, 5362)
  })

  it('drops a spoofed IPv6 source from a pod and counts it as DROP_INVALID_SOURCE6', () => {
    const before = metric(n1, 'from-container', 'DROP_INVALID_SOURCE6')
    const v4before = metric(n1, 'from-container', 'DROP_INVALID_SOURCE')
    inNs(a.ns, ['ip', 'addr', 'add', 'fd00:161::99/128', 'dev', 'eth0', 'nodad'])
    assert.equal(tryInNs(a.ns, ['ping', '-6', '-c', '3', '-W', '1', '-i', '0.2', '-I', 'fd00:161::99', b.ip6]).status === 0, false)
    assert.ok(metric(n1, 'from-container', 'DROP_INVALID_SOURCE6') - before >= 3)
    assert.equal(metric(n1, 'from-container', 'DROP_INVALID_SOURCE'), v4before, 'IPv6 spoofing has its own reason')
    // A source from another node's pod CIDR is no better.
    inNs(a.ns, ['ip', 'addr', 'add', 'fd00:162::99/128', 'dev', 'eth0', 'nodad'])
    assert.equal(tryInNs(a.ns, ['ping', '-6', '-c', '2', '-W', '1', '-i', '0.2', '-I', 'fd00:162::99', c.ip6]).status === 0, false)
    assert.ok(metric(n1, 'from-container', 'DROP_INVALID_SOURCE6') - before >= 5)
    assert.ok(ping(a.ns, b.ip6, 1), 'the real source still works')
    inNs(a.ns, ['ip', 'addr', 'del', 'fd00:161::99/128', 'dev', 'eth0'])
    inNs(a.ns, ['ip', 'addr', 'del', 'fd00:162::99/128', 'dev', 'eth0'])
  })

  it('writes IPv6 map entries on load and removes every one on unload (pn_endpoints, pn_ipcache, pn_lxc)', () => {
    assert.deepEqual(endpointIps(n1).sort(), ['10.161.0.1', 'fd00:161::1', a.ip, a.ip6, b.ip, b.ip6].sort())
    assert.ok(ipcachePrefixes(n1).includes(`${b.ip6}/128`))
    const lxc = (ok(n1.run(['bpf', 'map', 'dump', 'pn_lxc']), 'dump').entries as {value: {ip4?: string; ip6?: string}}[]).map((e) => e.value)
    assert.ok(lxc.some((v) => v.ip4 === b.ip && v.ip6 === b.ip6))
    ok(n1.run(['bpf', 'unload', '--container-id', b.id]), 'unload b')
    assert.ok(!endpointIps(n1).includes(b.ip6) && !endpointIps(n1).includes(b.ip), 'b\'s entries left in pn_endpoints')
    assert.ok(!ipcachePrefixes(n1).includes(`${b.ip6}/128`), 'b\'s IPv6 prefix left in pn_ipcache')
    assert.equal(ping(a.ns, b.ip6, 2), false, 'a → b over IPv6 must fail without BPF')
    ok(n1.run(['bpf', 'load', '--container-id', b.id]), 'load b')
    assert.ok(ping(a.ns, b.ip6, 2), 'a → b over IPv6 works again')
  })
})
