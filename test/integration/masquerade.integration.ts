/**
 * Masquerade on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc── node n1 (bpf masquerade) ──eth0─┐
 *   [pod b]──lxc── node n2 (bpf masquerade,  ──eth0─┼─ switch ─── outside (no route to any pod CIDR)
 *                           4 ports, short timeouts)   │
 *   [pod c]──lxc── node n3 (bpf masquerade,  ──eth0─┘
 *                           4 ports, default timeouts: TCP states and orphans)
 *
 * The outside namespace knows only its own /24: a reply to a pod address would be lost, so
 * every answer it gives proves the pod's packet left with its node's address. A small python3
 * server there tells each client the source address and port it saw.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn, pnAsync} from '../helpers/cli.js'
import {natPeerScript} from '../helpers/nat-peer.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, ping, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'
import {encodeNat4Entry, encodeNat4Key} from '../../src/datapath/bpf/maps/index.js'

const SUBNET = '172.30.24'
const OUTSIDE_IP = `${SUBNET}.100`


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

function metric(node: Node, reason: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {reason: string}; value: {packets: number}}[]).filter((e) => e.key.reason === reason).reduce((n, e) => n + e.value.packets, 0)
}

describe('masquerade (root, netns)', function () {
  this.timeout(300_000)
  const tmpDirs: string[] = []
  const children: ChildProcess[] = []
  let sw: string
  let outside: string
  let script: string
  let n1: Node
  let n2: Node
  let a: Pod
  let b: Pod
  let n3: Node
  let c: Pod

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

  function attach(ns: string, ip: string): void {
    const port = `mqsw${ns.slice(-6)}`.slice(0, 15)
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  }

  function makeNode(idx: number, extra: string[]): Node {
    const ns = createNamespace(`mqn${idx}`).name
    const ip = `${SUBNET}.${idx}`
    attach(ns, ip)
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-mq-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${180 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, ip, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--masquerade', 'bpf', '--non-masquerade-cidr', '10.180.0.0/14', ...extra]), `node init ${ns}`)
    return node
  }

  function makePod(node: Node, host: number): Pod {
    const ns = createNamespace('mqp').name
    const ip = node.cidr.replace(/\.0\/24$/, `.${host}`)
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, ip}
  }

  function serve(proto: 'tcp' | 'udp', port: number, ns = outside): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', ns, 'python3', script, 'server', proto, String(port)], {stdio: ['ignore', 'pipe', 'pipe']})
    children.push(child)
    return new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('ready') && resolve())
      child.once('exit', (c) => reject(new Error(`server ${proto} exited ${c}`)))
    })
  }

  const tcp = (ns: string, n: number, port = 7000, hold = 0) =>
    JSON.parse(inNs(ns, ['python3', script, 'client', 'tcp', OUTSIDE_IP, String(port), String(n), ...(hold ? [String(hold)] : [])])) as {seen: [string, number][]; local: number[]; again?: [string, number][]}
  const udp = (ns: string, port = 7001, to = OUTSIDE_IP) => JSON.parse(inNs(ns, ['python3', script, 'client', 'udp', to, String(port)])) as {ip?: string; port?: number; timeout?: boolean}

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-mq-py-'))
    tmpDirs.push(dir)
    script = path.join(dir, 'peer.py')
    writeFileSync(script, natPeerScript(4))
    sw = createNamespace('mqsw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    outside = createNamespace('mqout').name
    attach(outside, OUTSIDE_IP)
    n1 = makeNode(1, [])
    n2 = makeNode(2, ['--masquerade-port-range', '61000-61003', '--nat-tcp-timeout', '2', '--nat-udp-timeout', '5'])
    n3 = makeNode(3, ['--masquerade-port-range', '61000-61003'])
    a = makePod(n1, 10)
    b = makePod(n2, 10)
    c = makePod(n3, 10)
    await serve('tcp', 7000)
    await serve('udp', 7001)
  })

  after(() => {
    for (const c of children) c.kill('SIGKILL')
    for (const n of [n1, n2, n3]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
  })

  it('node init records the mode and exceptions in node.json; status and show report them', () => {
    const show = ok(n1.run(['node', 'show']), 'node show')
    assert.equal(show.node.masquerade.mode, 'bpf')
    assert.deepEqual(show.node.masquerade.nonMasqueradeCidrs, ['10.180.0.0/14'])
    const reserved = show.checks.find((c: {check: string}) => c.check === 'masquerade ports reserved')
    assert.ok(reserved?.ok, `the SNAT ports are reserved: ${JSON.stringify(reserved)}`)
    assert.match(inNs(n1.ns, ['sysctl', '-n', 'net.ipv4.ip_local_reserved_ports']), /61000-65535/)
    const st = ok(n1.run(['status']), 'status')
    assert.equal(st.node.masquerade, 'bpf')
    const sec = st.sections.find((s: {name: string}) => s.name === 'masquerade')
    assert.equal(sec.items[0].details.snatIp, n1.ip)
    const prefixes = ok(n1.run(['bpf', 'map', 'dump', 'pn_nonmasq']), 'dump pn_nonmasq').entries.map((e: {key: {prefix: string}}) => e.key.prefix).sort()
    assert.deepEqual(prefixes, ['10.180.0.0/14', n1.cidr])
  })

  it('pods on both nodes reach a network with no route back to them: TCP, UDP and ping leave with the node IP', () => {
    for (const [pod, node] of [[a, n1], [b, n2]] as const) {
      assert.notEqual(tryInNs(outside, ['ip', 'route', 'get', pod.ip]).status, 0, 'the outside has no route to pods')
      const t = tcp(pod.ns, 1)
      assert.equal(t.seen[0][0], node.ip, 'TCP source is the node IP')
      assert.notEqual(t.seen[0][1], t.local[0], 'and a NAT port, not the pod port')
      const u = udp(pod.ns)
      assert.equal(u.ip, node.ip, `UDP source is the node IP: ${JSON.stringify(u)}`)
      assert.ok(ping(pod.ns, OUTSIDE_IP, 2), `ping from ${pod.ns}`)
    }
    // Pod to pod across nodes is never masqueraded (10.180.0.0/14 is a non-masquerade CIDR).
    inNs(n1.ns, ['ip', 'route', 'add', n2.cidr, 'via', n2.ip])
    inNs(n2.ns, ['ip', 'route', 'add', n1.cidr, 'via', n1.ip])
    assert.ok(ping(a.ns, b.ip, 2), 'pod a reaches pod b')
    const flows = ok(n1.run(['bpf', 'map', 'dump', 'pn_snat4']), 'dump pn_snat4').entries as {key: {daddr: string; dir: string}}[]
    assert.ok(!flows.some((e) => e.key.daddr === b.ip), 'no NAT entry for pod-to-pod traffic')
  })

  it('another node\'s IP is never masqueraded to once the node knows it (pn node peer add: pn_nonmasq entry), and is again after peer delete', async () => {
    await serve('udp', 7002, n2.ns)
    assert.equal(udp(a.ns, 7002, n2.ip).ip, n1.ip, 'an unknown node IP is outside: masqueraded')
    ok(n1.run(['node', 'peer', 'add', n2.ns, '--node-ip', n2.ip, '--pod-cidr', n2.cidr]), 'peer add')
    const entries = ok(n1.run(['bpf', 'map', 'dump', 'pn_nonmasq']), 'dump pn_nonmasq').entries as {key: {prefix: string}; value: {flags: number}}[]
    assert.deepEqual(entries.find((e) => e.key.prefix === `${n2.ip}/32`)?.value, {flags: 2}, 'the peer\'s node IP, flagged NONMASQ_F_PEER')
    assert.equal(udp(a.ns, 7002, n2.ip).ip, a.ip, 'to a known node, the pod keeps its address (n2 routes the pod CIDR back)')
    // Re-initialising the node rewrites only the configuration entries: the peer's stays.
    ok(n1.run(['node', 'init', '--name', n1.ns, '--device', 'eth0']), 'node init again')
    assert.equal(udp(a.ns, 7002, n2.ip).ip, a.ip, 'still not masqueraded after node init')
    ok(n1.run(['node', 'peer', 'delete', n2.ns]), 'peer delete')
    assert.ok(!(ok(n1.run(['bpf', 'map', 'dump', 'pn_nonmasq']), 'dump').entries as {key: {prefix: string}}[]).some((e) => e.key.prefix === `${n2.ip}/32`))
    assert.equal(udp(a.ns, 7002, n2.ip).ip, n1.ip, 'masqueraded again')
  })

  it('2,000 concurrent flows from a pod each get a distinct source port in the range; a node flow beside them keeps its own', async () => {
    // The node's own connection, held open while the pod opens its flows, then used again.
    const nodeFlow = new Promise<string>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', n1.ns, 'python3', script, 'client', 'tcp', OUTSIDE_IP, '7000', '1', '6'], {stdio: ['ignore', 'pipe', 'pipe']})
      children.push(c)
      let out = ''
      c.stdout.on('data', (d) => (out += d))
      c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`node client exited ${code}`))))
    })
    await sleep(500)
    const r = tcp(a.ns, 2000)
    assert.equal(r.seen.length, 2000)
    assert.ok(r.seen.every(([ip]) => ip === n1.ip), 'every flow has the node IP')
    const ports = new Set(r.seen.map(([, p]) => p))
    assert.equal(ports.size, 2000, 'distinct source ports')
    assert.ok([...ports].every((p) => p >= 61000 && p <= 65535), 'all from the masquerade range')
    const node = JSON.parse(await nodeFlow) as {seen: [string, number][]; local: number[]; again: [string, number][]}
    assert.deepEqual(node.seen[0], [n1.ip, node.local[0]], 'the node flow keeps its own address and port')
    assert.deepEqual(node.again[0], node.seen[0], 'and still works after the pod flows')
    assert.ok(node.local[0] < 61000, 'the node picked an ephemeral port outside the masquerade range')
  })

  it('entries expire: with 4 ports, a fifth flow is dropped (counted) until the first ones time out and are reclaimed', async () => {
    await sleep(5500) // what the first test left on n2 expires (UDP: 5 s, long enough that the five flows below come within it on a loaded machine)
    const before = metric(n2, 'DROP_NAT_NO_MAPPING')
    const got = [udp(b.ns), udp(b.ns), udp(b.ns), udp(b.ns)]
    assert.ok(got.every((g) => g.ip === n2.ip), `4 flows translated: ${JSON.stringify(got)}`)
    assert.equal(new Set(got.map((g) => g.port)).size, 4)
    assert.deepEqual(udp(b.ns), {timeout: true}, 'a fifth flow finds no free port')
    assert.ok(metric(n2, 'DROP_NAT_NO_MAPPING') > before, 'the drop is counted')
    await sleep(5500)
    const again = udp(b.ns)
    assert.equal(again.ip, n2.ip, 'after the timeout a new flow reclaims a port')
    assert.ok(again.port! >= 61000 && again.port! <= 61003)
  })

  const tcpClose = (ns: string, n: number, how: 'fin' | 'rst', port = 7000) =>
    JSON.parse(inNs(ns, ['python3', script, 'client', 'tcpclose', OUTSIDE_IP, String(port), String(n), how])) as ([string, number] | null)[]

  /** One connection from `pod`, held idle until release(): what the server saw first, then again. */
  function holdTcp(pod: Pod): {first: Promise<[string, number]>; release: () => Promise<[string, number]>} {
    const flag = path.join(tmpDirs[0], `release-${pod.ns}-${Date.now()}`)
    const child = spawn('ip', ['netns', 'exec', pod.ns, 'python3', script, 'client', 'tcphold', OUTSIDE_IP, '7000', flag], {stdio: ['ignore', 'pipe', 'pipe']})
    children.push(child)
    const lines: string[] = []
    const waiters: (() => void)[] = []
    let buf = ''
    child.stdout.on('data', (d) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(buf.slice(0, i))
        buf = buf.slice(i + 1)
        waiters.splice(0).forEach((w) => w())
      }
    })
    const line = (n: number) => new Promise<[string, number]>((resolve, reject) => {
      const check = () => (lines.length > n ? resolve(((([a, p]) => [a, Number(p)]) as (x: string[]) => [string, number])(JSON.parse(lines[n]))) : waiters.push(check))
      child.once('exit', (code) => lines.length <= n && reject(new Error(`tcphold exited ${code} after ${lines.length} lines`)))
      check()
    })
    return {first: line(0), release: () => (writeFileSync(flag, ''), line(1))}
  }

  const snat4 = (node: Node) =>
    ok(node.run(['bpf', 'map', 'dump', 'pn_snat4']), 'dump pn_snat4').entries as {key: {saddr: string; daddr: string; sport: number; dport: number; proto: string; dir: string}; value: {toAddr: string; toPort: number; lastSeenNs: string; state?: string}}[]

  it('TCP state: a closed connection (FIN or RST) frees its port after the 10 s close timeout, not the TCP timeout; an established idle one keeps its port', async () => {
    // n3: 4 ports, TCP timeout 6 h. One connection stays open and idle throughout.
    const live = holdTcp(c)
    const [liveIp, livePort] = await live.first
    assert.equal(liveIp, n3.ip)
    const before = metric(n3, 'DROP_NAT_NO_MAPPING')
    const round1 = tcpClose(c.ns, 4, 'fin')
    const opened1 = round1.filter((r) => r !== null) as [string, number][]
    assert.equal(opened1.length, 3, `3 ports left for 4 connections: ${JSON.stringify(round1)}`)
    assert.equal(round1[3], null, 'the 4th finds every port held (3 closing, 1 live)')
    assert.ok(metric(n3, 'DROP_NAT_NO_MAPPING') > before, 'the drop is counted')
    assert.ok(!opened1.some(([, p]) => p === livePort), 'the live connection\'s port is never handed out')
    const closing = snat4(n3).filter((e) => e.key.dir === 'in' && e.key.sport === 7000 && e.value.toAddr === c.ip)
    assert.deepEqual(closing.map((e) => e.value.state).sort(), ['closing', 'closing', 'closing', 'established'], JSON.stringify(closing))
    await sleep(11_500) // NAT_TCP_CLOSE_TIMEOUT (10 s) after the last packet of each closed connection
    const round2 = tcpClose(c.ns, 3, 'rst')
    assert.ok(round2.every((r) => r !== null && r[0] === n3.ip), `after the close timeout the FIN-closed ports are free again: ${JSON.stringify(round2)}`)
    assert.ok(!round2.some((r) => r![1] === livePort))
    await sleep(11_500)
    const round3 = tcpClose(c.ns, 3, 'fin')
    assert.ok(round3.every((r) => r !== null && r[0] === n3.ip), `and the RST-closed ones: ${JSON.stringify(round3)}`)
    assert.deepEqual(await live.release(), [n3.ip, livePort], 'the idle established connection kept its port while 9 others came and went')
  })

  it('TCP state: a connection that never got past its SYN is marked syn-sent (lives 60 s, not 6 h)', () => {
    inNs(outside, ['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '7009', '-j', 'DROP'])
    try {
      assert.deepEqual(tcpClose(c.ns, 1, 'fin', 7009), [null], 'the SYN goes unanswered')
    } finally {
      inNs(outside, ['iptables', '-D', 'INPUT', '-p', 'tcp', '--dport', '7009', '-j', 'DROP'])
    }
    const syn = snat4(n3).filter((e) => e.key.dir === 'in' && e.key.sport === 7009)
    assert.equal(syn.length, 1, JSON.stringify(syn))
    assert.equal(syn[0].value.state, 'syn-sent')
  })

  it('an IN entry whose OUT entry is gone (an LRU eviction) is an orphan: its port is reclaimed, a live flow\'s and a just-written one\'s are not', async () => {
    await sleep(11_000) // the previous test's closed connections expire
    const live = holdTcp(c)
    const [, livePort] = await live.first
    const liveIn = snat4(n3).find((e) => e.key.dir === 'in' && e.key.dport === livePort && e.key.sport === 7000)
    assert.ok(liveIn, 'the live flow\'s IN entry')
    // bpf_ktime_get_ns and hrtime are both CLOCK_MONOTONIC: entries can be dated here.
    const now = process.hrtime.bigint()
    assert.ok(now - BigInt(liveIn.value.lastSeenNs) < 10_000_000_000n && now > BigInt(liveIn.value.lastSeenNs), 'map times are this clock')
    const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0'))
    const map = `/run/pn/bpffs/${n3.ns}/maps/pn_snat4`
    const [fresh, ...orphans] = [61000, 61001, 61002, 61003].filter((p) => p !== livePort)
    // Two orphans: established IN entries 2 s old (past the 1 s grace) for pod ports with no OUT entry.
    // And one IN entry stamped 5 s ahead, as one another CPU refreshed after the allocator read its
    // clock (or its OUT entry is still being written): never reclaimed, never "idle for 2^64 ns".
    const write = (port: number, podPort: number, lastSeenNs: bigint) => {
      const key = encodeNat4Key({saddr: OUTSIDE_IP, daddr: n3.ip, sport: 7000, dport: port, proto: 'tcp', dir: 'in'})
      const value = encodeNat4Entry({lastSeenNs, packets: 1, toAddr: c.ip, toPort: podPort, flags: 0})
      inNs(n3.ns, ['bpftool', 'map', 'update', 'pinned', map, 'key', 'hex', ...hex(key), 'value', 'hex', ...hex(value)])
    }
    orphans.forEach((port, i) => write(port, 1000 + i, now - 2_000_000_000n))
    write(fresh, 1002, process.hrtime.bigint() + 5_000_000_000n)
    const opened = tcpClose(c.ns, 3, 'fin')
    assert.deepEqual(opened.slice(0, 2).map((r) => r && r[0]), [n3.ip, n3.ip], `the orphans' ports are taken over: ${JSON.stringify(opened)}`)
    assert.deepEqual(opened.slice(0, 2).map((r) => r![1]).sort(), orphans, 'exactly the orphaned ports')
    assert.equal(opened[2], null, 'the third finds only the live and the just-written entries: no port')
    assert.deepEqual(await live.release(), [n3.ip, livePort], 'the live flow kept its port')
  })

  it('pn monitor shows the translation: the pod source before SNAT on to-network, the node port before the reply was translated back', async () => {
    const mon = pnAsync(['monitor', '--json', '--duration', '4s', '--state-dir', n1.stateDir], {netns: n1.ns})
    await sleep(1500)
    assert.ok(ping(a.ns, OUTSIDE_IP, 2))
    const out = await mon
    const events = out.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    const snat = events.find((e) => e.observationPoint === 'to-network' && e.nat?.kind === 'snat' && e.protocol === 'icmp')
    assert.ok(snat, `a to-network event with the SNAT: ${out.stdout.slice(0, 2000)}`)
    assert.equal(snat.srcIp, n1.ip)
    assert.equal(snat.nat.ip, a.ip)
    const rev = events.find((e) => e.observationPoint === 'from-network' && e.nat?.kind === 'rev-snat')
    assert.ok(rev, 'a from-network event with the reverse translation')
    assert.equal(rev.dstIp, a.ip)
    assert.equal(rev.nat.ip, n1.ip)
  })

  it('iptables mode: one MASQUERADE rule in the node netns does the same; reset removes it', () => {
    ok(n2.run(['node', 'init', '--name', n2.ns, '--device', 'eth0', '--masquerade', 'iptables']), 'node init iptables')
    const rules = inNs(n2.ns, ['iptables', '-t', 'nat', '-S'])
    assert.equal(rules.split('\n').filter((l) => l.includes('-j MASQUERADE')).length, 1, rules)
    assert.match(rules, new RegExp(`-A POSTROUTING -s ${n2.cidr.replace(/\./g, '\\.')} -j PN-MASQUERADE`))
    const t = tcp(b.ns, 1)
    assert.equal(t.seen[0][0], n2.ip, 'iptables MASQUERADE gives the node IP')
    assert.equal(udp(b.ns).ip, n2.ip)
    assert.ok(ping(b.ns, OUTSIDE_IP, 2))
    const st = ok(n2.run(['status']), 'status')
    assert.equal(st.node.masquerade, 'iptables')
    assert.equal(st.sections.find((s: {name: string}) => s.name === 'masquerade').state, 'ok')
    const reset = ok(n2.run(['node', 'reset']), 'node reset')
    assert.ok(reset.removed.includes('iptables nat chain PN-MASQUERADE'), JSON.stringify(reset.removed))
    assert.doesNotMatch(inNs(n2.ns, ['iptables', '-t', 'nat', '-S']), /PN-MASQUERADE|MASQUERADE/)
  })
})
