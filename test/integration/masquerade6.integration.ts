/**
 * IPv6 masquerade on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc── node n1 (dual stack, bpf masquerade) ──eth0─┐
 *   [pod b]──lxc── node n2 (dual stack, bpf masquerade,  ──eth0─┼─ switch ─── outside (IPv4 + IPv6,
 *                           4 ports, short timeouts)              │            no route to any pod CIDR)
 *   [pod c]──lxc── node n3 (dual stack, bpf masquerade,  ──eth0─┘
 *                           4 ports, default timeouts: TCP states and orphans)
 *
 * The outside namespace knows only its own /24 and /64: a reply to a pod's IPv6 address would be
 * lost, so every answer it gives proves the pod's packet left with its node's IPv6 address. A
 * small python3 server there tells each client the source address and port it saw.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn, pnAsync} from '../helpers/cli.js'
import {natPeerScript} from '../helpers/nat-peer.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, ping, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'
import {encodeNat6Entry, encodeNat6Key} from '../../src/datapath/bpf/maps/index.js'

const SUBNET = '172.30.26'
const SUBNET6 = 'fd00:172:26:'
const OUTSIDE_IP6 = `${SUBNET6}:100`


interface Node {
  ns: string
  stateDir: string
  cidr: string
  cidr6: string
  ip6: string
  run: (args: string[]) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  ip6: string
}

function metric(node: Node, reason: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {reason: string}; value: {packets: number}}[]).filter((e) => e.key.reason === reason).reduce((n, e) => n + e.value.packets, 0)
}

type Snat6 = {key: {saddr: string; daddr: string; sport: number; dport: number; proto: string; dir: string}; value: {toAddr: string; toPort: number}}
const snat6 = (node: Node) => ok(node.run(['bpf', 'map', 'dump', 'pn_snat6']), 'dump pn_snat6').entries as Snat6[]

describe('masquerade, IPv6 (root, netns, dual stack)', function () {
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

  function attach(ns: string, ip: string, ip6: string): void {
    const port = `m6sw${ns.slice(-6)}`.slice(0, 15)
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  }

  function makeNode(idx: number, extra: string[]): Node {
    const ns = createNamespace(`m6n${idx}`).name
    const ip6 = `${SUBNET6}:${idx}`
    attach(ns, `${SUBNET}.${idx}`, ip6)
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-m6-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${190 + idx}.0.0/24`
    const cidr6 = `fd00:190:${idx}::/112`
    const node: Node = {ns, stateDir, cidr, cidr6, ip6, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--pod-cidr', cidr6, '--masquerade', 'bpf',
      '--non-masquerade-cidr', '10.190.0.0/15', '--non-masquerade-cidr', 'fd00:190::/32', ...extra]), `node init ${ns}`)
    return node
  }

  function makePod(node: Node, host: number): Pod {
    const ns = createNamespace('m6p').name
    const ip = node.cidr.replace(/\.0\/24$/, `.${host}`)
    const ip6 = node.cidr6.replace(/::\/112$/, `::${host}`)
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip, '--ip', ip6]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    return {ns, ip6}
  }

  function serve(proto: 'tcp' | 'udp', port: number): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', outside, 'python3', script, 'server', proto, String(port)], {stdio: ['ignore', 'pipe', 'pipe']})
    children.push(child)
    return new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('ready') && resolve())
      child.once('exit', (c) => reject(new Error(`server ${proto} exited ${c}`)))
    })
  }

  const tcp = (ns: string, n: number, port = 7600) =>
    JSON.parse(inNs(ns, ['python3', script, 'client', 'tcp', OUTSIDE_IP6, String(port), String(n)])) as {seen: [string, number][]; local: number[]}
  const udp = (ns: string, port = 7601) => JSON.parse(inNs(ns, ['python3', script, 'client', 'udp', OUTSIDE_IP6, String(port)])) as {ip?: string; port?: number; local?: number; timeout?: boolean}

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-m6-py-'))
    tmpDirs.push(dir)
    script = path.join(dir, 'peer.py')
    writeFileSync(script, natPeerScript(6))
    sw = createNamespace('m6sw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    outside = createNamespace('m6out').name
    attach(outside, `${SUBNET}.100`, OUTSIDE_IP6)
    n1 = makeNode(1, [])
    n2 = makeNode(2, ['--masquerade-port-range', '61000-61003', '--nat-tcp-timeout', '2', '--nat-udp-timeout', '5'])
    n3 = makeNode(3, ['--masquerade-port-range', '61000-61003'])
    a = makePod(n1, 10)
    b = makePod(n2, 10)
    c = makePod(n3, 10)
    await serve('tcp', 7600)
    await serve('udp', 7601)
  })

  after(() => {
    for (const c of children) if (c.pid && c.exitCode === null) c.kill('SIGKILL')
    for (const n of [n1, n2, n3]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
  })

  it('node init takes IPv6 non-masquerade CIDRs: pn_nonmasq holds both families, pn_node_config the uplink\'s IPv6 address', () => {
    const show = ok(n1.run(['node', 'show']), 'node show')
    assert.deepEqual(show.node.masquerade.nonMasqueradeCidrs, ['10.190.0.0/15', 'fd00:190::/32'])
    const prefixes = ok(n1.run(['bpf', 'map', 'dump', 'pn_nonmasq']), 'dump pn_nonmasq').entries.map((e: {key: {prefix: string}}) => e.key.prefix).sort()
    assert.deepEqual(prefixes, ['10.190.0.0/15', n1.cidr, 'fd00:190::/32', n1.cidr6].sort())
    const cfg = ok(n1.run(['bpf', 'map', 'dump', 'pn_node_config']), 'dump pn_node_config').entries[0].value
    assert.equal(cfg.natIp6, n1.ip6)
    assert.equal(cfg.natIp4, `${SUBNET}.1`)
    const sec = ok(n1.run(['status']), 'status').sections.find((s: {name: string}) => s.name === 'masquerade')
    assert.equal(sec.state, 'ok', JSON.stringify(sec))
    assert.equal(sec.items[0].details.snatIp6, n1.ip6)
  })

  it('pods on both nodes reach an IPv6 network with no route back to them: TCP, UDP and ping -6 leave with the node\'s IPv6 address', () => {
    for (const [pod, node] of [[a, n1], [b, n2]] as const) {
      assert.notEqual(tryInNs(outside, ['ip', '-6', 'route', 'get', pod.ip6]).status, 0, 'the outside has no route to the pods\' IPv6 CIDR')
      const t = tcp(pod.ns, 1)
      assert.equal(t.seen[0][0], node.ip6, 'TCP source is the node\'s IPv6 address')
      assert.notEqual(t.seen[0][1], t.local[0], 'and a NAT port, not the pod port')
      const u = udp(pod.ns)
      assert.equal(u.ip, node.ip6, `UDP source is the node's IPv6 address: ${JSON.stringify(u)}`)
      assert.ok(u.port! >= 61000 && u.port! <= 65535, `a port of the masquerade range: ${u.port}`)
      assert.ok(ping(pod.ns, OUTSIDE_IP6, 2), `ping -6 from ${pod.ns}`)
    }
    const flows = snat6(n1)
    const echo = flows.find((e) => e.key.proto === 'icmpv6' && e.key.dir === 'out' && e.key.saddr === a.ip6)
    assert.ok(echo, `an ICMPv6 echo flow in pn_snat6: ${JSON.stringify(flows)}`)
    assert.equal(echo.value.toAddr, n1.ip6)
    assert.ok(flows.some((e) => e.key.dir === 'in' && e.key.daddr === n1.ip6 && e.value.toAddr === a.ip6), 'and its reply side')
    // Pod to pod across nodes over IPv6 is never masqueraded (fd00:190::/32 is a non-masquerade CIDR).
    inNs(n1.ns, ['ip', '-6', 'route', 'add', n2.cidr6, 'via', n2.ip6])
    inNs(n2.ns, ['ip', '-6', 'route', 'add', n1.cidr6, 'via', n1.ip6])
    assert.ok(ping(a.ns, b.ip6, 2), 'pod a reaches pod b over IPv6')
    assert.ok(!snat6(n1).some((e) => e.key.daddr === b.ip6), 'no NAT entry for pod-to-pod traffic')
  })

  it('a flow from the node itself is not disturbed: it keeps its own IPv6 address and port beside the pods\' flows', async () => {
    const nodeFlow = new Promise<string>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', n1.ns, 'python3', script, 'client', 'tcp', OUTSIDE_IP6, '7600', '1', '4'], {stdio: ['ignore', 'pipe', 'pipe']})
      children.push(c)
      let out = ''
      c.stdout.on('data', (d) => (out += d))
      c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`node client exited ${code}`))))
    })
    await sleep(500)
    const r = tcp(a.ns, 200)
    assert.ok(r.seen.every(([ip]) => ip === n1.ip6), 'every pod flow has the node\'s IPv6 address')
    const ports = new Set(r.seen.map(([, p]) => p))
    assert.equal(ports.size, 200, 'distinct source ports')
    assert.ok([...ports].every((p) => p >= 61000 && p <= 65535), 'all from the masquerade range')
    const node = JSON.parse(await nodeFlow) as {seen: [string, number][]; local: number[]; again: [string, number][]}
    assert.deepEqual(node.seen[0], [n1.ip6, node.local[0]], 'the node flow keeps its own address and port')
    assert.deepEqual(node.again[0], node.seen[0], 'and still works after the pod flows')
    assert.ok(node.local[0] < 61000, 'the node picked an ephemeral port outside the masquerade range (ip_local_reserved_ports covers IPv6)')
    assert.ok(ping(n1.ns, OUTSIDE_IP6, 2), 'the node\'s own ping -6')
    assert.ok(!snat6(n1).some((e) => e.key.saddr === n1.ip6 && e.key.dir === 'out'), 'no NAT entry for the node\'s own flows')
  })

  it('entries expire: with 4 ports, a fifth IPv6 flow is dropped (counted) until the first ones time out and are reclaimed', async () => {
    await sleep(5500) // what the earlier tests left on n2 expires (UDP: 5 s, long enough that the five flows below come within it on a loaded machine)
    const before = metric(n2, 'DROP_NAT_NO_MAPPING')
    const got = [udp(b.ns), udp(b.ns), udp(b.ns), udp(b.ns)]
    assert.ok(got.every((g) => g.ip === n2.ip6), `4 flows translated: ${JSON.stringify(got)}`)
    assert.equal(new Set(got.map((g) => g.port)).size, 4)
    assert.deepEqual(udp(b.ns), {timeout: true}, 'a fifth flow finds no free port')
    assert.ok(metric(n2, 'DROP_NAT_NO_MAPPING') > before, 'the drop is counted')
    await sleep(5500)
    const again = udp(b.ns)
    assert.equal(again.ip, n2.ip6, 'after the timeout a new flow reclaims a port')
    assert.ok(again.port! >= 61000 && again.port! <= 61003)
  })

  it('TCP state and orphans over IPv6: closed connections free their ports after 10 s, orphan IN entries at once; an idle established one keeps its port', async () => {
    const flag = path.join(tmpDirs[0], 'release-v6')
    const hold = spawn('ip', ['netns', 'exec', c.ns, 'python3', script, 'client', 'tcphold', OUTSIDE_IP6, '7600', flag], {stdio: ['ignore', 'pipe', 'pipe']})
    children.push(hold)
    let held = ''
    hold.stdout.on('data', (d) => (held += d))
    const lines = async (n: number) => {
      for (let i = 0; i < 100 && held.split('\n').filter(Boolean).length < n; i++) await sleep(100)
      return held.split('\n').filter(Boolean).map((l) => JSON.parse(l) as [string, string])
    }
    const [[liveIp, livePortText]] = await lines(1)
    const livePort = Number(livePortText)
    assert.equal(liveIp, n3.ip6)
    const tcpClose = (n: number, how: string) =>
      JSON.parse(inNs(c.ns, ['python3', script, 'client', 'tcpclose', OUTSIDE_IP6, '7600', String(n), how])) as ([string, number] | null)[]
    const round1 = tcpClose(4, 'fin')
    assert.equal(round1.filter((r) => r !== null && r[0] === n3.ip6).length, 3, `3 free ports for 4 connections: ${JSON.stringify(round1)}`)
    assert.equal(round1[3], null, 'the 4th finds every port held (3 closing, 1 live)')
    const ins = () => snat6(n3).filter((e) => e.key.dir === 'in' && e.key.sport === 7600 && e.value.toAddr === c.ip6)
    assert.deepEqual(ins().map((e) => (e.value as {state?: string}).state).sort(), ['closing', 'closing', 'closing', 'established'])
    await sleep(11_500) // NAT_TCP_CLOSE_TIMEOUT
    const round2 = tcpClose(3, 'rst')
    assert.ok(round2.every((r) => r !== null && r[0] === n3.ip6 && r[1] !== livePort), `after the close timeout the ports are free again: ${JSON.stringify(round2)}`)
    // The three RST-closed flows hold their ports for 10 s more; made orphans (their IN entries
    // pointed at pod ports with no OUT entry, 2 s old) the ports are free at once.
    const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0'))
    const now = process.hrtime.bigint()
    round2.forEach((r, i) => {
      const key = encodeNat6Key({saddr: OUTSIDE_IP6, daddr: n3.ip6, sport: 7600, dport: r![1], proto: 'tcp', dir: 'in'})
      const value = encodeNat6Entry({lastSeenNs: now - 2_000_000_000n, packets: 1, toAddr: c.ip6, toPort: 1000 + i, flags: 0})
      inNs(n3.ns, ['bpftool', 'map', 'update', 'pinned', `/run/pn/bpffs/${n3.ns}/maps/pn_snat6`, 'key', 'hex', ...hex(key), 'value', 'hex', ...hex(value)])
    })
    const round3 = tcpClose(3, 'fin')
    assert.ok(round3.every((r) => r !== null && r[0] === n3.ip6), `the orphans' ports are taken over: ${JSON.stringify(round3)}`)
    writeFileSync(flag, '')
    const [, again] = await lines(2)
    assert.deepEqual([again[0], Number(again[1])], [n3.ip6, livePort], 'the idle established connection kept its port')
  })

  it('pn monitor shows the IPv6 translation: the pod source before SNAT on to-network, the node address before the reply was translated back', async () => {
    const mon = pnAsync(['monitor', '--json', '--duration', '4s', '--state-dir', n1.stateDir], {netns: n1.ns})
    await sleep(1500)
    assert.ok(ping(a.ns, OUTSIDE_IP6, 2))
    const out = await mon
    const events = out.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    const snat = events.find((e) => e.observationPoint === 'to-network' && e.nat?.kind === 'snat' && e.protocol === 'icmpv6')
    assert.ok(snat, `a to-network event with the SNAT: ${out.stdout.slice(0, 2000)}`)
    assert.equal(snat.srcIp, n1.ip6)
    assert.equal(snat.nat.ip, a.ip6)
    assert.equal(snat.identities, undefined, 'the address words are not read as identities')
    const rev = events.find((e) => e.observationPoint === 'from-network' && e.nat?.kind === 'rev-snat' && e.protocol === 'icmpv6')
    assert.ok(rev, 'a from-network event with the reverse translation')
    assert.equal(rev.dstIp, a.ip6)
    assert.equal(rev.nat.ip, n1.ip6)
  })

  it('a pn_node_config pinned with the older 36-byte layout is replaced on load, and IPv6 masquerade works after it', () => {
    const root = ok(n1.run(['node', 'show']), 'node show').node.bpffsRoot as string
    rmSync(path.join(root, 'progs'), {recursive: true})
    const pinned = path.join(root, 'maps', 'pn_node_config')
    rmSync(pinned)
    execFileSync('bpftool', ['map', 'create', pinned, 'type', 'array', 'key', '4', 'value', '36', 'entries', '1', 'name', 'pn_node_config'])
    const r = ok(n1.run(['bpf', 'load', '--host']), 'bpf load --host')
    assert.deepEqual(r.replacedMaps, ['pn_node_config'])
    assert.equal(ok(n1.run(['bpf', 'map', 'dump', 'pn_node_config']), 'dump').entries[0].value.natIp6, n1.ip6)
    // The pod's filter still names the old program: load it again, as after any host reload.
    ok(n1.run(['bpf', 'load', '--container-id', a.ns]), 'bpf load pod a')
    assert.equal(udp(a.ns).ip, n1.ip6, 'masqueraded again')
  })

  it('iptables mode on a dual-stack node: ip6tables gets the same chain and MASQUERADE rule; reset removes both', () => {
    ok(n2.run(['node', 'init', '--name', n2.ns, '--device', 'eth0', '--masquerade', 'iptables']), 'node init iptables')
    const rules6 = inNs(n2.ns, ['ip6tables', '-t', 'nat', '-S'])
    assert.equal(rules6.split('\n').filter((l) => l.includes('-j MASQUERADE')).length, 1, rules6)
    assert.match(rules6, new RegExp(`-A POSTROUTING -s ${n2.cidr6.replace(/\//g, '\\/')} -j PN-MASQUERADE`))
    assert.match(rules6, /-A PN-MASQUERADE -d fd00:190::\/32 -j RETURN/)
    assert.doesNotMatch(rules6, /10\.190/, 'no IPv4 CIDR in ip6tables')
    assert.equal(inNs(n2.ns, ['iptables', '-t', 'nat', '-S']).split('\n').filter((l) => l.includes('-j MASQUERADE')).length, 1, 'and the IPv4 one')
    assert.equal(tcp(b.ns, 1).seen[0][0], n2.ip6, 'ip6tables MASQUERADE gives the node\'s IPv6 address')
    assert.ok(ping(b.ns, OUTSIDE_IP6, 2))
    const show = ok(n2.run(['node', 'show']), 'node show')
    assert.ok(show.checks.find((c: {check: string}) => c.check === 'masquerade ip6tables')?.ok, JSON.stringify(show.checks))
    const reset = ok(n2.run(['node', 'reset']), 'node reset')
    assert.ok(reset.removed.includes('iptables nat chain PN-MASQUERADE'), JSON.stringify(reset.removed))
    assert.doesNotMatch(inNs(n2.ns, ['ip6tables', '-t', 'nat', '-S']), /PN-MASQUERADE|MASQUERADE/)
    assert.doesNotMatch(inNs(n2.ns, ['iptables', '-t', 'nat', '-S']), /PN-MASQUERADE|MASQUERADE/)
  })
})
