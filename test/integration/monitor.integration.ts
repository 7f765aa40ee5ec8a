/**
 * `pn monitor` and `pn status` on a real kernel, in throwaway `pn-` namespaces only:
 *
 *   [pod a]──lxc─┐                              ┌─lxc──[pod c]
 *   [pod b]──lxc─┤ node 1 ──eth0── switch ──eth0── node 2
 *
 * The monitor is the real CLI (`pn monitor --json`, NDJSON on stdout) started as a child; the
 * pings are real. One packet is followed by its ICMP id/seq through the observation points.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {ok, pn} from '../helpers/cli.js'
import {path1, startMonitor, waitFor, type RunningMonitor} from '../helpers/monitor.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, ping, tryInNs} from '../helpers/netns.js'

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
  lxc: string
  endpointId: number
}

function gateFlags(node: Node): number {
  const r = ok(node.run(['bpf', 'map', 'dump', 'pn_trace_config']), 'dump pn_trace_config')
  return Number(r.entries[0].value.flags)
}


/** Processes whose command line mentions `needle` (the monitor's lock file, its events map). */
function processesMentioning(needle: string): string[] {
  const out: string[] = []
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = ''
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
    } catch {
      continue
    }
    if (cmd.includes(needle) && pid !== String(process.pid)) out.push(`${pid}: ${cmd}`)
  }
  return out
}

describe('pn monitor and pn status (root, netns)', function () {
  this.timeout(180_000)
  const tmpDirs: string[] = []
  const monitors: RunningMonitor[] = []
  let n1: Node
  let n2: Node
  let a: Pod
  let b: Pod
  let c: Pod

  function makeNode(sw: string, idx: number): Node {
    const ns = createNamespace(`mn${idx}`).name
    const port = `sw${idx}${ns.slice(-4)}`
    inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', sw])
    inNs(sw, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
    const ip = `172.31.1.${idx}`
    inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-mon-'))
    tmpDirs.push(stateDir)
    const cidr = `10.${160 + idx}.0.0/24`
    const node: Node = {ns, stateDir, cidr, uplinkIp: ip, run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: ns})}
    ok(node.run(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'bpf']), `node init ${ns}`)
    return node
  }

  function makePod(node: Node, ip: string): Pod {
    const ns = createNamespace('mp').name
    ok(node.run(['veth', 'create', '--container-id', ns, '--netns', `/run/netns/${ns}`, '--ip', ip]), `veth create ${ns}`)
    ok(node.run(['bpf', 'load', '--container-id', ns]), `bpf load ${ns}`)
    const ep = ok(node.run(['endpoint', 'show', '--container-id', ns]), 'endpoint show')
    return {ns, id: ns, ip, lxc: ep.hostIfname, endpointId: ep.endpointId}
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    mkdirSync(BPFFS, {recursive: true})
    if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
    const sw = createNamespace('msw').name
    inNs(sw, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(sw, ['ip', 'link', 'set', 'br0', 'up'])
    n1 = makeNode(sw, 1)
    n2 = makeNode(sw, 2)
    inNs(n1.ns, ['ip', 'route', 'add', n2.cidr, 'via', n2.uplinkIp])
    inNs(n2.ns, ['ip', 'route', 'add', n1.cidr, 'via', n1.uplinkIp])
    a = makePod(n1, '10.161.0.10')
    b = makePod(n1, '10.161.0.11')
    c = makePod(n2, '10.162.0.10')
    // Warm the neighbour caches so the packets under test are not preceded by ARP.
    assert.ok(ping(a.ns, b.ip, 1) && ping(a.ns, c.ip, 1))
  })

  afterEach(async () => {
    for (const m of monitors.splice(0)) {
      if (m.child.exitCode === null && m.child.signalCode === null) {
        m.child.kill('SIGINT')
        await m.exited
      }
    }
  })

  after(() => {
    for (const n of [n1, n2]) if (n) n.run(['node', 'reset'])
    cleanupNamespaces()
    for (const d of tmpDirs) rmSync(d, {recursive: true, force: true})
    for (const n of [n1, n2]) if (n) rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  })

  it('tracing is off while no monitor runs', () => {
    assert.equal(gateFlags(n1), 0)
    assert.equal(gateFlags(n2), 0)
  })

  it('same node: one echo request goes from-endpoint (lxc a) → to-endpoint (lxc b), the reply the other way', async () => {
    const m = startMonitor(n1)
    monitors.push(m)
    await m.ready
    assert.equal(gateFlags(n1), 3, 'the monitor opened the gate for traces and drops')
    const r = tryInNs(a.ns, ['ping', '-c', '1', '-W', '2', b.ip])
    assert.equal(r.status, 0, r.stderr)
    await waitFor('the reply to reach a', () => m.events.some((e) => e.icmp?.type === 0 && e.observationPoint === 'to-endpoint' && e.dstIp === a.ip))
    const req = m.events.find((e) => e.icmp?.type === 8 && e.srcIp === a.ip && e.dstIp === b.ip)!
    assert.ok(req, `no echo request in ${JSON.stringify(m.events)}`)
    const id = req.icmp!.id!
    assert.deepEqual(path1(m.events, 8, id), ['from-endpoint@from-container', 'to-endpoint@from-container'])
    assert.deepEqual(path1(m.events, 0, id), ['from-endpoint@from-container', 'to-endpoint@from-container'])
    const [from, to] = m.events.filter((e) => e.icmp?.type === 8 && e.icmp.id === id)
    assert.equal(from.device, a.lxc)
    assert.equal(from.endpoint?.endpointId, a.endpointId)
    assert.equal(from.endpoint?.containerId, a.id)
    assert.equal(to.target, b.lxc)
    assert.equal(to.endpoint?.containerId, b.id)
    assert.equal(to.reason.name, 'TRACE_REDIRECT_PEER')
    m.child.kill('SIGINT')
    assert.equal(await m.exited, 0, `Ctrl-C exits cleanly: ${m.stderr()}`)
    assert.equal(gateFlags(n1), 0, 'tracing is off again after Ctrl-C')
  })

  it('across two nodes: from-endpoint → to-network (BPF host routing, no stack) on node 1, from-network → to-endpoint on node 2', async () => {
    const m1 = startMonitor(n1, ['--ip', c.ip])
    const m2 = startMonitor(n2, ['--ip', a.ip])
    monitors.push(m1, m2)
    await Promise.all([m1.ready, m2.ready])
    const r = tryInNs(a.ns, ['ping', '-c', '1', '-W', '2', c.ip])
    assert.equal(r.status, 0, r.stderr)
    await waitFor('the reply on node 1', () => m1.events.some((e) => e.icmp?.type === 0 && e.observationPoint === 'to-endpoint'))
    // Node 2's monitor reads its own pipe: on a loaded machine it may lag node 1's.
    await waitFor('the request and the reply on node 2', () =>
      m2.events.some((e) => e.icmp?.type === 8 && e.observationPoint === 'to-endpoint') &&
      m2.events.some((e) => e.icmp?.type === 0 && e.observationPoint === 'to-network' && e.program === 'to-netdev'))
    const id = m1.events.find((e) => e.icmp?.type === 8)!.icmp!.id!
    // from-container sends it to the uplink itself (to-network, reason TRACE_FIB_REDIRECT*), and
    // the uplink's to-netdev still sees it leave.
    assert.deepEqual(path1(m1.events, 8, id), ['from-endpoint@from-container', 'to-network@from-container', 'to-network@to-netdev'])
    assert.match(m1.events.find((e) => e.observationPoint === 'to-network' && e.program === 'from-container')!.reason.name, /^TRACE_FIB_REDIRECT(_NEIGH)?$/)
    assert.deepEqual(path1(m2.events, 8, id), ['from-network@from-netdev', 'to-endpoint@from-netdev'])
    assert.deepEqual(path1(m2.events, 0, id), ['from-endpoint@from-container', 'to-network@from-container', 'to-network@to-netdev'])
    assert.deepEqual(path1(m1.events, 0, id), ['from-network@from-netdev', 'to-endpoint@from-netdev'])
    assert.equal(m2.events.find((e) => e.observationPoint === 'to-endpoint' && e.icmp?.type === 8)!.target, c.lxc)
    assert.equal(m1.events.find((e) => e.observationPoint === 'to-network' && e.program === 'to-netdev')!.device, 'eth0')
  })

  it('a spoofed source gives a drop event with its reason; --count ends the monitor and closes the gate', async () => {
    const m = startMonitor(n1, ['--type', 'drop', '--container-id', a.id, '--count', '1'])
    monitors.push(m)
    await m.ready
    assert.equal(gateFlags(n1), 2, '--type drop asks the kernel for drops only')
    inNs(a.ns, ['ip', 'addr', 'add', '10.161.0.99/32', 'dev', 'eth0'])
    try {
      tryInNs(a.ns, ['ping', '-c', '2', '-W', '1', '-i', '0.3', '-I', '10.161.0.99', b.ip])
    } finally {
      inNs(a.ns, ['ip', 'addr', 'del', '10.161.0.99/32', 'dev', 'eth0'])
    }
    assert.equal(await m.exited, 0, m.stderr())
    assert.equal(m.events.length, 1)
    const d = m.events[0]
    assert.equal(d.type, 'drop')
    assert.equal(d.reason.name, 'DROP_INVALID_SOURCE')
    assert.equal(d.observationPoint, 'from-endpoint')
    assert.equal(d.program, 'from-container')
    assert.equal(d.device, a.lxc)
    assert.equal(d.srcIp, '10.161.0.99')
    assert.equal(d.endpoint?.endpointId, a.endpointId)
    assert.equal(gateFlags(n1), 0)
  })

  it('SIGKILL of the monitor: the watchdog turns tracing off and nothing is left running', async () => {
    const m = startMonitor(n1)
    monitors.push(m)
    await m.ready
    assert.equal(gateFlags(n1), 3)
    // A second monitor on the same node is refused: a perf event array has one reader.
    const busy = n1.run(['monitor', '--duration', '1s'])
    assert.notEqual(busy.status, 0)
    assert.equal(busy.json?.error?.code, 'PN_MONITOR_BUSY')
    m.child.kill('SIGKILL')
    await m.exited
    await waitFor('the gate to close', () => gateFlags(n1) === 0, 15_000)
    await waitFor('no monitor processes left', () => processesMentioning(`${n1.stateDir}/monitor.lock`).length === 0 && processesMentioning(`${n1.ns}/maps/pn_events`).length === 0, 15_000)
    // Traffic still flows and a new monitor can start.
    assert.ok(ping(a.ns, b.ip, 1))
    const again = n1.run(['monitor', '--duration', '500ms'])
    assert.equal(again.status, 0, again.stderr)
  })

  it('pn status shows the node as a tree and reports drift when the node is broken by hand', () => {
    const okStatus = ok(n1.run(['status']), 'status')
    assert.equal(okStatus.state, 'ok', JSON.stringify(okStatus, null, 1))
    assert.deepEqual(okStatus.sections.map((s: {name: string}) => s.name), ['host', 'endpoints', 'host-routing', 'masquerade', 'policy', 'consistency'])
    assert.deepEqual(okStatus.sections.find((s: {name: string}) => s.name === 'consistency').items, [])
    // The cross-node pings above left by BPF host routing: counted, and the uplink is the configured one.
    const hr = okStatus.sections[2].items[0] as {state: string; details: {uplinkIfindex: number; redirected: number; redirectedNeigh: number}}
    assert.equal(hr.state, 'ok')
    assert.equal(hr.details.uplinkIfindex, JSON.parse(inNs(n1.ns, ['ip', '-j', 'link', 'show', 'eth0']))[0].ifindex)
    assert.ok(hr.details.redirected + hr.details.redirectedNeigh >= 1, JSON.stringify(hr))
    const host = okStatus.sections[0].items as {name: string; hooks: {direction: string; attached?: string}[]}[]
    assert.deepEqual(host.find((i) => i.name === 'eth0')!.hooks.map((h) => `${h.direction}:${h.attached}`), ['ingress:from-netdev', 'egress:to-netdev'])
    assert.deepEqual(host.find((i) => i.name === 'pn_host')!.hooks.map((h) => `${h.direction}:${h.attached}`), ['ingress:to-host', 'egress:from-host'])
    const eps = okStatus.sections[1].items as {name: string; state: string; details: {containerId: string; lxc: string}}[]
    assert.deepEqual(eps.map((e) => e.details.containerId).sort(), [a.id, b.id].sort())
    const plain = pn(['status', '--state-dir', n1.stateDir], {netns: n1.ns})
    assert.match(plain.stdout, /├─ host ok/)
    assert.match(plain.stdout, new RegExp(`endpoint ${a.endpointId} +${a.id} +${a.ip} +${a.lxc} +ok`))

    // Break it: b's lxc deleted behind pn's back, from-netdev detached, a stray lxc without a record.
    inNs(n1.ns, ['ip', 'link', 'del', b.lxc])
    inNs(n1.ns, ['tc', 'filter', 'del', 'dev', 'eth0', 'ingress', 'pref', '1', 'handle', '1', 'bpf'])
    inNs(n1.ns, ['ip', 'link', 'add', 'lxcstray0', 'type', 'veth', 'peer', 'name', 'straypeer0'])
    const bad = ok(n1.run(['status']), 'status after breaking')
    assert.equal(bad.state, 'missing')
    const badHost = bad.sections[0].items as {name: string; state: string; hooks: {direction: string; state: string}[]; problems: string[]}[]
    const eth0 = badHost.find((i) => i.name === 'eth0')!
    assert.equal(eth0.state, 'missing')
    assert.equal(eth0.hooks.find((h) => h.direction === 'ingress')!.state, 'missing')
    assert.match(eth0.problems.join(), /from-netdev not attached at ingress/)
    const badEps = bad.sections[1].items as {name: string; kind: string; state: string; details: {containerId?: string}; problems: string[]}[]
    const gone = badEps.find((e) => e.details.containerId === b.id)!
    assert.equal(gone.state, 'missing')
    assert.match(gone.problems.join(), /is gone/)
    assert.equal(badEps.find((e) => e.details.containerId === a.id)!.state, 'ok')
    const stray = badEps.find((e) => e.name === 'lxcstray0')!
    assert.equal(stray.kind, 'unrecorded-device')
    assert.equal(stray.state, 'drifted')
    // b's map entries now point at an ifindex that is gone: the consistency section names them.
    const stale = (bad.sections.find((s: {name: string}) => s.name === 'consistency').items as {name: string; kind: string}[]).filter((i) => i.kind === 'stale-map-entry').map((i) => i.name)
    assert.ok(stale.includes(`pn_endpoints ${b.ip}`) && stale.includes(`pn_ipcache ${b.ip}/32`) && stale.some((x) => x.startsWith('pn_lxc ifindex')), stale.join(', '))
    const text = pn(['status', '--state-dir', n1.stateDir], {netns: n1.ns}).stdout
    assert.match(text, /from-netdev not attached at ingress/)
    assert.match(text, /lxcstray0 \(no endpoint record\)  DRIFTED/)
  })
})
