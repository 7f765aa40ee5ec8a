/**
 * pn bgp for real (root): a ToR namespace running bird2 with a bridge, two node namespaces
 * plugged into it, each with `pn node init` and `pn bgp up` peering with the ToR. The ToR's
 * kernel table shows what BGP announces. Every bird here is stopped by its pid; nothing touches
 * the root namespace.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn, type CliResult} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'

const TOR_IP = '10.98.0.1'
const N1 = {ip: '10.98.0.2', as: 65001, cidr: '10.97.1.0/24'}
const N2 = {ip: '10.98.0.3', as: 65002, cidr: '10.97.2.0/24'}
const TOR_AS = 65000
const EXTRA = '198.51.100.0/24' // a route the ToR originates: the nodes may learn it, never re-announce it

async function waitUntil(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

interface Route {
  dst: string
  gateway?: string
  protocol?: string
}

function routes(ns: string): Route[] {
  return JSON.parse(inNs(ns, ['ip', '-j', 'route', 'show']))
}

function birdRoute(ns: string, cidr: string): Route | undefined {
  return routes(ns).find((r) => r.dst === cidr && r.protocol === 'bird')
}

/** Stop a bird we started, by the pid in its pid file, only if it is that bird. */
function stopBirdByPid(pidFile: string, socket: string): void {
  let pid: number
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim())
  } catch {
    return
  }
  try {
    if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(socket)) process.kill(pid, 'SIGTERM')
  } catch {
    // gone
  }
}

describe('pn bgp (root, bird2, netns)', function () {
  this.timeout(180_000)
  let tor: string
  let n1: string
  let n2: string
  let dir: string
  let sd1: string
  let sd2: string
  const torFiles = () => ({conf: path.join(dir, 'tor.conf'), sock: path.join(dir, 'tor.ctl'), pid: path.join(dir, 'tor.pid')})
  const run = (ns: string, sd: string, args: string[], env?: NodeJS.ProcessEnv): CliResult => pn([...args, '--state-dir', sd, '--json'], {netns: ns, env})
  const up = (ns: string, sd: string, extra: string[] = []) => run(ns, sd, ['bgp', 'up', '--local-as', String(ns === n1 ? N1.as : N2.as), '--peer', TOR_IP, '--peer-as', String(TOR_AS), ...extra])
  const status = (ns: string, sd: string) => {
    const r = run(ns, sd, ['bgp', 'status'])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    return r.json!.result
  }
  const session = (ns: string, sd: string, peer = TOR_IP) => status(ns, sd).sessions.find((s: {peer?: string}) => s.peer === peer)

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-bgp-'))
    tor = createNamespace('tor').name
    n1 = createNamespace('bn1').name
    n2 = createNamespace('bn2').name
    inNs(tor, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(tor, ['ip', 'addr', 'add', `${TOR_IP}/24`, 'dev', 'br0'])
    inNs(tor, ['ip', 'link', 'set', 'br0', 'up'])
    for (const [ns, ip, port] of [[n1, N1.ip, 'port1'], [n2, N2.ip, 'port2']]) {
      inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', tor])
      inNs(tor, ['ip', 'link', 'set', port, 'master', 'br0', 'up'])
      inNs(ns, ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
      inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
    }
    // The ToR: learns the nodes' pod CIDRs into its kernel table, re-announces them (and one
    // route of its own) to the nodes.
    const t = torFiles()
    writeFileSync(t.conf, [
      `router id ${TOR_IP};`,
      'protocol device {}',
      'protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }',
      `protocol static tor_extra { ipv4; route ${EXTRA} unreachable; }`,
      ...[[N1, 'n1'], [N2, 'n2']].map(([n, name]) => {
        const node = n as typeof N1
        return `protocol bgp ${name} { local ${TOR_IP} as ${TOR_AS}; neighbor ${node.ip} as ${node.as}; connect retry time 5; error wait time 5, 30; ipv4 { import all; export all; }; }`
      }),
      '',
    ].join('\n'))
    execFileSync('ip', ['netns', 'exec', tor, 'bird', '-c', t.conf, '-s', t.sock, '-P', t.pid])
    sd1 = path.join(dir, 'n1')
    sd2 = path.join(dir, 'n2')
    // Node names = namespace names, so the default bpffs folders never collide with another run.
    for (const [ns, sd, cidr] of [[n1, sd1, N1.cidr], [n2, sd2, N2.cidr]]) {
      const r = run(ns, sd, ['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', cidr, '--routing', 'host-routes'])
      assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    }
  })

  after(() => {
    // pn's own reset first (bird, devices, bpffs folder), then by pid whatever a failure left.
    for (const [ns, sd] of [[n1, sd1], [n2, sd2], [n1, path.join(dir, 'n1b')]]) {
      if (!ns || !sd) continue
      pn(['node', 'reset', '--state-dir', sd, '--json'], {netns: ns})
      stopBirdByPid(path.join(sd, 'bgp/bird.pid'), path.join(sd, 'bgp/bird.ctl'))
    }
    const t = torFiles()
    stopBirdByPid(t.pid, t.sock)
    cleanupNamespaces()
    rmSync(dir, {recursive: true, force: true})
  })

  it('brings the session up and the pod CIDR appears on the ToR (proto bird, via the node IP), and nothing else leaks', async () => {
    const r = up(n1, sd1)
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    assert.equal(r.json!.result.action, 'started')
    assert.deepEqual(r.json!.result.announces, [N1.cidr])
    assert.equal(r.json!.result.routerId, N1.ip)
    await waitUntil('the n1 session to be Established', () => session(n1, sd1)?.established === true)
    await waitUntil(`${N1.cidr} on the ToR`, () => birdRoute(tor, N1.cidr) !== undefined)
    assert.equal(birdRoute(tor, N1.cidr)!.gateway, N1.ip)
    const s = status(n1, sd1)
    assert.equal(s.running, true)
    assert.deepEqual(s.announced, [N1.cidr], 'only the pod CIDR is announced')
    await waitUntil('the ToR route to reach n1', () => status(n1, sd1).received.some((x: {prefix: string}) => x.prefix === EXTRA))
    assert.deepEqual(status(n1, sd1).announced, [N1.cidr], 'a learned route is never re-announced')
    const sess = session(n1, sd1)
    assert.equal(sess.bgpState, 'Established')
    assert.equal(sess.peerAs, TOR_AS)
    assert.ok(sess.uptimeSeconds >= 0 && typeof sess.since === 'string')
    assert.equal(birdRoute(n1, EXTRA), undefined, 'without --import the node kernel table stays as it was')
    // the rendered config is one bird accepts as it is
    assert.equal(spawnSync('bird', ['-p', '-c', path.join(sd1, 'bgp/bird.conf')]).status, 0)
    // human output
    const human = pn(['bgp', 'status', '--state-dir', sd1], {netns: n1})
    assert.match(human.stdout, new RegExp(`${TOR_IP.replaceAll('.', '\\.')}\\s+${TOR_AS}\\s+Established`))
  })

  it('is idempotent, and reconfigures for new flags without dropping the session that stays', async () => {
    const pid = status(n1, sd1).pid
    const again = up(n1, sd1)
    assert.equal(again.json?.result.changed, false, again.stdout)
    assert.equal(again.json?.result.action, 'unchanged')
    assert.equal(again.json?.result.pid, pid)
    const since = session(n1, sd1).since
    await new Promise((r) => setTimeout(r, 1500)) // a restarted session would show a later `since`
    // A second peer that never answers, and --import.
    const more = run(n1, sd1, ['bgp', 'up', '--local-as', String(N1.as), '--peer', TOR_IP, '--peer', '10.98.0.77', '--peer-as', String(TOR_AS), '--import'])
    assert.equal(more.json?.status, 'ok', more.stdout + more.stderr)
    assert.equal(more.json!.result.action, 'reconfigured')
    assert.equal(more.json!.result.pid, pid)
    const kept = session(n1, sd1)
    assert.equal(kept.established, true)
    assert.equal(kept.since, since, 'the session to the ToR was kept')
    // --import: what the ToR re-announces lands in the node's kernel table as proto bird
    await waitUntil(`${EXTRA} in n1's kernel table`, () => birdRoute(n1, EXTRA) !== undefined)
    assert.equal(birdRoute(n1, EXTRA)!.gateway, TOR_IP)
    // the peer that never comes up is a session state, not an error
    const dead = session(n1, sd1, '10.98.0.77')
    assert.equal(dead.established, false)
    assert.match(dead.bgpState, /^(Idle|Connect|Active)$/)
    assert.ok(birdRoute(tor, N1.cidr), 'still announced')
  })

  it('lets nodes learn each other through the ToR with --import', async () => {
    const r = up(n2, sd2, ['--import'])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    await waitUntil(`${N2.cidr} on the ToR`, () => birdRoute(tor, N2.cidr)?.gateway === N2.ip)
    await waitUntil(`${N2.cidr} in n1's kernel table`, () => birdRoute(n1, N2.cidr) !== undefined)
    await waitUntil(`${N1.cidr} in n2's kernel table`, () => birdRoute(n2, N1.cidr) !== undefined)
    assert.ok(status(n2, sd2).received.some((x: {prefix: string}) => x.prefix === N1.cidr))
  })

  it('withdraws on pn bgp down, removes its files, and re-announces on pn bgp up', async () => {
    const pid = status(n1, sd1).pid
    const down = run(n1, sd1, ['bgp', 'down'])
    assert.equal(down.json?.status, 'ok', down.stdout + down.stderr)
    assert.equal(down.json!.result.stopped, pid)
    await waitUntil(`${N1.cidr} to leave the ToR`, () => birdRoute(tor, N1.cidr) === undefined, 10_000)
    assert.throws(() => readFileSync(path.join(sd1, 'bgp/bird.conf')))
    let cmdline = ''
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      // gone
    }
    assert.ok(!cmdline.includes(sd1), 'that bird is gone')
    assert.equal(birdRoute(n1, EXTRA), undefined, 'bird took its --import routes with it')
    assert.equal(status(n1, sd1).running, false)
    const again = run(n1, sd1, ['bgp', 'down'])
    assert.equal(again.json?.result.changed, false)
    // back up
    assert.equal(up(n1, sd1).json?.result.action, 'started')
    await waitUntil(`${N1.cidr} back on the ToR`, () => birdRoute(tor, N1.cidr)?.gateway === N1.ip)
  })

  it('refuses a second BGP speaker for the node, and says how to install bird when it is missing', () => {
    const sd1b = path.join(dir, 'n1b')
    assert.equal(run(n1, sd1b, ['node', 'init', '--name', `${n1}b`, '--device', 'eth0', '--pod-cidr', '10.97.9.0/24', '--routing', 'host-routes']).json?.status, 'ok')
    const second = up(n1, sd1b)
    assert.equal(second.json?.error?.code, 'PN_BGP_CONFLICT', second.stdout)
    assert.equal(second.status, 4)
    assert.match(second.json!.error!.message, /port 179/)
    // PATH without bird: a dir holding only the other tools pn runs
    const bin = path.join(dir, 'bin')
    mkdirSync(bin)
    for (const tool of ['ip', 'ss', 'flock', 'cat', 'nsenter']) {
      const where = execFileSync('sh', ['-c', `command -v ${tool}`], {encoding: 'utf8'}).trim()
      symlinkSync(where, path.join(bin, tool))
    }
    assert.equal(run(n1, sd1b, ['bgp', 'down']).json?.status, 'ok')
    const missing = run(n1, sd1b, ['bgp', 'up', '--local-as', '65009', '--peer', TOR_IP, '--peer-as', String(TOR_AS)], {PATH: bin})
    assert.equal(missing.json?.error?.code, 'PN_TOOL_MISSING', missing.stdout + missing.stderr)
    assert.match(missing.json!.error!.hint ?? '', /apt-get install bird2/)
    assert.equal(run(n1, sd1b, ['node', 'reset']).json?.status, 'ok')
  })

  it('pn node reset stops the node\'s bird, so the ToR withdraws its pod CIDR', async () => {
    assert.ok(birdRoute(tor, N2.cidr))
    const r = run(n2, sd2, ['node', 'reset'])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    assert.ok(r.json!.result.removed.some((x: string) => /^bird \(pid \d+\)$/.test(x)), r.stdout)
    await waitUntil(`${N2.cidr} to leave the ToR`, () => birdRoute(tor, N2.cidr) === undefined, 10_000)
    assert.ok(birdRoute(tor, N1.cidr), "the other node's route stays")
  })
})
