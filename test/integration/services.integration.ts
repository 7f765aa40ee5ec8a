/**
 * Service load balancing on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [client a]──lxc─┐                              ┌─lxc──[backend c]
 *   [backend b]─lxc─┤ node 1 ──eth0── switch ──eth0── node 2
 *
 * The service lives on node 1 (where the client is). b answers from the same node (reply leaves
 * b's lxc: reverse NAT in from-container), c from node 2 (reply enters node 1's uplink: reverse
 * NAT in from-netdev). Servers and clients are tiny python scripts: each server answers with
 * its own name, so the client knows which backend it reached, and reports the peer it saw.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {PN_BIN, ok, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const BPFFS = '/run/pn/bpffs'

/** TCP: greet with "<name> <peer ip>:<port>", then echo lines. UDP: answer every datagram the same way. */
const SERVER = `
import socket, sys, threading
port, name = int(sys.argv[1]), sys.argv[2]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(('0.0.0.0', port)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', port))
def conn(c, a):
    try:
        c.sendall(f"{name} {a[0]}:{a[1]}\\n".encode())
        f = c.makefile('rb')
        for line in f:
            c.sendall(line)
    except OSError:
        pass
    c.close()
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(f"{name} {a[0]}:{a[1]}\\n".encode(), a)
threading.Thread(target=udp, daemon=True).start()
print('ready', flush=True)
while True:
    c, a = t.accept(); threading.Thread(target=conn, args=(c, a), daemon=True).start()
`

/** N fresh connections (or datagrams from fresh sockets); JSON {counts, peers, failures}. */
const CLIENT = `
import socket, sys, json, collections
proto, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
nocheck = len(sys.argv) > 5 and sys.argv[5] == 'nocheck'
counts = collections.Counter(); peers = set(); failures = 0
for i in range(n):
    try:
        if proto == 'tcp':
            s = socket.create_connection((host, port), timeout=2)
            peers.add('%s:%d' % s.getpeername()); d = s.makefile().readline(); s.close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            if nocheck: s.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK: UDP checksum 0
            s.connect((host, port)); s.send(b'x'); d, a = s.recvfrom(200); d = d.decode(); peers.add('%s:%d' % a); s.close()
        counts[d.split()[0]] += 1
    except OSError:
        failures += 1
print(json.dumps({'counts': counts, 'peers': sorted(peers), 'failures': failures}))
`

/** One long-lived connection: prints the backend's greeting, then echoes a line per stdin line. */
const HOLD = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile('rb')
print('%s %s:%d' % ((f.readline().decode().strip(),) + s.getpeername()), flush=True)
for line in sys.stdin:
    try:
        s.sendall(line.encode()); print('echo ' + f.readline().decode().strip(), flush=True)
    except OSError as e:
        print('error %s' % e, flush=True)
`

interface Node {
  ns: string
  stateDir: string
  cidr: string
  uplinkIp: string
  run: (args: string[], input?: string) => ReturnType<typeof pn>
}

interface ClientResult {
  counts: Record<string, number>
  peers: string[]
  failures: number
}

describe('services: load balancing in BPF (root, netns)', function () {
  this.timeout(180_000)
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-svc-'))
  const children: ChildProcess[] = []
  let n1: Node
  let n2: Node
  const pods: Record<string, {ns: string; ip: string}> = {}

  function makeNode(sw: string, idx: number): Node {
    const ns = createNamespace(`sn${idx}`).name
    const port = `sw${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    const ip = `172.31.9.${idx}`
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    const stateDir = path.join(tmp, `n${idx}`)
    const cidr = `10.${160 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, uplinkIp: ip, run: (args, input) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns, input})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'bpf']), `node init ${ns}`)
    return node
  }

  function makePod(node: Node, name: string, ip: string): void {
    const ns = createNamespace(`s${name}`).name
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    pods[name] = {ns, ip}
  }

  async function startServer(pod: string, name: string, port: number): Promise<void> {
    const ch = spawn('ip', ['netns', 'exec', pods[pod].ns, 'python3', '-u', path.join(tmp, 'server.py'), String(port), name], {stdio: ['ignore', 'pipe', 'inherit']})
    children.push(ch)
    await new Promise<void>((resolve, reject) => {
      ch.stdout!.once('data', () => resolve())
      ch.once('exit', (c) => reject(new Error(`server ${name} exited ${c}`)))
    })
  }

  function client(pod: string, proto: 'tcp' | 'udp', host: string, port: number, n: number, extra: string[] = []): ClientResult {
    const out = inNs(pods[pod].ns, ['python3', path.join(tmp, 'client.py'), proto, host, String(port), String(n), ...extra])
    return JSON.parse(out) as ClientResult
  }

  function metric(node: Node, reason: string): number {
    const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
    return (res.entries as {key: {reason: string}; value: {packets: number}}[]).filter((e) => e.key.reason === reason).reduce((n, e) => n + e.value.packets, 0)
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    writeFileSync(path.join(tmp, 'server.py'), SERVER)
    writeFileSync(path.join(tmp, 'client.py'), CLIENT)
    writeFileSync(path.join(tmp, 'hold.py'), HOLD)
    const sw = createNamespace('ssw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    n1 = makeNode(sw, 1)
    n2 = makeNode(sw, 2)
    inNs(n1.ns, ['ip', 'route', 'add', n2.cidr, 'via', n2.uplinkIp])
    inNs(n2.ns, ['ip', 'route', 'add', n1.cidr, 'via', n1.uplinkIp])
    makePod(n1, 'a', '10.161.0.10')
    makePod(n1, 'b', '10.161.0.11')
    makePod(n2, 'c', '10.162.0.10')
    await startServer('b', 'b', 8080)
    await startServer('c', 'c', 8080)
    await startServer('a', 'a', 8080)
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) ch.kill()
    for (const n of [n1, n2]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    rmSync(tmp, {recursive: true, force: true})
    for (const n of [n1, n2]) if (n) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  /** pn_lb4_gate slot 0: whether the datapath's service hooks run on this node (lb.h). */
  function gateOpen(node: Node): boolean {
    const res = ok(node.run(['bpf', 'map', 'dump', 'pn_lb4_gate']), 'map dump pn_lb4_gate')
    const entries = res.entries as {key: {index: number}; value: {enabled: boolean}}[]
    assert.equal(entries.length, 1)
    return entries[0].value.enabled
  }

  it('without services the hooks are gated off (pn_lb4_gate 0) and pod traffic flows untranslated', () => {
    assert.equal(gateOpen(n1), false)
    assert.equal(gateOpen(n2), false)
    const res = client('a', 'tcp', pods.c.ip, 8080, 3)
    assert.equal(res.failures, 0)
    assert.deepEqual(res.counts, {c: 3})
    assert.deepEqual(res.peers, [`${pods.c.ip}:8080`])
  })

  it('TCP: 300 new connections to VIP:80 reach both backends (same node and other node); the client sees only the VIP', () => {
    const r = ok(n1.run(['service', 'add', '10.96.0.10:80', '--backend', `${pods.b.ip}:8080`, '--backend', `${pods.c.ip}:8080`]), 'service add')
    assert.equal(r.changed, true)
    // The first service opened the gate on its node only.
    assert.equal(gateOpen(n1), true)
    assert.equal(gateOpen(n2), false)
    assert.deepEqual(r.diff.added.map((x: {frontend: string}) => x.frontend), ['10.96.0.10:80/tcp'])
    const res = client('a', 'tcp', '10.96.0.10', 80, 300)
    assert.equal(res.failures, 0)
    assert.ok(res.counts.b > 0 && res.counts.c > 0, JSON.stringify(res.counts))
    assert.equal(res.counts.b + res.counts.c, 300)
    assert.deepEqual(res.peers, ['10.96.0.10:80'])
  })

  it('UDP: datagrams to VIP:53/udp reach both backends, replies come from the VIP; a zero UDP checksum works too', () => {
    ok(n1.run(['service', 'add', '10.96.0.10:53/udp', '--backend', `${pods.b.ip}:8080`, '--backend', `${pods.c.ip}:8080`]), 'service add udp')
    const res = client('a', 'udp', '10.96.0.10', 53, 100)
    assert.equal(res.failures, 0)
    assert.ok(res.counts.b > 0 && res.counts.c > 0, JSON.stringify(res.counts))
    assert.deepEqual(res.peers, ['10.96.0.10:53'])
    const nocheck = client('a', 'udp', '10.96.0.10', 53, 40, ['nocheck'])
    assert.equal(nocheck.failures, 0)
    assert.ok(nocheck.counts.b > 0 && nocheck.counts.c > 0, JSON.stringify(nocheck.counts))
  })

  it('service list shows frontends, backends and counters; conntrack entries are visible with pn bpf map dump pn_ct4', () => {
    const list = ok(n1.run(['service', 'list']), 'service list')
    const tcp = list.find((s: {frontend: string}) => s.frontend === '10.96.0.10:80/tcp')
    assert.deepEqual(tcp.backends.map((b: {address: string}) => b.address), [`${pods.b.ip}:8080`, `${pods.c.ip}:8080`])
    assert.ok(tcp.stats.connections >= 300, JSON.stringify(tcp.stats))
    assert.ok(tcp.stats.packets > 300 && tcp.stats.replies > 300, JSON.stringify(tcp.stats))
    const ct = ok(n1.run(['bpf', 'map', 'dump', 'pn_ct4']), 'dump pn_ct4').entries as {key: Record<string, unknown>; value: Record<string, unknown>}[]
    const fwd = ct.filter((e) => e.key.dir === 'service' && e.key.daddr === '10.96.0.10' && e.key.dport === 80 && e.key.saddr === pods.a.ip)
    const rep = ct.filter((e) => e.key.dir === 'reply' && e.value.vip === '10.96.0.10' && e.key.daddr === pods.a.ip)
    assert.ok(fwd.length >= 290, `forward entries: ${fwd.length}`)
    assert.ok(rep.some((e) => e.key.saddr === pods.b.ip) && rep.some((e) => e.key.saddr === pods.c.ip))
    const text = pn(['bpf', 'map', 'dump', 'pn_ct4', '--state-dir', n1.stateDir], {netns: n1.ns})
    assert.match(text.stdout, /dir=service .*backendId=\d+/)
  })

  it('a direct connection reusing the tuple of an earlier service flow is not translated', () => {
    // Same source port twice (the kernel's pick, then that port again): first to the VIP, then
    // straight to the backend it got (RST on close, so no TIME_WAIT blocks the port). The
    // backend's SYN-ACK must not become the VIP's.
    const script = [
      'import socket, struct',
      'def conn(dst, port, sport):',
      '    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
      "    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))",
      `    s.bind(('${pods.a.ip}', sport)); sport = s.getsockname()[1]; s.settimeout(3); s.connect((dst, port))`,
      '    g = s.makefile().readline().split()[0]; p = s.getpeername(); s.close(); return g, p, sport',
      // Port 0 first: a fixed port can still be held in TIME_WAIT by an earlier test's client.
      "g, _, sport = conn('10.96.0.10', 80, 0)",
      `g2, p2, _ = conn({'b': '${pods.b.ip}', 'c': '${pods.c.ip}'}[g], 8080, sport)`,
      "print(g, g2, '%s:%d' % p2)",
    ].join('\n')
    const [first, second, peer] = inNs(pods.a.ns, ['python3', '-c', script]).trim().split(' ')
    assert.equal(second, first)
    assert.equal(peer, `${first === 'b' ? pods.b.ip : pods.c.ip}:8080`)
  })

  it('an update keeps an established connection to a remaining backend; the removed backend gets no new flows', async () => {
    // Hold connections until one lands on each backend.
    const held: {ch: ChildProcess; backend: string; lines: string[]}[] = []
    for (let i = 0; i < 30 && !(held.some((h) => h.backend === 'b') && held.some((h) => h.backend === 'c')); i++) {
      const ch = spawn('ip', ['netns', 'exec', pods.a.ns, 'python3', '-u', path.join(tmp, 'hold.py'), '10.96.0.10', '80'], {stdio: ['pipe', 'pipe', 'inherit']})
      children.push(ch)
      const lines: string[] = []
      let partial = ''
      ch.stdout!.setEncoding('utf8').on('data', (d: string) => {
        const parts = (partial + d).split('\n')
        partial = parts.pop()!
        lines.push(...parts)
      })
      for (let w = 0; w < 50 && lines.length === 0; w++) await new Promise((r) => setTimeout(r, 100))
      assert.ok(lines.length > 0, 'held connection greeted')
      assert.match(lines[0], / 10\.96\.0\.10:80$/)
      held.push({ch, backend: lines[0].split(' ')[0], lines})
    }
    const onC = held.find((h) => h.backend === 'c')!
    const onB = held.find((h) => h.backend === 'b')!
    assert.ok(onC && onB, 'held connections on both backends')
    // Remove b: c stays.
    const r = ok(n1.run(['service', 'add', '10.96.0.10:80/tcp', '--backend', `${pods.c.ip}:8080`]), 'service update')
    assert.equal(r.diff.updated.length, 1)
    onC.ch.stdin!.write('still-there\n')
    for (let w = 0; w < 50 && !onC.lines.some((l) => l.startsWith('echo')); w++) await new Promise((res) => setTimeout(res, 100))
    assert.ok(onC.lines.includes('echo still-there'), `established connection to c survived: ${onC.lines.join(' | ')}`)
    const res = client('a', 'tcp', '10.96.0.10', 80, 60)
    assert.equal(res.failures, 0)
    assert.deepEqual(res.counts, {c: 60}, 'new connections only go to the remaining backend')
    for (const h of held) h.ch.stdin!.end()
  })

  it('a service with no backends drops (DROP_NO_SERVICE counted) and never leaks to the VIP', () => {
    ok(n1.run(['service', 'add', '10.96.0.20:80']), 'service add without backends')
    const before = metric(n1, 'DROP_NO_SERVICE')
    const res = client('a', 'tcp', '10.96.0.20', 80, 2)
    assert.equal(res.failures, 2)
    assert.ok(metric(n1, 'DROP_NO_SERVICE') - before >= 2)
  })

  it('hairpin: a pod reaching a service whose backend is itself works, and sees the VIP', () => {
    ok(n1.run(['service', 'add', '10.96.0.30:80', '--backend', `${pods.a.ip}:8080`]), 'service add hairpin')
    const res = client('a', 'tcp', '10.96.0.30', 80, 20)
    assert.equal(res.failures, 0)
    assert.deepEqual(res.counts, {a: 20})
    assert.deepEqual(res.peers, ['10.96.0.30:80'])
    const udp = (ok(n1.run(['service', 'add', '10.96.0.30:80/udp', '--backend', `${pods.a.ip}:8080`]), 'hairpin udp'), client('a', 'udp', '10.96.0.30', 80, 5))
    assert.equal(udp.failures, 0)
  })

  it('deleting the service makes the VIP unreachable again', () => {
    const r = ok(n1.run(['service', 'delete', '10.96.0.10:80']), 'service delete')
    assert.deepEqual(r.frontends, ['10.96.0.10:80/tcp'])
    assert.equal(client('a', 'tcp', '10.96.0.10', 80, 2).failures, 2)
    // Never closed again: flows of deleted services may still have conntrack entries.
    assert.equal(gateOpen(n1), true)
    const again = ok(n1.run(['service', 'delete', '10.96.0.10:80/tcp']), 'service delete again')
    assert.equal(again.changed, false)
  })

  it('apply: --dry-run prints the diff and changes nothing; apply makes the table exactly the file; the same file again changes nothing', () => {
    const file = path.join(tmp, 'services.json')
    const want = [
      {frontend: '10.96.1.1:80/tcp', backends: [`${pods.b.ip}:8080`, `${pods.c.ip}:8080`]},
      {frontend: '10.96.0.10:53/udp', backends: [`${pods.c.ip}:8080`]},
    ]
    writeFileSync(file, JSON.stringify(want))
    const dry = ok(n1.run(['service', 'apply', file, '--dry-run']), 'apply --dry-run')
    assert.equal(dry.dryRun, true)
    assert.deepEqual(dry.diff.added.map((x: {frontend: string}) => x.frontend), ['10.96.1.1:80/tcp'])
    assert.deepEqual(dry.diff.updated.map((x: {frontend: string}) => x.frontend), ['10.96.0.10:53/udp'])
    assert.equal(dry.diff.removed.length, 3) // 10.96.0.20:80/tcp and both hairpin services
    assert.equal(client('a', 'tcp', '10.96.1.1', 80, 2).failures, 2, 'dry run wrote nothing')
    const r = ok(n1.run(['service', 'apply', '-'], JSON.stringify(want)), 'apply from stdin')
    assert.equal(r.changed, true)
    const list = ok(n1.run(['service', 'list']), 'list').map((s: {frontend: string}) => s.frontend)
    assert.deepEqual(list, ['10.96.0.10:53/udp', '10.96.1.1:80/tcp'])
    const res = client('a', 'tcp', '10.96.1.1', 80, 100)
    assert.equal(res.failures, 0)
    assert.ok(res.counts.b > 0 && res.counts.c > 0)
    assert.deepEqual(client('a', 'udp', '10.96.0.10', 53, 20).counts, {c: 20})
    const again = ok(n1.run(['service', 'apply', file]), 'apply again')
    assert.equal(again.changed, false)
    assert.equal(again.diff.unchanged, 2)
    // What `service list --json` printed is an apply file: fed back, it changes nothing.
    const listed = path.join(tmp, 'listed.json')
    writeFileSync(listed, n1.run(['service', 'list']).stdout)
    const back = ok(n1.run(['service', 'apply', listed]), 'apply the list output')
    assert.deepEqual([back.changed, back.diff.unchanged], [false, 2])
    // Backends no service lists any more are gone from the backends map.
    const backends = ok(n1.run(['bpf', 'map', 'dump', 'pn_lb4_backends']), 'dump backends').entries as {value: {ip: string; proto: string}}[]
    assert.deepEqual(backends.map((e) => `${e.value.ip}/${e.value.proto}`).sort(), [`${pods.b.ip}/tcp`, `${pods.c.ip}/tcp`, `${pods.c.ip}/udp`].sort())
  })

  it('refuses bad input with PN_SERVICE_* codes and leaves the table as it was', () => {
    const cases: [string[], string][] = [
      [['service', 'add', '10.96.0.1:99999', '--backend', '10.161.0.11:80'], 'PN_SERVICE_INVALID'],
      [['service', 'add', '10.96.0.1:80/sctp', '--backend', '10.161.0.11:80'], 'PN_SERVICE_INVALID'],
      [['service', 'add', '10.96.0.1:80', '--backend', 'nope:80'], 'PN_SERVICE_INVALID'],
      [['service', 'add', '10.96.0.1:80', '--backend', '10.161.0.11:80', '--backend', '10.161.0.11:80'], 'PN_SERVICE_INVALID'],
      [['service', 'add', '10.161.0.200:80', '--backend', '10.161.0.11:80'], 'PN_SERVICE_CONFLICT'],
      [['service', 'add', `${n1.uplinkIp}:80`, '--backend', '10.161.0.11:80'], 'PN_SERVICE_CONFLICT'],
    ]
    for (const [args, code] of cases) {
      const r = n1.run(args)
      assert.notEqual(r.status, 0, args.join(' '))
      assert.equal(r.json?.error?.code, code, `${args.join(' ')}: ${r.stdout}`)
      assert.ok(r.json?.error?.hint)
    }
    const bad = n1.run(['service', 'apply', '-'], JSON.stringify([{frontend: '10.96.9.9:80', backends: []}, {frontend: '10.161.0.5:80', backends: []}]))
    assert.equal(bad.json?.error?.code, 'PN_SERVICE_CONFLICT')
    const list = ok(n1.run(['service', 'list']), 'list').map((s: {frontend: string}) => s.frontend)
    assert.deepEqual(list, ['10.96.0.10:53/udp', '10.96.1.1:80/tcp'])
    assert.equal(tryInNs(pods.a.ns, ['true']).status, 0)
  })

  it('a pn killed mid-apply (with its map writer) leaves table and maps recoverable: the next apply ends exactly at its file', async function () {
    this.timeout(900_000) // some 30 pn runs of 1,200 services; slow on a loaded machine
    const before = ok(n2.run(['service', 'list']), 'list n2') as {frontend: string; backends: {address: string}[]}[]
    // Two tables of 1,200 services (every 5th with two backends), disjoint VIPs, shared backends
    // (small enough for the CLI helper's 1 MB output buffer when listed and dumped).
    const table = (second: number) =>
      Array.from({length: 1200}, (_, i) => ({
        frontend: `10.${second}.${i >> 8}.${i & 255}:80/${i % 7 === 0 ? 'udp' : 'tcp'}`,
        backends: [`10.200.${(i >> 8) & 3}.${i & 255}:8080`, ...(i % 5 === 0 ? [`10.201.0.${i & 255}:9090`] : [])],
      }))
    const files = {a: path.join(tmp, 'crash-a.json'), b: path.join(tmp, 'crash-b.json')}
    const want = {a: table(97), b: table(98)}
    writeFileSync(files.a, JSON.stringify(want.a))
    writeFileSync(files.b, JSON.stringify(want.b))
    const expectExactly = (w: typeof want.a, what: string) => {
      const list = ok(n2.run(['service', 'list']), `list ${what}`) as {frontend: string; backends: {address: string}[]}[]
      assert.deepEqual(list.map((s) => s.frontend).sort(), w.map((s) => s.frontend).sort(), `${what}: table`)
      const svcs = ok(n2.run(['bpf', 'map', 'dump', 'pn_lb4_services']), 'dump services').entries as {key: {vip: string; port: number; proto: string; slot: number}; value: {count?: number}}[]
      const slot0 = svcs.filter((e) => e.key.slot === 0).map((e) => `${e.key.vip}:${e.key.port}/${e.key.proto}`).sort()
      assert.deepEqual(slot0, w.map((s) => s.frontend).sort(), `${what}: slot-0 entries`)
      assert.equal(svcs.length, w.reduce((n, s) => n + s.backends.length, 0), `${what}: no stray bank entries`)
      const bes = ok(n2.run(['bpf', 'map', 'dump', 'pn_lb4_backends']), 'dump backends').entries as {value: {ip: string; port: number; proto: string}}[]
      const wantBes = new Set(w.flatMap((s) => s.backends.map((b) => `${b}/${s.frontend.split('/')[1]}`)))
      assert.deepEqual(bes.map((e) => `${e.value.ip}:${e.value.port}/${e.value.proto}`).sort(), [...wantBes].sort(), `${what}: backends`)
    }
    ok(n2.run(['service', 'apply', files.a]), 'apply a')
    for (const [i, delay] of [20, 90, 200, 400].entries()) {
      // Kill pn (and its process group) at some point of an apply.
      const from = i % 2 === 0 ? files.b : files.a
      const ch = spawn('ip', ['netns', 'exec', n2.ns, process.execPath, PN_BIN, 'service', 'apply', from, '--state-dir', n2.stateDir, '--json'], {detached: true, stdio: 'ignore'})
      await new Promise((r) => setTimeout(r, delay))
      try {
        process.kill(-ch.pid!, 'SIGKILL')
      } catch {
        // it had finished already
      }
      await new Promise((r) => (ch.exitCode === null && ch.signalCode === null ? ch.once('exit', r) : r(undefined)))
      // The next apply (of the other file, or the same) must end exactly at its file.
      const next = i % 3 === 0 ? from : from === files.a ? files.b : files.a
      ok(n2.run(['service', 'apply', next]), `apply after kill at ${delay} ms`)
      expectExactly(next === files.a ? want.a : want.b, `killed at ${delay} ms, then ${path.basename(next)}`)
    }
    // Deterministically the window between maps and table: maps at B, table at A, B pending.
    ok(n2.run(['service', 'apply', files.a]), 'apply a')
    const tableFile = path.join(n2.stateDir, 'services.bin')
    const saved = readFileSync(tableFile)
    ok(n2.run(['service', 'apply', files.b]), 'apply b')
    renameSync(tableFile, `${tableFile}.pending`)
    writeFileSync(tableFile, saved)
    const r = ok(n2.run(['service', 'apply', files.a]), 'apply a over a pending b')
    assert.equal(r.recovered, true)
    expectExactly(want.a, 'recovered from a pending table')
    ok(n2.run(['service', 'apply', '-'], JSON.stringify(before.map((s) => ({frontend: s.frontend, backends: s.backends.map((b) => b.address)})))), 'restore n2')
  })
})
