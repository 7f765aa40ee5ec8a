/**
 * BPF host routing across nodes (bpf/include/fib.h) on a real kernel, in throwaway `pn-hr…`
 * namespaces only:
 *
 *   [pod a]──lxc─┐                                     ┌─lxc──[pod c]
 *   [pod b]──lxc─┤ node n1 (bpf) ──eth0── switch ──eth0── node n2 (bpf)
 *   [pod d]──lxc── node h1 (host-routes) ──eth0─┘└─eth0── node h2 (host-routes) ──lxc──[pod e]
 *
 * Every node has an nftables counter on its FORWARD hook (`table ip pnhr`). The proof that the
 * BPF path skips the node's stack: pod traffic between n1 and n2 is delivered while n1's and
 * n2's FORWARD counters stay at zero and pn_metrics counts TRACE_FIB_REDIRECT*, whereas the
 * same traffic between h1 and h2 (the host-routes baseline) goes through FORWARD. The
 * fallbacks (a packet larger than the uplink MTU, a route through another device, no route)
 * reach the stack, counted by reason, and are never dropped.
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
  routing: 'bpf' | 'host-routes'
  run: (args: string[]) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  ip: string
}

/** Packets of one from-container outcome on a node, summed over CPUs and directions. */
function metric(node: Node, reason: string, point = 'from-container'): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {point: string; reason: string}; value: {packets: number}}[])
    .filter((e) => e.key.point === point && e.key.reason === reason)
    .reduce((n, e) => n + e.value.packets, 0)
}

const hostRouted = (n: Node) => metric(n, 'TRACE_FIB_REDIRECT') + metric(n, 'TRACE_FIB_REDIRECT_NEIGH')

/** Every drop any program of the node counted (reason ≥ 130 is a DROP_*). */
function drops(node: Node): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {code: number}; value: {packets: number}}[]).filter((e) => e.key.code < 0).reduce((n, e) => n + e.value.packets, 0)
}

/** Packets the node's netfilter FORWARD hook saw (the counter rule of `table ip pnhr`). */
function forwarded(node: Node): number {
  const m = /counter packets (\d+)/.exec(inNs(node.ns, ['nft', 'list', 'chain', 'ip', 'pnhr', 'counted']))
  assert.ok(m, 'the FORWARD counter rule exists')
  return Number(m[1])
}

describe('BPF host routing across nodes (root, netns)', function () {
  this.timeout(180_000)
  const tmpDirs: string[] = []
  const children: ChildProcess[] = []
  const made: Node[] = []
  let sw: string
  let n1: Node
  let n2: Node
  let h1: Node
  let h2: Node
  let a: Pod
  let b: Pod
  let c: Pod
  let d: Pod
  let e: Pod

  function makeNode(idx: number, routing: Node['routing']): Node {
    const ns = createNamespace(`hrn${idx}`).name
    const port = `hrsw${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    const ip = `172.30.13.${idx}`
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-hr-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${170 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, uplinkIp: ip, routing, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    made.push(node)
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--routing', routing]), `node init ${ns}`)
    // A counter on the FORWARD hook: every packet the node's stack routes through it.
    inNs(ns, ['nft', 'add', 'table', 'ip', 'pnhr'])
    inNs(ns, ['nft', 'add', 'chain', 'ip', 'pnhr', 'counted', '{ type filter hook forward priority 0; policy accept; }'])
    inNs(ns, ['nft', 'add', 'rule', 'ip', 'pnhr', 'counted', 'counter'])
    return node
  }

  function makePod(node: Node, host: number): Pod {
    const ns = createNamespace('hrp').name
    const ip = node.cidr.replace(/\.0\/24$/, `.${host}`)
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    if (node.routing === 'bpf') ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, ip}
  }

  function peer(x: Node, y: Node): void {
    inNs(x.ns, ['ip', 'route', 'add', y.cidr, 'via', y.uplinkIp])
    inNs(y.ns, ['ip', 'route', 'add', x.cidr, 'via', x.uplinkIp])
  }

  /** One iperf3 transfer of a fixed size (no rate asserted): TCP works end to end. */
  async function tcp(from: Pod, to: Pod, port: number): Promise<number> {
    const server = spawn('ip', ['netns', 'exec', to.ns, 'iperf3', '-s', '-1', '-p', String(port)], {stdio: 'ignore'})
    children.push(server)
    let r = {status: 1, stdout: '', stderr: ''}
    for (let i = 0; i < 30 && r.status !== 0; i++) {
      await new Promise((res) => setTimeout(res, 150))
      r = tryInNs(from.ns, ['iperf3', '-c', to.ip, '-p', String(port), '-n', '4M', '-J'])
    }
    assert.equal(r.status, 0, `iperf3 ${from.ip} → ${to.ip}: ${r.stderr}`)
    // The sender's total: iperf3's sum_received is the server's count when the client stops
    // reading results, which under load can be a snapshot before the last segments were read.
    // A clean exit after all 4 MiB were sent over one TCP connection is the end-to-end proof.
    const end = JSON.parse(r.stdout).end
    assert.ok(end.sum_received.bytes > 0, 'the server received data')
    return end.sum_sent.bytes as number
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    sw = createNamespace('hrsw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    n1 = makeNode(1, 'bpf')
    n2 = makeNode(2, 'bpf')
    h1 = makeNode(3, 'host-routes')
    h2 = makeNode(4, 'host-routes')
    peer(n1, n2)
    peer(h1, h2)
    a = makePod(n1, 10)
    b = makePod(n1, 11)
    c = makePod(n2, 10)
    d = makePod(h1, 10)
    e = makePod(h2, 10)
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) process.kill(ch.pid)
    for (const n of made) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const dir of tmpDirs) rmSync(dir, {recursive: true, force: true})
    for (const n of made) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  it('pn_node_config names the uplink: its ifindex and MTU', () => {
    const cfg = ok(n1.run(['bpf', 'map', 'dump', 'pn_node_config']), 'dump pn_node_config').entries as {value: {uplinkIfindex: number; uplinkMtu: number}}[]
    const eth0 = JSON.parse(inNs(n1.ns, ['ip', '-j', 'link', 'show', 'eth0']))[0] as {ifindex: number; mtu: number}
    assert.deepEqual(cfg.map((x) => [x.value.uplinkIfindex, x.value.uplinkMtu]), [[eth0.ifindex, eth0.mtu]])
  })

  it('cross-node pod traffic leaves by BPF host routing: delivered both ways, FORWARD never sees it', async () => {
    const fwd = [forwarded(n1), forwarded(n2)]
    const routed = [hostRouted(n1), hostRouted(n2)]
    assert.ok(ping(a.ns, c.ip, 5), 'n1/a → n2/c')
    assert.ok(ping(c.ns, b.ip, 5), 'n2/c → n1/b')
    const bytes = await tcp(a, c, 5311)
    assert.equal(bytes, 4 * 1024 * 1024)
    assert.deepEqual([forwarded(n1), forwarded(n2)], fwd, 'the nodes\' FORWARD hooks saw none of it')
    assert.ok(hostRouted(n1) - routed[0] >= 10, 'n1 redirected to the uplink')
    assert.ok(hostRouted(n2) - routed[1] >= 10, 'n2 redirected to the uplink')
  })

  it('the host-routes baseline forwards the same traffic through the stack (FORWARD counts it)', async () => {
    const fwd = [forwarded(h1), forwarded(h2)]
    assert.ok(ping(d.ns, e.ip, 5), 'h1/d → h2/e')
    await tcp(d, e, 5312)
    assert.ok(forwarded(h1) - fwd[0] >= 10, 'h1 forwarded through its stack')
    assert.ok(forwarded(h2) - fwd[1] >= 10, 'h2 forwarded through its stack')
  })

  it('an unresolved neighbour: bpf_redirect_neigh resolves the next hop and delivers', () => {
    inNs(n1.ns, ['ip', 'neigh', 'flush', 'dev', 'eth0'])
    const before = metric(n1, 'TRACE_FIB_REDIRECT_NEIGH')
    const fwd = forwarded(n1)
    assert.ok(ping(a.ns, c.ip, 1), 'first packet after the flush is delivered')
    assert.ok(metric(n1, 'TRACE_FIB_REDIRECT_NEIGH') - before >= 1)
    assert.equal(forwarded(n1), fwd)
    // The kernel resolved it: the neighbour is known now (and later packets take bpf_redirect).
    assert.match(inNs(n1.ns, ['ip', 'neigh', 'show', n2.uplinkIp]), /lladdr/)
  })

  it('larger than the uplink MTU: to the stack as TRACE_FIB_FRAG_NEEDED, fragmented and delivered', () => {
    for (const n of [n1, n2]) inNs(n.ns, ['ip', 'link', 'set', 'eth0', 'mtu', '1400'])
    try {
      const before = [metric(n1, 'TRACE_FIB_FRAG_NEEDED'), metric(n2, 'TRACE_FIB_FRAG_NEEDED')]
      const dropped = [drops(n1), drops(n2)]
      // 1472 B of ICMP payload = a 1500 B packet (the pods' MTU), DF clear so the stack may fragment.
      const r = tryInNs(a.ns, ['ping', '-c', '3', '-W', '2', '-i', '0.2', '-M', 'dont', '-s', '1472', c.ip])
      assert.equal(r.status, 0, `big ping: ${r.stdout} ${r.stderr}`)
      assert.ok(metric(n1, 'TRACE_FIB_FRAG_NEEDED') - before[0] >= 3, 'n1: requests handed to the stack')
      assert.ok(metric(n2, 'TRACE_FIB_FRAG_NEEDED') - before[1] >= 3, 'n2: replies handed to the stack')
      assert.deepEqual([drops(n1), drops(n2)], dropped, 'nothing dropped')
      // Small packets still take the BPF path.
      const routed = hostRouted(n1)
      assert.ok(ping(a.ns, c.ip, 2))
      assert.ok(hostRouted(n1) - routed >= 2)
    } finally {
      for (const n of [n1, n2]) inNs(n.ns, ['ip', 'link', 'set', 'eth0', 'mtu', '1500'])
    }
  })

  it('a route through another device than the uplink: to the stack as TRACE_FIB_NOT_UPLINK, still delivered', () => {
    // A second, direct link n1 ↔ n2, and n1's route to n2's pods moved onto it.
    inNs(n1.ns, ['ip', 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', n2.ns])
    inNs(n1.ns, ['ip', 'addr', 'add', '172.30.14.1/24', 'dev', 'eth1'])
    inNs(n2.ns, ['ip', 'addr', 'add', '172.30.14.2/24', 'dev', 'eth1'])
    for (const n of [n1, n2]) {
      inNs(n.ns, ['ip', 'link', 'set', 'eth1', 'up'])
      inNs(n.ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.eth1.rp_filter=0'])
    }
    inNs(n1.ns, ['ip', 'route', 'replace', n2.cidr, 'via', '172.30.14.2', 'dev', 'eth1'])
    try {
      const before = metric(n1, 'TRACE_FIB_NOT_UPLINK')
      const fwd = forwarded(n1)
      assert.ok(ping(a.ns, c.ip, 3), 'n1/a → n2/c over eth1')
      assert.ok(metric(n1, 'TRACE_FIB_NOT_UPLINK') - before >= 3)
      assert.ok(forwarded(n1) - fwd >= 3, 'the stack forwarded it')
    } finally {
      inNs(n1.ns, ['ip', 'route', 'replace', n2.cidr, 'via', n2.uplinkIp, 'dev', 'eth0'])
      inNs(n1.ns, ['ip', 'link', 'del', 'eth1'])
    }
  })

  it('no route: to the stack as TRACE_FIB_NO_ROUTE, which answers with ICMP unreachable (no BPF drop)', () => {
    inNs(n1.ns, ['ip', 'route', 'replace', 'unreachable', n2.cidr])
    try {
      const before = metric(n1, 'TRACE_FIB_NO_ROUTE')
      const dropped = drops(n1)
      const r = tryInNs(a.ns, ['ping', '-c', '2', '-W', '1', '-i', '0.3', c.ip])
      assert.notEqual(r.status, 0)
      assert.match(r.stdout, /Unreachable/, 'the stack sent the ICMP error back to the pod')
      assert.ok(metric(n1, 'TRACE_FIB_NO_ROUTE') - before >= 2)
      assert.equal(drops(n1), dropped)
    } finally {
      inNs(n1.ns, ['ip', 'route', 'replace', n2.cidr, 'via', n2.uplinkIp, 'dev', 'eth0'])
    }
    assert.ok(ping(a.ns, c.ip, 1), 'the route is back')
  })

  it('traffic to the node itself and to non-pod addresses still works', () => {
    // The router IP (an ENDPOINT_F_HOST entry): to the stack, uncounted by host routing.
    assert.ok(ping(a.ns, n1.cidr.replace(/\.0\/24$/, '.1'), 2), 'pod → its router IP')
    // The node's uplink IP: the FIB says local (not forwarded) → the stack delivers it.
    const local = metric(n1, 'TRACE_FIB_NOT_FWDED')
    assert.ok(ping(a.ns, n1.uplinkIp, 2), 'pod → its node\'s uplink IP')
    assert.ok(metric(n1, 'TRACE_FIB_NOT_FWDED') - local >= 2)
    // Another node's own address (not a pod): host routed out of the uplink, the reply comes back.
    const routed = hostRouted(n1)
    assert.ok(ping(a.ns, n2.uplinkIp, 2), 'pod → the other node')
    assert.ok(hostRouted(n1) - routed >= 2)
    // The node reaches the other node's pods (its own traffic never passes from-container).
    assert.ok(ping(n1.ns, c.ip, 2), 'node 1 → pod c')
    // Same node: still bpf_redirect_peer, not the FIB path.
    const peerBefore = metric(n1, 'TRACE_REDIRECT_PEER')
    assert.ok(ping(a.ns, b.ip, 2), 'a → b')
    assert.ok(metric(n1, 'TRACE_REDIRECT_PEER') - peerBefore >= 2)
  })

  it('pn status shows the host-routing counters and fallbacks by reason', () => {
    const st = ok(n1.run(['status']), 'status')
    const sec = (st.sections as {name: string; items: {state: string; details: {redirected: number; redirectedNeigh: number; fallbacks: string[]}}[]}[]).find((s) => s.name === 'host-routing')!
    assert.equal(sec.items[0].state, 'ok')
    assert.ok(sec.items[0].details.redirected > 0)
    for (const r of ['frag_needed', 'not_uplink', 'no_route', 'not_fwded']) assert.ok(sec.items[0].details.fallbacks.some((f) => f.startsWith(`${r} `)), r)
    const text = pn(['status', '--state-dir', n1.stateDir], {netns: n1.ns}).stdout
    assert.match(text, /from-container → uplink \(ifindex \d+\): redirected \d+ \+ \d+ via neighbour resolution; to the stack: .*frag_needed \d+/)
    // host-routes nodes have no such section content.
    const hs = ok(h1.run(['status']), 'status h1')
    assert.deepEqual((hs.sections as {name: string; items: unknown[]}[]).find((s) => s.name === 'host-routing')!.items, [])
  })
})
