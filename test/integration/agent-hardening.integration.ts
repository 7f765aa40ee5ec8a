/**
 * The agent hardened, end to end on a real node namespace with the native client: only root (or
 * a --group) is served, whatever the socket's permissions let through; one agent per state dir,
 * even when two start at the same moment; a client killed mid-ADD unwinds that ADD like the
 * standalone path does; connection, idle and size limits answer with CNI errors; the test hooks
 * act only on an agent started with --test-hooks.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, readFileSync, statSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {PN_BIN, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, isRoot} from '../helpers/netns.js'
import {
  AGENT_REQUEST,
  cleanupHarness,
  createNode,
  invoke,
  mapIps,
  netconf,
  nodeLinks,
  PN_CNI_CLIENT,
  pnState,
  podHasLink,
  podIps,
  startNodeAgent,
  stopNodeAgent,
  type CniNode,
} from './cni-harness.js'

const V = '1.0.0'
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
/** A gid no account uses: the group the tests let in. */
const GROUP = 64999

interface Run {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  json?: any
}

describe('pn agent hardening (native client, node namespace)', function () {
  this.timeout(300_000)
  let node: CniNode
  const sock = () => path.join(node.stateDir, 'agent.sock')
  const status = () => pn(['agent', 'status', '--state-dir', node.stateDir, '--json']).json!.result
  const addEnv = (cid: string, pod: string, extraEnv: Record<string, string> = {}) => ({command: 'ADD', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0', extraEnv})
  const delEnv = (cid: string, pod: string) => ({command: 'DEL', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0'})
  const cniEnv = (e: {command: string; containerId: string; netns: string; ifname: string; extraEnv?: Record<string, string>}) => ({
    PATH: process.env.PATH,
    CNI_COMMAND: e.command,
    CNI_CONTAINERID: e.containerId,
    CNI_NETNS: e.netns,
    CNI_IFNAME: e.ifname,
    CNI_ARGS: '',
    CNI_PATH: '/usr/lib/cni',
    ...e.extraEnv,
  })

  /** The native client in the node netns, run through `prefix` (e.g. setpriv as another user). */
  function client(prefix: string[], env: NodeJS.ProcessEnv, stdin: string, onSpawn?: (pid: number) => void): Promise<Run> {
    return new Promise((resolve) => {
      // A request carrying a test hook goes through the test's stand-in client: the native
      // client never forwards hooks to the agent.
      const hooked = Object.keys(env).some((k) => k.startsWith('PN_TEST_') || k === 'PN_CNI_FAIL_AFTER')
      const plugin = hooked ? [process.execPath, AGENT_REQUEST] : [PN_CNI_CLIENT]
      const c = spawn('ip', ['netns', 'exec', node.ns, ...prefix, ...plugin], {env})
      onSpawn?.(c.pid!)
      let stdout = ''
      let stderr = ''
      c.stdout.on('data', (d) => (stdout += d))
      c.stderr.on('data', (d) => (stderr += d))
      c.on('close', (code, signal) => {
        let json
        try {
          json = JSON.parse(stdout)
        } catch {
          json = undefined
        }
        resolve({status: code, signal, stdout, stderr, json})
      })
      c.stdin.on('error', () => undefined)
      c.stdin.end(stdin)
    })
  }

  /** No trace of the attachment: IP, endpoint record, host veth, the pod's eth0, map entries. */
  function assertGone(cid: string, pod: string, mapsBefore: string[]): void {
    const st = pnState(node)
    assert.ok(!st.owners.includes(`${cid}:eth0`), `IP of ${cid} still held: ${st.owners.join(' ')}`)
    assert.ok(!st.endpoints.includes(`${cid}:eth0`), `endpoint of ${cid} still recorded`)
    assert.ok(!nodeLinks(node).includes(hostIfnameFor(cid, 'eth0')), `host veth of ${cid} left`)
    assert.equal(podHasLink(pod), false, `eth0 left in ${pod}`)
    assert.deepEqual(mapIps(node).sort(), [...mapsBefore].sort(), 'pn_endpoints changed')
  }

  async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms
    while (!ok()) {
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
      await sleep(50)
    }
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    node = createNode({kind: 'pn-agent', podCidr: '10.219.0.0/24', routing: 'bpf', tag: 'agh'})
    // A group member must be able to reach the socket: search (not read) permission on the state dir.
    chmodSync(node.stateDir, 0o711)
  })
  after(() => {
    cleanupNamespaces()
    cleanupHarness()
  })

  describe('who may call', () => {
    // Not root, and able to connect anyway (CAP_DAC_OVERRIDE passes the socket's mode): only the
    // agent's own check stands between this caller and a root ADD.
    const stranger = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+dac_override', '--ambient-caps=+dac_override']

    it('refuses a non-root caller with a CNI error (PN_NOT_ROOT) and runs nothing', async () => {
      const served = status().stats.served
      const pod = createNamespace('ahp').name
      const r = await client(stranger, cniEnv(addEnv('nr1', pod)), netconf(node, V))
      assert.equal(r.status, 1, r.stdout + r.stderr)
      assert.equal(r.json.code, 123)
      assert.match(r.json.msg, /^serve agent request from pid \d+ \(uid 65534, gid 65534\): root only$/)
      assert.match(r.json.details, /PN_NOT_ROOT/)
      assert.equal(status().stats.served, served)
      assert.ok(status().stats.refused >= 1)
      assert.ok(!pnState(node).owners.includes('nr1:eth0'))
      assert.equal(podHasLink(pod), false)
      assert.equal(statSync(sock()).mode & 0o777, 0o600)
      deleteNamespace(pod)
    })

    it('with --group serves that group\'s members (primary or supplementary) and still refuses others', async () => {
      stopNodeAgent(node)
      startNodeAgent(node, ['--group', String(GROUP)])
      const st = statSync(sock())
      assert.equal(st.mode & 0o777, 0o660)
      assert.equal(st.gid, GROUP)
      const members = [
        ['setpriv', '--reuid=65534', `--regid=${GROUP}`, '--clear-groups'],
        ['setpriv', '--reuid=65534', '--regid=65534', `--groups=${GROUP}`],
      ]
      for (const [i, who] of members.entries()) {
        const pod = createNamespace('ahp').name
        const served = status().stats.served
        const r = await client(who, cniEnv(addEnv(`gr${i}`, pod)), netconf(node, V))
        assert.equal(r.status, 0, r.stdout + r.stderr)
        assert.deepEqual(podIps(pod), [r.json.ips[0].address.split('/')[0]])
        const d = await client(who, cniEnv(delEnv(`gr${i}`, pod)), netconf(node, V))
        assert.equal(d.status, 0, d.stdout + d.stderr)
        assert.equal(status().stats.served, served + 2, 'not served by the agent')
        deleteNamespace(pod)
      }
      const pod = createNamespace('ahp').name
      const r = await client(stranger, cniEnv(addEnv('gr9', pod)), netconf(node, V))
      assert.equal(r.json.code, 123)
      assert.match(r.json.msg, /: root or group 64999 only$/)
      deleteNamespace(pod)
      stopNodeAgent(node)
      startNodeAgent(node)
    })
  })

  describe('one agent per state dir', () => {
    const foreground = (): Promise<Run> =>
      new Promise((resolve) => {
        const c = spawn('ip', ['netns', 'exec', node.ns, process.execPath, PN_BIN, 'agent', 'start', '--foreground', '--state-dir', node.stateDir, '--json'], {env: {...process.env, NO_COLOR: '1'}})
        let stdout = ''
        let stderr = ''
        c.stdout.on('data', (d) => (stdout += d))
        c.stderr.on('data', (d) => (stderr += d))
        c.on('close', (status, signal) => {
          let json
          try {
            json = JSON.parse(stdout)
          } catch {
            json = undefined
          }
          resolve({status, signal, stdout, stderr, json})
        })
      })

    it('two foreground starts at the same moment: exactly one serves, the other stops with PN_AGENT_RUNNING and leaves its socket alone', async () => {
      stopNodeAgent(node)
      const runs = [foreground(), foreground()]
      // The loser exits by itself; the winner serves until stopped.
      const first = await Promise.race(runs)
      assert.notEqual(first.status, 0, first.stdout + first.stderr)
      assert.equal(first.json?.error?.code, 'PN_AGENT_RUNNING', first.stdout + first.stderr)
      await until('the winner to answer', () => status().stats !== undefined)
      const s = status()
      const ino = statSync(sock()).ino
      assert.equal(s.stats.pid, s.pid)
      assert.equal(Number(readFileSync(path.join(node.stateDir, 'agent.pid'), 'utf8')), s.stats.pid)
      await sleep(300)
      assert.equal(statSync(sock()).ino, ino, 'the socket was replaced')
      assert.equal(status().stats.pid, s.stats.pid)
      // A start while it runs reports it and does not touch its socket.
      const again = pn(['agent', 'start', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
      assert.equal(again.json!.result.changed, false)
      assert.equal(again.json!.result.pid, s.stats.pid)
      assert.equal(statSync(sock()).ino, ino)
      const pod = createNamespace('ahp').name
      assert.equal(invoke(node, addEnv('one1', pod), netconf(node, V)).status, 0)
      assert.equal(invoke(node, delEnv('one1', pod), netconf(node, V)).status, 0)
      deleteNamespace(pod)
      stopNodeAgent(node)
      const winner = await Promise.race(runs.map((p) => p.then((r) => (r === first ? new Promise<Run>(() => undefined) : r))))
      assert.equal(winner.status, 0, winner.stdout + winner.stderr)
      startNodeAgent(node)
    })

    it('two background starts at the same moment: one reports changed: true, the other changed: false, both name the same agent', async () => {
      stopNodeAgent(node)
      const start = () =>
        new Promise<Run>((resolve) => {
          const c = spawn('ip', ['netns', 'exec', node.ns, process.execPath, PN_BIN, 'agent', 'start', '--state-dir', node.stateDir, '--test-hooks', '--json'], {env: {...process.env, NO_COLOR: '1'}})
          let stdout = ''
          c.stdout.on('data', (d) => (stdout += d))
          c.on('close', (status, signal) => resolve({status, signal, stdout, stderr: '', json: JSON.parse(stdout)}))
        })
      const [a, b] = await Promise.all([start(), start()])
      assert.equal(a.status, 0, a.stdout)
      assert.equal(b.status, 0, b.stdout)
      assert.deepEqual([a.json.result.changed, b.json.result.changed].sort(), [false, true])
      assert.equal(a.json.result.pid, b.json.result.pid)
      assert.equal(status().stats.pid, a.json.result.pid)
    })
  })

  it('a client killed mid-ADD: the agent aborts that request and unwinds it (IP, veth, endpoint, map entries), as the standalone path does', async () => {
    const pod = createNamespace('ahp').name
    const mapsBefore = mapIps(node)
    const hangups = status().stats.hangups
    let pid = 0
    // Each step waits 500 ms (the agent runs with --test-hooks): the kill lands once the veth is
    // made (after the IP was allocated), while the ADD still has steps to go.
    const run = client([], cniEnv(addEnv('hu1', pod, {PN_TEST_CHECKPOINT_DELAY_MS: '500'})), netconf(node, V), (p) => (pid = p))
    await until('the ADD to make its host veth', () => nodeLinks(node).includes(hostIfnameFor('hu1', 'eth0')))
    process.kill(pid, 'SIGKILL')
    const r = await run
    assert.equal(r.signal, 'SIGKILL')
    await until('the agent to unwind the ADD', () => {
      const s = status().stats
      return s.hangups === hangups + 1 && s.inflight === 0
    })
    assertGone('hu1', pod, mapsBefore)
    const log = readFileSync(path.join(node.stateDir, 'agent.log'), 'utf8')
    assert.match(log, /client of ADD hu1:eth0 hung up: interrupting it/)
    assert.match(log, /interrupted by client hang-up/)
    // The attachment works afterwards.
    const again = invoke(node, addEnv('hu1', pod), netconf(node, V))
    assert.equal(again.status, 0, again.stdout + again.stderr)
    assert.equal(invoke(node, delEnv('hu1', pod), netconf(node, V)).status, 0)
    deleteNamespace(pod)
  })

  it('limits answer with CNI errors: a request over --max-request-bytes, connections over --max-connections, a stalled connection closed after --idle-timeout-ms', async () => {
    stopNodeAgent(node)
    startNodeAgent(node, ['--max-request-bytes', '4096', '--max-connections', '2', '--idle-timeout-ms', '1500'])
    const pod = createNamespace('ahp').name
    const big = invoke(node, addEnv('big1', pod), netconf(node, V, {pad: 'x'.repeat(8192)}))
    assert.equal(big.status, 1, big.stdout + big.stderr)
    assert.equal(big.json.code, 5)
    assert.match(big.json.msg, /read agent request: larger than 4096 bytes/)
    assert.ok(!pnState(node).owners.includes('big1:eth0'))
    // Two connections that never finish a request hold both places; the next call is told to retry.
    const stalled = [0, 1].map(() => {
      const c = net.connect(sock())
      c.on('error', () => undefined)
      c.resume() // read, so the agent's answer and close are seen
      c.write('PNCNI/1\n')
      return c
    })
    await sleep(200)
    const busy = invoke(node, addEnv('cap1', pod), netconf(node, V))
    assert.equal(busy.status, 1, busy.stdout + busy.stderr)
    assert.equal(busy.json.code, 11)
    assert.match(busy.json.msg, /2 connections already open/)
    // The idle timeout closes them; then calls are served again.
    await Promise.all(stalled.map((c) => new Promise((r) => c.once('close', r))))
    const ok = invoke(node, addEnv('cap1', pod), netconf(node, V))
    assert.equal(ok.status, 0, ok.stdout + ok.stderr)
    assert.equal(invoke(node, delEnv('cap1', pod), netconf(node, V)).status, 0)
    deleteNamespace(pod)
    stopNodeAgent(node)
    startNodeAgent(node)
  })

  it('test hooks act only on an agent started with --test-hooks', () => {
    stopNodeAgent(node)
    const plain = pn(['agent', 'start', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(plain.status, 0, plain.stdout + plain.stderr)
    const pod = createNamespace('ahp').name
    const r = invoke(node, addEnv('hk1', pod, {PN_CNI_FAIL_AFTER: 'ipam', PN_TEST_CHECKPOINT_DELAY_MS: '2000'}), netconf(node, V))
    assert.equal(r.status, 0, `the hook reached the agent: ${r.stdout}${r.stderr}`)
    assert.doesNotMatch(r.stderr, /pn-test: step/)
    assert.equal(invoke(node, delEnv('hk1', pod), netconf(node, V)).status, 0)
    stopNodeAgent(node)
    startNodeAgent(node)
    const f = invoke(node, addEnv('hk2', pod, {PN_CNI_FAIL_AFTER: 'ipam'}), netconf(node, V))
    assert.equal(f.status, 1)
    assert.equal(f.json.code, 150)
    assert.ok(!pnState(node).owners.includes('hk2:eth0'))
    deleteNamespace(pod)
  })
})
