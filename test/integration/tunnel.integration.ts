/**
 * Tunnel mode (bpf/include/tunnel.h, bpf/from_overlay.c) on a real kernel, in throwaway `pn-vx…`
 * namespaces only:
 *
 *   [pod a1]─ node n1 ─eth0── 172.30.41.0/24 ──┐
 *                                              router (knows no pod CIDR, runs no BGP)
 *   [pod b1]─ node n2 ─eth0──┐                 │
 *   [pod c1]─ node n3 ─eth0──┴─ 172.30.42.0/24 ┘
 *
 * Each node has only a default route to the router; the pod CIDRs are known to the nodes through
 * `pn node peer add` (pn_ipcache), nowhere else. So pod traffic between nodes can only cross the
 * router inside VXLAN: the proof is that it arrives, that the router's FORWARD hook counts UDP
 * 8472 and never a pod address, and that the programs count TRACE_ENCAP (from-container) and
 * deliveries from from-overlay. The node's own traffic to remote pods takes the same tunnel
 * (from-host).
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn} from '../helpers/cli.js'
import {path1, startMonitor, waitFor, type RunningMonitor} from '../helpers/monitor.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, ping, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const BPFFS = '/run/pn/bpffs'

/** A TCP server answering each connection with its name and the byte count it read. */
const SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(64)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(('%s %d' % (sys.argv[2], n)).encode()); c.close()
`

/** Connect `count` times, send `size` bytes each, print the answers as JSON. */
const CLIENT = `
import json, socket, sys
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = []
for i in range(count):
    try:
        c = socket.create_connection((host, port), timeout=5)
        c.sendall(b'x' * size); c.shutdown(socket.SHUT_WR)
        out.append(c.recv(100).decode()); c.close()
    except Exception as e:
        out.append('error ' + str(e))
print(json.dumps(out))
`

interface Node {
  ns: string
  stateDir: string
  cidr: string
  ip: string
  run: (args: string[]) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  ip: string
}

function metric(node: Node, reason: string, point: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {point: string; reason: string}; value: {packets: number}}[])
    .filter((e) => e.key.point === point && e.key.reason === reason)
    .reduce((n, e) => n + e.value.packets, 0)
}

/** Packets a device of a namespace has sent (its kernel statistics). */
function txPackets(ns: string, dev: string): number {
  return Number(inNs(ns, ['cat', `/sys/class/net/${dev}/statistics/tx_packets`]).trim())
}

function counter(ns: string, chain: string): number {
  const m = /counter packets (\d+)/.exec(inNs(ns, ['nft', 'list', 'chain', 'ip', 'pnvx', chain]))
  assert.ok(m, `counter of ${chain}`)
  return Number(m[1])
}

describe('tunnel mode: VXLAN across a router that knows no pod CIDR (root, netns)', function () {
  this.timeout(180_000)
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-vx-'))
  const children: ChildProcess[] = []
  const nodes: Node[] = []
  let router: string
  let n1: Node
  let n2: Node
  let n3: Node
  let a1: Pod
  let b1: Pod
  let c1: Pod

  function makeNode(idx: number, subnet: number, link: (ns: string, port: string) => void): Node {
    const ns = createNamespace(`vxn${idx}`).name
    const port = `vxr${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', router])
    link(ns, port)
    const ip = `172.30.${subnet}.${10 + idx}`
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    inNs(ns, ['ip', 'route', 'add', 'default', 'via', `172.30.${subnet}.1`])
    const stateDir = path.join(tmp, `n${idx}`)
    const cidr = `10.${180 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, ip, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    nodes.push(node)
    return node
  }

  function makePod(node: Node, host: number): Pod {
    const ns = createNamespace('vxp').name
    const ip = node.cidr.replace(/\.0\/24$/, `.${host}`)
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, ip}
  }

  async function startServer(pod: Pod, name: string, port: number): Promise<void> {
    const ch = spawn('ip', ['netns', 'exec', pod.ns, 'python3', '-u', path.join(tmp, 'server.py'), String(port), name], {stdio: ['ignore', 'pipe', 'inherit']})
    children.push(ch)
    await new Promise<void>((resolve, reject) => {
      ch.stdout!.once('data', () => resolve())
      ch.once('exit', (c) => reject(new Error(`server ${name} exited ${c}`)))
    })
  }

  function client(pod: Pod, host: string, port: number, count: number, size: number): string[] {
    return JSON.parse(inNs(pod.ns, ['python3', path.join(tmp, 'client.py'), host, String(port), String(count), String(size)])) as string[]
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    writeFileSync(path.join(tmp, 'server.py'), SERVER)
    writeFileSync(path.join(tmp, 'client.py'), CLIENT)
    router = createNamespace('vxr').name
    inNs(router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    inNs(router, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(router, ['ip', 'addr', 'add', '172.30.42.1/24', 'dev', 'br0'])
    inNs(router, ['ip', 'link', 'set', 'br0', 'up'])
    // Subnet 1: n1 alone on a routed port; subnet 2: n2 and n3 on the router's bridge.
    n1 = makeNode(1, 41, (_ns, port) => {
      inNs(router, ['ip', 'addr', 'add', '172.30.41.1/24', 'dev', port])
      inNs(router, ['ip', 'link', 'set', port, 'up'])
    })
    const bridged = (_ns: string, port: string) => {
      inNs(router, ['ip', 'link', 'set', port, 'master', 'br0'])
      inNs(router, ['ip', 'link', 'set', port, 'up'])
    }
    n2 = makeNode(2, 42, bridged)
    n3 = makeNode(3, 42, bridged)
    // What the router forwards: encapsulated (UDP 8472) and anything carrying a pod address.
    inNs(router, ['nft', 'add', 'table', 'ip', 'pnvx'])
    inNs(router, ['nft', 'add', 'chain', 'ip', 'pnvx', 'vxlan', '{ type filter hook forward priority 0; policy accept; }'])
    inNs(router, ['nft', 'add', 'rule', 'ip', 'pnvx', 'vxlan', 'udp', 'dport', '8472', 'counter'])
    inNs(router, ['nft', 'add', 'chain', 'ip', 'pnvx', 'pods', '{ type filter hook forward priority 1; policy accept; }'])
    inNs(router, ['nft', 'add', 'rule', 'ip', 'pnvx', 'pods', 'ip', 'daddr', '10.180.0.0/14', 'counter'])
    for (const n of nodes) ok(n.run(['node', 'init', '--name', n.ns, '--device', 'eth0', '--pod-cidr', n.cidr, '--tunnel', 'vxlan']), `node init ${n.ns}`)
    for (const n of nodes) {
      for (const p of nodes) if (p !== n) ok(n.run(['node', 'peer', 'add', p.ns, '--node-ip', p.ip, '--pod-cidr', p.cidr]), `peer add ${p.ns} on ${n.ns}`)
    }
    a1 = makePod(n1, 10)
    b1 = makePod(n2, 10)
    c1 = makePod(n3, 10)
    await startServer(a1, 'a1', 8080)
    await startServer(b1, 'b1', 8080)
    await startServer(c1, 'c1', 8080)
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) ch.kill()
    for (const n of nodes) n.run(['node', 'reset'])
    cleanupNamespaces()
    rmSync(tmp, {recursive: true, force: true})
    for (const n of nodes) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  it('node init --tunnel vxlan: pn_vxlan is a collect-metadata VXLAN device on 8472, node.json and status say tunnel vxlan, pods get uplink MTU − 50', () => {
    const vx = JSON.parse(inNs(n1.ns, ['ip', '-j', '-d', 'link', 'show', 'pn_vxlan']))[0] as {flags: string[]; linkinfo: {info_kind: string; info_data: {external?: boolean; port?: number; learning?: boolean}}}
    assert.equal(vx.linkinfo.info_kind, 'vxlan')
    assert.equal(vx.linkinfo.info_data.external, true)
    assert.equal(vx.linkinfo.info_data.port, 8472)
    assert.equal(vx.linkinfo.info_data.learning, false)
    assert.ok(vx.flags.includes('UP'))
    const show = ok(n1.run(['node', 'show']), 'node show')
    assert.equal(show.node.tunnel, 'vxlan')
    assert.equal(show.node.mtu, 1450)
    assert.ok(show.checks.some((c: {check: string; ok: boolean}) => c.check === 'device pn_vxlan' && c.ok), 'node show checks pn_vxlan')
    assert.equal(show.ok, true, JSON.stringify(show.checks.filter((c: {ok: boolean}) => !c.ok)))
    const status = ok(n1.run(['status']), 'status')
    assert.equal(status.node.tunnel, 'vxlan')
    const host = status.sections.find((s: {name: string}) => s.name === 'host')
    const dev = host.items.find((i: {name: string}) => i.name === 'pn_vxlan')
    assert.equal(dev.state, 'ok')
    assert.deepEqual(dev.hooks.map((h: {direction: string; attached: string}) => [h.direction, h.attached]), [['ingress', 'from-overlay']])
    assert.equal(JSON.parse(inNs(a1.ns, ['ip', '-j', 'link', 'show', 'eth0']))[0].mtu, 1450)
    const cfg = ok(n1.run(['bpf', 'map', 'dump', 'pn_node_config']), 'dump pn_node_config').entries[0].value
    assert.equal(cfg.flags & 2, 2, 'tunnel flag')
    assert.equal(cfg.tunnelIfindex, JSON.parse(inNs(n1.ns, ['ip', '-j', 'link', 'show', 'pn_vxlan']))[0].ifindex)
  })

  it('peer list shows the peers, each in pn_ipcache with its node IP', () => {
    const list = ok(n1.run(['node', 'peer', 'list']), 'peer list')
    assert.deepEqual(list.map((p: {name: string; nodeIp: string; podCidrs: string[]; inIpcache: boolean}) => [p.name, p.nodeIp, p.podCidrs, p.inIpcache]).sort(),
      [[n2.ns, n2.ip, [n2.cidr], true], [n3.ns, n3.ip, [n3.cidr], true]].sort())
    const again = ok(n1.run(['node', 'peer', 'add', n2.ns, '--node-ip', n2.ip, '--pod-cidr', n2.cidr]), 'peer add again')
    assert.equal(again.changed, false)
  })

  it('pods on every node reach each other (ping, TCP, full-size segments) only through the tunnel', () => {
    const [vxlanBefore, podsBefore] = [counter(router, 'vxlan'), counter(router, 'pods')]
    const encap = metric(n1, 'TRACE_ENCAP', 'from-container')
    const decapped = metric(n1, 'TRACE_REDIRECT_PEER', 'from-netdev')
    const deviceTx = txPackets(n1.ns, 'pn_vxlan')
    for (const [from, to] of [[a1, b1], [a1, c1], [b1, a1], [b1, c1], [c1, a1], [c1, b1]]) {
      assert.ok(ping(from.ns, to.ip, 3), `${from.ip} → ${to.ip}`)
    }
    // A pod's single packets are encapsulated by from-container itself and sent straight to the
    // uplink (tunnel.h tunnel_encap4): pn_vxlan's transmit never sees the pings.
    assert.equal(txPackets(n1.ns, 'pn_vxlan') - deviceTx, 0, 'pings left n1 without pn_vxlan')
    // 1 MB each way of the connection: segments of the full pod MTU, 50 bytes under the uplink's.
    assert.deepEqual(client(a1, b1.ip, 8080, 3, 1_000_000), ['b1 1000000', 'b1 1000000', 'b1 1000000'])
    assert.deepEqual(client(b1, c1.ip, 8080, 3, 1_000_000), ['c1 1000000', 'c1 1000000', 'c1 1000000'])
    assert.deepEqual(client(c1, a1.ip, 8080, 3, 1_000_000), ['a1 1000000', 'a1 1000000', 'a1 1000000'])
    assert.ok(tryInNs(a1.ns, ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', '1422', c1.ip]).status === 0, 'a full-MTU packet (1450) fits the tunnel')
    assert.ok(counter(router, 'vxlan') - vxlanBefore >= 30, 'the router forwarded VXLAN')
    assert.equal(counter(router, 'pods') - podsBefore, 0, 'the router never saw a pod address')
    assert.ok(metric(n1, 'TRACE_ENCAP', 'from-container') - encap >= 10, 'n1 encapsulated')
    // Single packets are decapsulated in from-netdev (tunnel.h's fast path); GRO aggregates, if
    // the kernel built any, take the pn_vxlan device and from-overlay.
    const fast = metric(n1, 'TRACE_REDIRECT_PEER', 'from-netdev') - decapped
    assert.ok(fast >= 10, `n1 decapsulated in from-netdev (${fast})`)
  })

  it('pn monitor follows one echo through both fast paths: encapsulated by from-container on one node, decapsulated by from-netdev on the other, shown as the pods\' packet', async () => {
    const monitors: RunningMonitor[] = [startMonitor(n1, ['--ip', b1.ip]), startMonitor(n2, ['--ip', a1.ip])]
    try {
      const [m1, m2] = monitors
      await Promise.all(monitors.map((m) => m.ready))
      const r = tryInNs(a1.ns, ['ping', '-c', '1', '-W', '2', b1.ip])
      assert.equal(r.status, 0, r.stderr)
      await waitFor('the reply on node 1', () => m1.events.some((e) => e.icmp?.type === 0 && e.observationPoint === 'to-endpoint'))
      await waitFor('the request on node 2', () => m2.events.some((e) => e.icmp?.type === 8 && e.observationPoint === 'to-endpoint'))
      const id = m1.events.find((e) => e.icmp?.type === 8)!.icmp!.id!
      // The events of the encapsulated packet carry the pods' addresses, not the node IPs.
      assert.deepEqual(path1(m1.events, 8, id), ['from-endpoint@from-container', 'to-overlay@from-container'])
      const enc = m1.events.find((e) => e.observationPoint === 'to-overlay')!
      assert.deepEqual([enc.srcIp, enc.dstIp, enc.reason.name], [a1.ip, b1.ip, 'TRACE_ENCAP'])
      assert.deepEqual(path1(m2.events, 8, id), ['from-network@from-netdev', 'to-endpoint@from-netdev'])
      assert.deepEqual(path1(m1.events, 0, id), ['from-network@from-netdev', 'to-endpoint@from-netdev'])
    } finally {
      for (const m of monitors) m.child.kill('SIGINT')
      await Promise.all(monitors.map((m) => m.exited))
    }
  })

  it('the node itself reaches pods on other nodes: the peer CIDR is routed into pn_host at the pod MTU, from-host encapsulates', () => {
    const routes = JSON.parse(inNs(n1.ns, ['ip', '-j', 'route', 'show', n2.cidr])) as {dev: string; gateway: string; metrics?: {mtu?: number}[]}[]
    assert.deepEqual(routes.map((r) => [r.dev, r.gateway, r.metrics?.[0]?.mtu]), [['pn_host', '10.181.0.1', 1450]])
    const encap = metric(n1, 'TRACE_ENCAP', 'from-host')
    const toNode = metric(n1, 'TRACE_TO_STACK', 'from-overlay')
    assert.ok(ping(n1.ns, b1.ip, 3), `node n1 → ${b1.ip}`)
    assert.deepEqual(JSON.parse(inNs(n1.ns, ['python3', path.join(tmp, 'client.py'), c1.ip, '8080', '2', '200000'])), ['c1 200000', 'c1 200000'])
    assert.ok(metric(n1, 'TRACE_ENCAP', 'from-host') - encap >= 5, 'from-host encapsulated the node\'s own traffic')
    // Replies to the node itself are not the fast path's: the pn_vxlan device and from-overlay
    // hand them to the stack.
    assert.ok(metric(n1, 'TRACE_TO_STACK', 'from-overlay') - toNode >= 3, 'replies to the node came through pn_vxlan')
  })

  it('a ClusterIP service whose backends are on the other nodes is reached from every node', async () => {
    for (const n of nodes) ok(n.run(['service', 'add', '10.96.7.10:80', '--backend', `${b1.ip}:8080`, '--backend', `${c1.ip}:8080`]), `service add on ${n.ns}`)
    const answers = client(a1, '10.96.7.10', 80, 24, 1000)
    assert.ok(answers.every((x) => x === 'b1 1000' || x === 'c1 1000'), answers.join(', '))
    assert.ok(answers.includes('b1 1000') && answers.includes('c1 1000'), 'both remote backends answered')
    // From n2: one backend local, one across the tunnel.
    const fromB = client(b1, '10.96.7.10', 80, 24, 1000)
    assert.ok(fromB.every((x) => x === 'b1 1000' || x === 'c1 1000'), fromB.join(', '))
    assert.ok(fromB.includes('c1 1000'), 'the remote backend answered through the tunnel')
  })

  it('refused: --tunnel vxlan with --routing host-routes, and a peer overlapping the node\'s pod CIDR; nothing changes', () => {
    const ns = createNamespace('vxq').name
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1'])
    const dir = path.join(tmp, 'refused')
    const r = pn(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', '10.190.0.0/24', '--tunnel', 'vxlan', '--routing', 'host-routes', '--state-dir', dir, '--json'], {netns: ns})
    assert.notEqual(r.status, 0)
    assert.equal(r.json?.error?.code, 'PN_INVALID_ARGUMENT')
    assert.match(r.json?.error?.message ?? '', /--tunnel vxlan needs --routing bpf/)
    assert.equal(tryInNs(ns, ['ip', 'link', 'show', 'pn_vxlan']).status, 1, 'no pn_vxlan')
    assert.equal(existsSync(path.join(dir, 'node.json')), false)
    const p = n1.run(['node', 'peer', 'add', 'x', '--node-ip', '172.30.42.99', '--pod-cidr', '10.181.0.128/25'])
    assert.equal(p.json?.error?.code, 'PN_CIDR_CONFLICT')
    assert.equal(ok(n1.run(['node', 'peer', 'list']), 'peer list').length, 2)
  })

  it('peer delete removes the peer\'s entries: its pods become unreachable from that node', () => {
    const del = ok(n1.run(['node', 'peer', 'delete', n3.ns]), 'peer delete')
    assert.deepEqual(del.prefixes, [n3.cidr])
    assert.equal(inNs(n1.ns, ['ip', 'route', 'show', n3.cidr]).trim(), '', 'its route into pn_host went too')
    assert.equal(ping(a1.ns, c1.ip, 1), false, 'no tunnel to n3 any more')
    assert.equal(ok(n1.run(['node', 'peer', 'delete', n3.ns]), 'peer delete again').changed, false)
    ok(n1.run(['node', 'peer', 'add', n3.ns, '--node-ip', n3.ip, '--pod-cidr', n3.cidr]), 'peer add back')
    assert.ok(ping(a1.ns, c1.ip, 3), 'reachable again')
  })

  it('node reset removes pn_vxlan', () => {
    const r = ok(n3.run(['node', 'reset']), 'node reset')
    assert.ok(r.removed.includes('pn_vxlan'), r.removed.join(', '))
    assert.equal(tryInNs(n3.ns, ['ip', 'link', 'show', 'pn_vxlan']).status, 1, 'pn_vxlan is gone')
    assert.equal(existsSync(path.join(n3.stateDir, 'peers.json')), false)
  })
})
