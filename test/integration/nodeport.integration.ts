/**
 * NodePort and external IPs on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc── node n1 ──eth0─┐
 *                                  ├─ switch ─── outside (the client; no route to any pod CIDR)
 *   [pod c]──lxc── node n2 ──eth0─┘
 *
 * Both nodes apply the same service file. Each backend pod runs a small python3 server that
 * answers every line with the client address it saw and its own address, so a test can tell
 * which backend answered and whether the client's address was kept.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const SUBNET = '172.30.26'
const OUTSIDE_IP = `${SUBNET}.100`
const EXTERNAL_IP = '192.0.2.50'

/**
 * server PORT OWN_IP     → TCP and UDP on PORT: answer "CLIENT_IP CLIENT_PORT OWN_IP" to every line / datagram
 * tcp IP PORT [HOLD]     → one connection; print the first answer as JSON; HOLD: wait for a line on stdin, ask again
 * udp IP PORT            → one datagram; print the answer as JSON (or {"timeout": true})
 */
const PEER_PY = String.raw`
import asyncio, json, socket, sys
mode = sys.argv[1]
if mode == 'server':
    port, own = int(sys.argv[2]), sys.argv[3]
    class U(asyncio.DatagramProtocol):
        def connection_made(self, t): self.t = t
        def datagram_received(self, d, peer):
            self.t.sendto(('%s %d %s\n' % (peer[0], peer[1], own)).encode(), peer)
    async def handle(r, w):
        peer, me = w.get_extra_info('peername'), w.get_extra_info('sockname')
        try:
            while await r.readline():
                w.write(('%s %d %s\n' % (peer[0], peer[1], me[0])).encode()); await w.drain()
        except Exception:
            pass
        w.close()
    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(U, local_addr=('0.0.0.0', port))
        srv = await asyncio.start_server(handle, '0.0.0.0', port)
        print('ready', flush=True)
        await srv.serve_forever()
    asyncio.run(main())
ip, port = sys.argv[2], int(sys.argv[3])
def parse(line):
    a, p, me = line.split()
    return {'client': a, 'clientPort': int(p), 'backend': me}
if mode == 'udp':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
    s.sendto(b'x\n', (ip, port))
    try:
        print(json.dumps(parse(s.recv(2048).decode())))
    except socket.timeout:
        print(json.dumps({'timeout': True}))
    sys.exit(0)
try:
    c = socket.create_connection((ip, port), timeout=2)
except OSError:
    print(json.dumps({'timeout': True})); sys.exit(0)
c.settimeout(10)
f = c.makefile('r')
c.sendall(b'x\n')
line = f.readline()
if not line:
    print(json.dumps({'timeout': True})); sys.exit(0)
print(json.dumps(parse(line)), flush=True)
if len(sys.argv) > 4:
    sys.stdin.readline()
    c.sendall(b'again\n')
    print(json.dumps(parse(f.readline())), flush=True)
`

interface Node {
  ns: string
  stateDir: string
  cidr: string
  ip: string
  run: (args: string[], input?: string) => ReturnType<typeof pn>
}

interface Pod {
  ns: string
  ip: string
}

type Answer = {client?: string; clientPort?: number; backend?: string; timeout?: boolean}

function metric(node: Node, reason: string, point: string): number {
  const res = ok(node.run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
  return (res.entries as {key: {reason: string; point: string}; value: {packets: number}}[])
    .filter((e) => e.key.reason === reason && e.key.point === point)
    .reduce((n, e) => n + e.value.packets, 0)
}

describe('NodePort and external IPs (root, netns)', function () {
  this.timeout(240_000)
  const tmpDirs: string[] = []
  const children: ChildProcess[] = []
  let sw: string
  let outside: string
  let script: string
  let n1: Node
  let n2: Node
  let a: Pod
  let c: Pod

  function attach(ns: string, ip: string): void {
    const port = `npsw${ns.slice(-6)}`.slice(0, 15)
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  }

  function makeNode(idx: number): Node {
    const ns = createNamespace(`npn${idx}`).name
    const ip = `${SUBNET}.${idx}`
    attach(ns, ip)
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-np-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${190 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, ip, run: (args, input) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns, input})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr]), `node init ${ns}`)
    return node
  }

  async function makePod(node: Node, host: number): Promise<Pod> {
    const ns = createNamespace('npp').name
    const ip = node.cidr.replace(/\.0\/24$/, `.${host}`)
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    const child = spawn('ip', ['netns', 'exec', ns, 'python3', script, 'server', '8080', ip], {stdio: ['ignore', 'pipe', 'pipe']})
    children.push(child)
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('ready') && resolve())
      child.once('exit', (code) => reject(new Error(`server in ${ns} exited ${code}`)))
    })
    return {ns, ip}
  }

  const tcp = (ip: string, port: number): Answer => JSON.parse(inNs(outside, ['python3', script, 'tcp', ip, String(port)]))
  const udp = (ip: string, port: number): Answer => JSON.parse(inNs(outside, ['python3', script, 'udp', ip, String(port)]))

  /** The same service file on both nodes. */
  function applyBoth(services: unknown[]): void {
    for (const n of [n1, n2]) ok(n.run(['service', 'apply', '-'], JSON.stringify(services)), `service apply on ${n.ns}`)
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-np-py-'))
    tmpDirs.push(dir)
    script = path.join(dir, 'peer.py')
    writeFileSync(script, PEER_PY)
    sw = createNamespace('npsw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    outside = createNamespace('npout').name
    attach(outside, OUTSIDE_IP)
    n1 = makeNode(1)
    n2 = makeNode(2)
    // Native routing between the nodes (no BGP here): each routes the other's pod CIDR.
    inNs(n1.ns, ['ip', 'route', 'add', n2.cidr, 'via', n2.ip])
    inNs(n2.ns, ['ip', 'route', 'add', n1.cidr, 'via', n1.ip])
    // The external IP is routed to n1 by the outside network.
    inNs(outside, ['ip', 'route', 'add', `${EXTERNAL_IP}/32`, 'via', n1.ip])
    a = await makePod(n1, 10)
    c = await makePod(n2, 10)
  })

  after(() => {
    for (const ch of children) ch.kill('SIGKILL')
    for (const n of [n1, n2]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
  })

  it('TCP and UDP from outside reach a NodePort on each node; a backend on the other node answers through SNAT to the node', () => {
    applyBoth([
      {frontend: '10.96.0.10:80/tcp', backends: [`${c.ip}:8080`], type: 'NodePort', nodePort: 30080},
      {frontend: '10.96.0.10:53/udp', backends: [`${c.ip}:8080`], type: 'NodePort', nodePort: 30053},
    ])
    // n1 has no local backend: the request is SNATed to n1 and sent to c on n2.
    const viaN1 = tcp(n1.ip, 30080)
    assert.deepEqual({client: viaN1.client, backend: viaN1.backend}, {client: n1.ip, backend: c.ip}, `via n1: ${JSON.stringify(viaN1)}`)
    const udpN1 = udp(n1.ip, 30053)
    assert.deepEqual({client: udpN1.client, backend: udpN1.backend}, {client: n1.ip, backend: c.ip}, `udp via n1: ${JSON.stringify(udpN1)}`)
    // n2 has the backend: delivered locally, the client's address kept.
    const viaN2 = tcp(n2.ip, 30080)
    assert.deepEqual({client: viaN2.client, backend: viaN2.backend}, {client: OUTSIDE_IP, backend: c.ip})
    const udpN2 = udp(n2.ip, 30053)
    assert.deepEqual({client: udpN2.client, backend: udpN2.backend}, {client: OUTSIDE_IP, backend: c.ip})
    const list = ok(n1.run(['service', 'list']), 'service list').map((s: {frontend: string}) => s.frontend)
    assert.ok(list.includes(`${n1.ip}:30080/tcp`) && list.includes(`${n1.ip}:30053/udp`), JSON.stringify(list))
  })

  it('an allocated nodePort is in 30000-32767, the same on both nodes and across re-applies', () => {
    const svc = [{frontend: '10.96.0.11:80/tcp', backends: [`${a.ip}:8080`], type: 'NodePort'}]
    applyBoth(svc)
    const port = (n: Node) => ok(n.run(['service', 'list']), 'list').map((s: {frontend: string}) => s.frontend).find((f: string) => f.startsWith(`${n.ip}:`))
    const p1 = Number(/:(\d+)\//.exec(port(n1))![1])
    assert.ok(p1 >= 30000 && p1 <= 32767, `allocated ${p1}`)
    assert.equal(port(n2), `${n2.ip}:${p1}/tcp`, 'the same port on n2')
    applyBoth(svc)
    assert.equal(port(n1), `${n1.ip}:${p1}/tcp`, 'stable across re-applies')
    // A saved list carries the NodePort fields and marks the opened frontends: applied again, nothing changes.
    const saved = n1.run(['service', 'list'])
    const entry = saved.json!.result.find((e: {frontend: string}) => e.frontend === '10.96.0.11:80/tcp')
    assert.deepEqual({type: entry.type, nodePort: entry.nodePort}, {type: 'NodePort', nodePort: p1})
    assert.equal(saved.json!.result.find((e: {frontend: string}) => e.frontend === `${n1.ip}:${p1}/tcp`).via, '10.96.0.11:80/tcp')
    assert.equal(ok(n1.run(['service', 'apply', '-'], saved.stdout), 'apply the saved list').changed, false)
    assert.equal(tcp(n2.ip, p1).backend, a.ip, 'and it works through n2 to the backend on n1')
  })

  it('externalTrafficPolicy Local: only local backends, the client IP kept; a node without one drops, counted', () => {
    applyBoth([{frontend: '10.96.0.12:80/tcp', backends: [`${c.ip}:8080`], type: 'NodePort', nodePort: 30081, externalTrafficPolicy: 'Local'}])
    const r = tcp(n2.ip, 30081)
    assert.deepEqual({client: r.client, backend: r.backend}, {client: OUTSIDE_IP, backend: c.ip})
    const before = metric(n1, 'DROP_NO_SERVICE', 'from-netdev')
    assert.deepEqual(tcp(n1.ip, 30081), {timeout: true}, 'n1 has no local backend')
    assert.ok(metric(n1, 'DROP_NO_SERVICE', 'from-netdev') > before, 'the drop is counted on n1')
  })

  it('an external IP routed to a node reaches the service at its port', () => {
    applyBoth([{frontend: '10.96.0.13:8443/tcp', backends: [`${a.ip}:8080`, `${c.ip}:8080`], externalIPs: [EXTERNAL_IP]}])
    const seen = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const r = tcp(EXTERNAL_IP, 8443)
      assert.ok(r.backend === a.ip || r.backend === c.ip, JSON.stringify(r))
      seen.add(r.backend!)
    }
    assert.equal(seen.size, 2, 'both backends answer (one local, one through SNAT)')
  })

  it('an established connection survives the removal of another backend', async () => {
    const svc = (backends: string[]) => [{frontend: '10.96.0.14:80/tcp', backends, type: 'NodePort', nodePort: 30090}]
    applyBoth(svc([`${a.ip}:8080`, `${c.ip}:8080`]))
    const child = spawn('ip', ['netns', 'exec', outside, 'python3', script, 'tcp', n1.ip, '30090', 'hold'], {stdio: ['pipe', 'pipe', 'pipe']})
    children.push(child)
    const lines: string[] = []
    let buf = ''
    let closed = false
    child.once('close', () => (closed = true))
    // The next line the client printed; fails only once its output is closed without one.
    const nextLine = () => new Promise<string>((resolve, reject) => {
      const poll = setInterval(() => {
        if (lines.length > 0) {
          clearInterval(poll)
          resolve(lines.shift()!)
        } else if (closed) {
          clearInterval(poll)
          reject(new Error(`client ended without another line (${buf})`))
        }
      }, 20)
    })
    child.stdout.on('data', (d) => {
      buf += d
      const parts = buf.split('\n')
      buf = parts.pop()!
      lines.push(...parts.filter(Boolean))
    })
    const first = JSON.parse(await nextLine()) as Answer
    assert.ok(first.backend === a.ip || first.backend === c.ip, JSON.stringify(first))
    const other = first.backend === a.ip ? c.ip : a.ip
    const stays = first.backend!
    applyBoth(svc([`${stays}:8080`]))
    assert.ok(!ok(n1.run(['service', 'list']), 'list').find((s: {frontend: string}) => s.frontend === `${n1.ip}:30090/tcp`).backends.some((b: {address: string}) => b.address.startsWith(other)))
    child.stdin.write('go\n')
    const again = JSON.parse(await nextLine()) as Answer
    assert.equal(again.backend, stays, `the same backend answers on the same connection: ${JSON.stringify({first, again})}`)
    assert.equal(again.clientPort, first.clientPort, JSON.stringify({first, again}))
  })

  it('pn service add takes the same as flags; bad values are PN_SERVICE_INVALID', () => {
    const r = ok(n1.run(['service', 'add', '10.96.0.15:80', '--backend', `${a.ip}:8080`, '--type', 'NodePort', '--node-port', '30100']), 'service add')
    assert.equal(r.changed, true)
    assert.equal(tcp(n1.ip, 30100).backend, a.ip)
    const bad = n1.run(['service', 'add', '10.96.0.16:80', '--backend', `${a.ip}:8080`, '--type', 'NodePort', '--node-port', '80'])
    assert.equal(bad.json?.error?.code, 'PN_SERVICE_INVALID')
    const noType = n1.run(['service', 'add', '10.96.0.16:80', '--node-port', '30101'])
    assert.equal(noType.json?.error?.code, 'PN_SERVICE_INVALID')
    ok(n1.run(['service', 'delete', '10.96.0.15:80/tcp']), 'service delete')
    const left = ok(n1.run(['service', 'list']), 'list').map((s: {frontend: string}) => s.frontend)
    assert.ok(!left.includes(`${n1.ip}:30100/tcp`), 'deleting the service removes its NodePort frontend too')
  })
})
