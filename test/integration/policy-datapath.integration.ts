/**
 * Policy enforcement on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc─┐
 *   [pod b]──lxc─┤ node 1 ──eth0── switch ──eth0── node 2 ──lxc──[pod d]
 *   [pod c]──lxc─┘
 *
 * Both nodes route in BPF (`--routing bpf`); node 1 carries the policies, node 2 only pod d,
 * whose identity node 1's pn_ipcache holds as a remote entry (as the cluster writes it).
 * The policy is hand-written `EndpointPolicy` values (no resolution), written by the datapath's
 * writer; the pods' identities are set in pn_ipcache the same way (a 256, b 257, c 258). Probes
 * are small python3 clients against a python3 echo server in b (TCP and UDP), with short
 * timeouts.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {mapPath, programPath, PROGRAMS, type ProgramName} from '../../src/datapath/bpf/bpffs.js'
import {decodePolicyEpKey, decodePolicyKey, encodeIpcacheInfo, encodeIpcacheKey} from '../../src/datapath/bpf/maps/index.js'
import {writeEndpointIdentity, writeEndpointPolicy, writeNodePolicy} from '../../src/datapath/bpf/policy.js'
import {applyOne} from '../../src/kernel/backend.js'
import {MapBackend} from '../../src/kernel/maps.js'
import type {EndpointPolicy, PolicyMapEntry} from '../../src/policy/types.js'
import {PN_BIN, ok, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, tryInNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const BPFFS = '/run/pn/bpffs'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** An echo server on TCP and UDP ports: a TCP peer gets its first bytes back, a datagram its copy. */
const SERVER = `
import selectors, socket, sys
sel = selectors.DefaultSelector()
for p in sys.argv[1].split(','):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(('0.0.0.0', int(p))); t.listen(64); sel.register(t, selectors.EVENT_READ, 'tcp')
for p in sys.argv[2].split(','):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(('0.0.0.0', int(p))); sel.register(u, selectors.EVENT_READ, 'udp')
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if key.data == 'udp':
            d, a = s.recvfrom(2048); s.sendto(d, a)
        else:
            c, _ = s.accept(); c.settimeout(2)
            try:
                c.sendall(c.recv(64))
            except OSError:
                pass
            c.close()
`

/** Exit 0 when the echo comes back within the timeout. argv: proto ip port [source port [source ip]]. */
const CLIENT = `
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
if proto == 'udp':
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if len(sys.argv) > 4:
    s.bind((sys.argv[5] if len(sys.argv) > 5 else '0.0.0.0', int(sys.argv[4])))
s.settimeout(0.8)
if proto == 'udp-refused':
    try:
        s.connect((ip, port)); s.send(b'pn'); s.recv(16); ok = False
    except ConnectionRefusedError:
        ok = True
    except OSError:
        ok = False
    sys.exit(0 if ok else 1)
try:
    if proto == 'tcp':
        s.connect((ip, port)); s.sendall(b'pn'); ok = s.recv(2) == b'pn'
    else:
        s.sendto(b'pn', (ip, port)); ok = s.recvfrom(16)[0] == b'pn'
except OSError:
    ok = False
sys.exit(0 if ok else 1)
`

interface Pod {
  ns: string
  ip: string
  endpointId: number
}

describe('policy datapath (root, netns)', function () {
  this.timeout(180_000)
  const kernel = new MapBackend()
  const children: ChildProcess[] = []
  let stateDir: string
  let scripts: string
  let nodeNs: string
  let node2: {ns: string; stateDir: string} | undefined
  let root: string
  let a: Pod
  let b: Pod
  let c: Pod
  let d: Pod
  let progIds: Record<string, number>
  const run = (args: string[]) => pn([...args, '--state-dir', stateDir, '--json'], {netns: nodeNs})

  const probe = (from: Pod, proto: 'tcp' | 'udp' | 'udp-refused', to: Pod, port: number, sport?: number): boolean =>
    tryInNs(from.ns, ['python3', path.join(scripts, 'client.py'), proto, to.ip, String(port), ...(sport ? [String(sport)] : [])]).status === 0

  function policyDrops(): number {
    const res = ok(run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
    return (res.entries as {key: {reason: string}; value: {packets: number}}[]).filter((e) => e.key.reason === 'DROP_POLICY_DENIED').reduce((n, e) => n + e.value.packets, 0)
  }

  async function programIds(): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    for (const p of Object.keys(PROGRAMS) as ProgramName[]) {
      const {prog} = await applyOne(kernel, {kind: 'prog.get', pinned: programPath(root, p)})
      assert.ok(prog, `program ${p} pinned`)
      out[p] = prog.id
    }
    return out
  }

  const entry = (over: Partial<PolicyMapEntry>): PolicyMapEntry => ({direction: 'ingress', identity: 256, protocol: 6, port: 80, endPort: 80, ...over})
  const policy = (pod: Pod, over: Partial<EndpointPolicy>): EndpointPolicy => ({endpointId: pod.endpointId, ingressEnforced: false, egressEnforced: false, entries: [], ...over})
  const write = (p: EndpointPolicy) => writeEndpointPolicy(kernel, {bpffsRoot: root}, p)
  const open = (pod: Pod) => write(policy(pod, {}))

  function makePod(ip: string, on = run): Pod {
    const ns = createNamespace('pp').name
    const run = on
    ok(run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    const ep = ok(run(['endpoint', 'show', '--container-id', ns]), 'endpoint show')
    return {ns, ip, endpointId: Number(ep.endpointId)}
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    ensureBpffsMounted()
    scripts = mkdtempSync(path.join(os.tmpdir(), 'pn-polpy-'))
    writeFileSync(path.join(scripts, 'server.py'), SERVER)
    writeFileSync(path.join(scripts, 'client.py'), CLIENT)
    const sw = createNamespace('plw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    const wire = (ns: string, idx: number) => {
      const port = `x${idx}${ns.slice(-4)}`
      inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
      inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
      inNs(ns, ['ip', 'addr', 'add', `172.30.9.${idx}/24`, 'dev', 'eth0'])
      inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    }
    nodeNs = createNamespace('pol').name
    wire(nodeNs, 1)
    stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-pol-'))
    ok(run(['node', 'init', '--name', nodeNs, '--device', 'eth0', '--pod-cidr', '10.171.0.0/24', '--routing', 'bpf']), 'node init')
    root = path.join(BPFFS, nodeNs)
    const n2 = {ns: createNamespace('pol').name, stateDir: mkdtempSync(path.join(os.tmpdir(), 'pn-pol-'))}
    node2 = n2
    wire(n2.ns, 2)
    const run2 = (args: string[]) => pn([...args, '--state-dir', n2.stateDir, '--json'], {netns: n2.ns})
    ok(run2(['node', 'init', '--name', n2.ns, '--device', 'eth0', '--pod-cidr', '10.172.0.0/24', '--routing', 'bpf']), 'node 2 init')
    inNs(nodeNs, ['ip', 'route', 'add', '10.172.0.0/24', 'via', '172.30.9.2'])
    inNs(n2.ns, ['ip', 'route', 'add', '10.171.0.0/24', 'via', '172.30.9.1'])
    d = makePod('10.172.0.10', run2)
    await kernel.apply([{kind: 'map.update', map: mapPath(root, 'pn_ipcache'), key: encodeIpcacheKey(`${d.ip}/32`), value: encodeIpcacheInfo({identity: 259, flags: 0, nodeIp: '172.30.9.2'})}])
    a = makePod('10.171.0.10')
    b = makePod('10.171.0.11')
    c = makePod('10.171.0.12')
    await writeEndpointIdentity(kernel, {bpffsRoot: root}, [a.ip], 256)
    await writeEndpointIdentity(kernel, {bpffsRoot: root}, [b.ip], 257)
    await writeEndpointIdentity(kernel, {bpffsRoot: root}, [c.ip], 258)
    const server = spawn('ip', ['netns', 'exec', b.ns, 'python3', path.join(scripts, 'server.py'), '80,81,8079,8080,8081,8083,8084', '80,5353'], {stdio: ['ignore', 'pipe', 'inherit']})
    children.push(server)
    await new Promise<void>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve())
      server.once('exit', (code) => reject(new Error(`echo server exited (${code})`)))
    })
    progIds = await programIds()
  })

  after(() => {
    for (const ch of children) if (ch.pid && ch.exitCode === null) process.kill(ch.pid)
    if (stateDir) run(['node', 'reset'])
    if (node2) pn(['node', 'reset', '--state-dir', node2.stateDir, '--json'], {netns: node2.ns})
    cleanupNamespaces()
    for (const dir of [stateDir, scripts, node2?.stateDir]) if (dir) rmSync(dir, {recursive: true, force: true})
    for (const ns of [nodeNs, node2?.ns]) if (ns) rmSync(path.join(BPFFS, ns), {recursive: true, force: true})
  })

  it('an endpoint without policy is open: TCP and UDP both ways, nothing in the policy maps', async () => {
    assert.ok(probe(a, 'tcp', b, 80), 'a → b tcp/80')
    assert.ok(probe(a, 'tcp', b, 81), 'a → b tcp/81')
    assert.ok(probe(a, 'udp', b, 80), 'a → b udp/80')
    const eps = await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, 'pn_policy_ep')})
    assert.equal(eps.entries.length, 0)
  })

  it('ingress default deny drops TCP, counted as DROP_POLICY_DENIED', async () => {
    const before = policyDrops()
    const r = await write(policy(b, {ingressEnforced: true}))
    assert.equal(r.changed, true)
    assert.ok(!probe(a, 'tcp', b, 80), 'a → b tcp/80 denied')
    assert.ok(!probe(c, 'udp', b, 80), 'c → b udp/80 denied')
    assert.ok(policyDrops() > before, 'drops counted as DROP_POLICY_DENIED')
  })

  it('an allow entry for the peer identity on TCP 80 lets TCP 80 through, not 81, not another identity', async () => {
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 256})]}))
    assert.ok(probe(a, 'tcp', b, 80), 'a (256) → b tcp/80 allowed')
    assert.ok(!probe(a, 'tcp', b, 81), 'a → b tcp/81 denied')
    assert.ok(!probe(a, 'udp', b, 80), 'a → b udp/80 denied (the rule is TCP)')
    assert.ok(!probe(c, 'tcp', b, 80), 'c (258) → b tcp/80 denied')
    // Identity 0 is any peer.
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 0})]}))
    assert.ok(probe(c, 'tcp', b, 80), 'c → b tcp/80 allowed by an any-peer rule')
  })

  it('from another node (from-netdev): the source identity comes from the receiving node\'s ipcache; replies leave', async () => {
    const before = policyDrops()
    await write(policy(b, {ingressEnforced: true, egressEnforced: true, entries: [entry({identity: 259})]}))
    assert.ok(probe(d, 'tcp', b, 80), 'd (259, node 2) → b tcp/80 allowed, the reply passes b egress')
    assert.ok(!probe(d, 'tcp', b, 81), 'd → b tcp/81 denied')
    assert.ok(!probe(a, 'tcp', b, 80), 'a (256) → b tcp/80 denied')
    const res = ok(run(['bpf', 'map', 'dump', 'pn_metrics']), 'map dump pn_metrics')
    const fromNetdev = (res.entries as {key: {point: string; reason: string}; value: {packets: number}}[]).filter((e) => e.key.point === 'from-netdev' && e.key.reason === 'DROP_POLICY_DENIED')
    assert.ok(fromNetdev.reduce((n, e) => n + e.value.packets, 0) > 0, 'the drop is from-netdev\'s')
    assert.ok(policyDrops() > before)
    // b egress: d's identity comes from the ipcache; only port 9 is allowed, so the SYN to 80 is dropped here.
    await write(policy(b, {egressEnforced: true, entries: [entry({direction: 'egress', identity: 259, port: 9, endPort: 9})]}))
    const drops = policyDrops()
    assert.ok(!probe(b, 'tcp', d, 80), 'b → d:80 denied')
    assert.ok(policyDrops() > drops, 'dropped by policy at b egress, not refused by d')
  })

  it('replies pass when the server denies all egress (TCP SYN-ACK, UDP reply); its own connections do not', async () => {
    await write(policy(b, {ingressEnforced: true, egressEnforced: true, entries: [entry({identity: 256}), entry({identity: 256, protocol: 17, port: 5353, endPort: 5353})]}))
    assert.ok(probe(a, 'tcp', b, 80), 'a → b tcp/80: request allowed, the reply passes b egress')
    assert.ok(probe(a, 'udp', b, 5353), 'a → b udp/5353: the reply passes b egress')
    assert.ok(!probe(b, 'udp', a, 9), 'b → a: b denies egress')
    // The client side: a denies all ingress, allows egress to b on 80: the reply passes a's ingress.
    await write(policy(a, {ingressEnforced: true, egressEnforced: true, entries: [entry({direction: 'egress', identity: 257})]}))
    assert.ok(probe(a, 'tcp', b, 80), 'a → b tcp/80 with a default deny in, allow out to 257/80')
    assert.ok(!probe(a, 'tcp', b, 81), 'a → b tcp/81 denied at a egress')
    assert.ok(!probe(c, 'tcp', a, 80), 'c → a denied at a ingress')
    // An ICMP error about an allowed flow is related to it: b's port unreachable passes b's egress and a's ingress.
    await write(policy(a, {ingressEnforced: true, egressEnforced: true, entries: [entry({direction: 'egress', identity: 257, protocol: 17, port: 9, endPort: 9})]}))
    await write(policy(b, {ingressEnforced: true, egressEnforced: true, entries: [entry({identity: 256, protocol: 17, port: 9, endPort: 9})]}))
    assert.ok(probe(a, 'udp-refused', b, 9), 'a → b udp/9 (nothing listens): a sees the port unreachable')
    await open(a)
  })

  it('port range entries: 8080-8083 allowed, 8079 and 8084 not', async () => {
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 256, port: 8080, endPort: 8083})]}))
    assert.ok(probe(a, 'tcp', b, 8080), '8080')
    assert.ok(probe(a, 'tcp', b, 8081), '8081')
    assert.ok(probe(a, 'tcp', b, 8083), '8083')
    assert.ok(!probe(a, 'tcp', b, 8079), '8079 denied')
    assert.ok(!probe(a, 'tcp', b, 8084), '8084 denied')
    assert.ok(!probe(a, 'tcp', b, 80), '80 denied')
    const dump = ok(run(['bpf', 'map', 'dump', 'pn_policy']), 'map dump pn_policy')
    const mine = (dump.entries as {key: {endpointId: number; ports: string}; value: {rulePort: number; ruleEndPort: number}}[]).filter((e) => e.key.endpointId === b.endpointId)
    assert.deepEqual(mine.map((e) => e.key.ports).sort(), ['8080/14'], 'one block: 8080-8083 is 8080/14')
    assert.deepEqual(mine[0].value, {rulePort: 8080, ruleEndPort: 8083})
  })

  it('a policy change reaches an established flow: allowed again, then cut, without reloading a program', async () => {
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 256, protocol: 17})]}))
    assert.ok(probe(a, 'udp', b, 80, 40123), 'udp flow a:40123 → b:80 allowed')
    assert.ok(probe(a, 'udp', b, 80, 40123), 'the same flow again (conntrack)')
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 256, protocol: 17}), entry({identity: 258})]}))
    assert.ok(probe(a, 'udp', b, 80, 40123), 'still allowed under the new rules: the flow goes on')
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 258})]}))
    assert.ok(!probe(a, 'udp', b, 80, 40123), 'no longer allowed: the established flow stops')
    assert.deepEqual(await programIds(), progIds, 'every program is the one loaded before the first policy')
  })

  it('a relabel, as the agent writes it (the pod\'s new identity, then the rules naming it): a flow that stays allowed goes on, new ones pass', async () => {
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 256, protocol: 17})]}))
    try {
      assert.ok(probe(a, 'udp', b, 80, 40200), 'udp flow a:40200 → b:80 allowed (a is 256)')
      // a moves to identity 300 (new labels) and b's policy follows it: the same labels are still allowed.
      await writeEndpointIdentity(kernel, {bpffsRoot: root}, [a.ip], 300)
      await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 300, protocol: 17})]}))
      assert.ok(probe(a, 'udp', b, 80, 40200), 'the established flow goes on under a\'s new identity')
      assert.ok(probe(a, 'udp', b, 80, 40201), 'a new flow from a passes too')
      assert.ok(!probe(c, 'udp', b, 80, 40202), 'c (258) is still refused')
    } finally {
      await writeEndpointIdentity(kernel, {bpffsRoot: root}, [a.ip], 256)
      await open(b)
    }
  })

  it('10,000 entries on one endpoint: one write, a change of one rule is two map ops, traffic still judged', async () => {
    const many = Array.from({length: 10_000}, (_, i) => entry({identity: 100_000 + i}))
    const big = policy(b, {ingressEnforced: true, entries: [entry({identity: 256}), ...many]})
    const r = await write(big)
    assert.ok(r.mapOps >= 10_001, `${r.mapOps} ops`)
    const count = async () => (await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, 'pn_policy')})).entries.filter((e) => decodePolicyKey(e.key).endpointId === b.endpointId).length
    assert.equal(await count(), 10_001)
    assert.ok(probe(a, 'tcp', b, 80), 'a (256) → b tcp/80 allowed among 10,001 entries')
    assert.ok(!probe(c, 'tcp', b, 80), 'c (258) denied')
    const changed = policy(b, {ingressEnforced: true, entries: [entry({identity: 256}), entry({identity: 258}), ...many]})
    const r2 = await writeEndpointPolicy(kernel, {bpffsRoot: root}, changed, big)
    assert.equal(r2.mapOps, 2, 'the new entry and the state (revision)')
    assert.ok(probe(c, 'tcp', b, 80), 'c (258) allowed now')
    await open(b)
    assert.equal(await count(), 0)
  })

  it('pn monitor shows the policy drop with both identities', async () => {
    await write(policy(b, {ingressEnforced: true}))
    const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, PN_BIN, 'monitor', '--json', '--type', 'drop', '--count', '1', '--to-ip', b.ip, '--state-dir', stateDir], {env: {...process.env, NO_COLOR: '1'}})
    children.push(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    const ready = new Promise<void>((resolve) => child.stderr!.on('data', (d: Buffer) => (err += d.toString()).includes('listening for events') && resolve()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await Promise.race([ready, exited])
    for (let i = 0; i < 5 && child.exitCode === null; i++) {
      probe(a, 'tcp', b, 80)
      await sleep(100)
    }
    assert.equal(await exited, 0, err)
    const ev = JSON.parse(out.trim().split('\n')[0]) as {reason: {name: string}; identities?: {src: number; dst: number}; srcIp: string}
    assert.equal(ev.reason.name, 'DROP_POLICY_DENIED')
    assert.equal(ev.srcIp, a.ip)
    assert.deepEqual(ev.identities, {src: 256, dst: 257})
  })

  it('through a service: egress is checked against the backend (identity and port), replies come back from the VIP', async () => {
    ok(run(['service', 'add', '10.96.7.10:8000', '--backend', `${b.ip}:80`]), 'service add')
    const vip = {ns: '', ip: '10.96.7.10', endpointId: 0}
    try {
      // Both ends default deny both ways; a may reach 257 on 80 (the backend's port), b accepts 256 on 80.
      await write(policy(a, {ingressEnforced: true, egressEnforced: true, entries: [entry({direction: 'egress', identity: 257})]}))
      await write(policy(b, {ingressEnforced: true, egressEnforced: true, entries: [entry({identity: 256})]}))
      assert.ok(probe(a, 'tcp', vip, 8000), 'a → VIP:8000 → b:80 allowed, the reply passes both')
      await write(policy(a, {ingressEnforced: true, egressEnforced: true, entries: [entry({direction: 'egress', identity: 257, port: 8000, endPort: 8000})]}))
      assert.ok(!probe(a, 'tcp', vip, 8000), 'a rule on the service port does not allow the backend port')
    } finally {
      ok(run(['service', 'delete', '10.96.7.10:8000']), 'service delete')
      await open(a)
    }
  })

  it('writeNodePolicy syncs the node: CIDR identities in pn_ipcache, endpoints not listed lose their policy', async () => {
    // From the node's uplink address (no pod, no ipcache entry): world until a CIDR names it.
    const fromNode = (port: number) => tryInNs(nodeNs, ['python3', path.join(scripts, 'client.py'), 'tcp', b.ip, String(port), '0', '172.30.9.1']).status === 0
    await write(policy(c, {ingressEnforced: true}))
    await write(policy(b, {ingressEnforced: true, entries: [entry({identity: 16777217})]}))
    assert.ok(!fromNode(80), 'node uplink address → b: world, denied')
    const r = await writeNodePolicy(kernel, {bpffsRoot: root}, {
      endpoints: [policy(b, {ingressEnforced: true, entries: [entry({identity: 16777217})]})],
      cidrIdentities: [{cidr: '172.30.9.0/24', identity: 16777217}, {cidr: `${a.ip}/32`, identity: 16777218}],
    })
    assert.deepEqual(r.cidrs.added, ['172.30.9.0/24'])
    assert.deepEqual(r.cidrs.skipped, [`${a.ip}/32`], 'a pod prefix keeps the pod identity')
    assert.deepEqual(r.endpoints.map((d) => d.endpointId), [c.endpointId], 'only c changes: it is no longer listed')
    assert.ok(fromNode(80), 'node uplink address → b:80: the CIDR identity is allowed')
    assert.ok(!fromNode(81), '… on 80 only')
    assert.ok(!probe(a, 'tcp', b, 80), 'a → b: a is 256 (its /32), not the CIDR identity')
    const eps = (await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, 'pn_policy_ep')})).entries.map((e) => decodePolicyEpKey(e.key).endpointId)
    assert.deepEqual(eps, [b.endpointId], 'c lost its policy')
    const again = await writeNodePolicy(kernel, {bpffsRoot: root}, {endpoints: [], cidrIdentities: []})
    assert.deepEqual(again.cidrs.removed, ['172.30.9.0/24'])
    assert.ok(probe(a, 'tcp', b, 81), 'b is open again')
  })

  it('removing an endpoint leaves no policy entries behind', async () => {
    await write(policy(c, {ingressEnforced: true, egressEnforced: true, entries: [entry({identity: 256, port: 1000, endPort: 2000}), entry({direction: 'egress', identity: 0, protocol: 0, port: 0, endPort: 0})]}))
    const mine = async () => (await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, 'pn_policy')})).entries.filter((e) => decodePolicyKey(e.key).endpointId === c.endpointId).length
    assert.ok((await mine()) > 2, 'c has entries')
    ok(run(['veth', 'delete', '--container-id', c.ns]), 'veth delete c')
    assert.equal(await mine(), 0, 'no pn_policy entry of c')
    const eps = (await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, 'pn_policy_ep')})).entries.map((e) => decodePolicyEpKey(e.key).endpointId)
    assert.ok(!eps.includes(c.endpointId), 'no pn_policy_ep entry of c')
  })
})
