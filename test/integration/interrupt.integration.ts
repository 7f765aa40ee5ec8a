/**
 * An interrupted run leaves nothing half-made: SIGINT/SIGTERM in the middle of `pn cni add`,
 * `pn veth create` or a runtime's pn-cni ADD unwinds what was done (IP, veth, endpoint, map
 * entries) and exits 128+signal. PN_TEST_CHECKPOINT_DELAY_MS makes each step announce itself
 * and wait, so the signal lands mid-flow, after the steps the test names.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {rmSync} from 'node:fs'
import path from 'node:path'
import {PN_BIN, REPO_ROOT} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

interface Exit {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Start argv inside the node netns, deliver `signal` once the flow announces (on stderr, through
 * the PN_TEST_CHECKPOINT_DELAY_MS hook) the step `when` — so the steps before it are done and it
 * has not started — and collect the exit. No wall-clock guess: a loaded machine does not flake it.
 */
function interruptWhen(nodeNs: string, argv: string[], env: NodeJS.ProcessEnv, signal: NodeJS.Signals, when: RegExp, input?: string): Promise<Exit> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', nodeNs, ...argv], {env: {...process.env, NO_COLOR: '1', PN_TEST_CHECKPOINT_DELAY_MS: '400', ...env}})
    let stdout = ''
    let stderr = ''
    let sent = false
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => {
      stderr += d
      // `ip netns exec` execs the command: the pid is pn's own.
      if (!sent && stderr.split('\n').some((l) => l.startsWith('pn-test: step ') && when.test(l))) {
        sent = true
        child.kill(signal)
      }
    })
    child.stdin.end(input ?? '')
    child.on('close', (status, sig) => resolve({status, signal: sig, stdout, stderr}))
  })
}

describe('interrupted runs leave nothing behind', function () {
  this.timeout(120000)
  let n: ReturnType<typeof makeNode>

  before(() => {
    ensureBpffsMounted()
    n = makeNode('intr')
    const init = n.run(['node', 'init', '--name', n.node, '--device', 'eth0', '--pod-cidr', '10.61.0.0/24', '--bpffs-root', n.bpffsRoot])
    assert.equal(init.status, 0, init.stdout + init.stderr)
  })

  after(() => {
    n.run(['node', 'reset'])
    cleanupNamespaces()
    rmSync(n.stateDir, {recursive: true, force: true})
  })

  function assertClean(containerId: string): void {
    const links = inNs(n.node, ['ip', '-o', 'link'])
    assert.ok(!/\blxc[0-9a-f]{12}\b/.test(links), `no lxc link left:\n${links}`)
    const eps = n.run(['endpoint', 'list'])
    assert.deepEqual(eps.json?.result, [], `no endpoint for ${containerId}`)
    const ips = n.run(['ipam', 'list'])
    assert.deepEqual(ips.json?.result.map((a: {owner: string}) => a.owner), ['router'], 'only the router IP is reserved')
    const map = n.run(['bpf', 'map', 'dump', 'pn_endpoints'])
    const entries = (map.json?.result.entries ?? []) as {key: {ip: string}}[]
    assert.ok(entries.every((e) => e.key.ip === '10.61.0.1'), `no pod entries in pn_endpoints: ${JSON.stringify(entries)}`)
  }

  it('SIGINT during `pn cni add` (after ipam and veth) exits 130 and undoes everything', async () => {
    const pod = createNamespace('intrp')
    const r = await interruptWhen(n.node, [process.execPath, PN_BIN, 'cni', 'add', '--container-id', 'intr-a', '--netns', pod.path, '--state-dir', n.stateDir, '--json'], {}, 'SIGINT', /endpoint: write/)
    assert.equal(r.status, 130, r.stdout + r.stderr)
    const env = JSON.parse(r.stdout)
    assert.equal(env.error.code, 'PN_INTERRUPTED')
    assert.match(env.error.message, /interrupted by SIGINT/)
    assertClean('intr-a')
    assert.ok(!/eth0/.test(inNs(pod.name, ['ip', '-o', 'link'])), 'no eth0 left in the pod')
  })

  it('SIGTERM during a runtime ADD (pn-cni) answers CNI code 11 and undoes everything', async () => {
    const pod = createNamespace('intrq')
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'intr', type: 'pn', stateDir: n.stateDir})
    const r = await interruptWhen(
      n.node,
      [process.execPath, path.join(REPO_ROOT, 'bin/pn-cni')],
      {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'intr-b', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'},
      'SIGTERM',
      /endpoint: write/,
      conf,
    )
    assert.notEqual(r.status, 0, r.stdout + r.stderr)
    const body = JSON.parse(r.stdout)
    assert.equal(body.code, 11)
    assert.match(body.msg, /interrupted by SIGTERM/)
    assertClean('intr-b')
  })

  // The native client with no agent runs pn-cni as its child (native/pn-cni.c): a runtime's
  // SIGTERM reaches the client, which passes it on; a SIGKILL of the client reaches pn-cni as
  // SIGTERM (its parent-death signal). Either way the ADD unwinds.
  const CLIENT = path.join(REPO_ROOT, 'dist/native/pn-cni')

  it('SIGTERM to the native client (no agent) during an ADD reaches pn-cni: CNI code 11, nothing left', async () => {
    const pod = createNamespace('intrs')
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'intr', type: 'pn', stateDir: n.stateDir})
    const env = {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'intr-d', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'}
    const r = await interruptWhen(n.node, [CLIENT], env, 'SIGTERM', /endpoint: write/, conf)
    assert.notEqual(r.status, 0, r.stdout + r.stderr)
    const body = JSON.parse(r.stdout)
    assert.equal(body.code, 11)
    assert.match(body.msg, /interrupted by SIGTERM/)
    assertClean('intr-d')
  })

  it('SIGKILL of the native client (no agent) during an ADD: pn-cni still unwinds everything', async () => {
    const pod = createNamespace('intrk')
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'intr', type: 'pn', stateDir: n.stateDir})
    const env = {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'intr-e', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'}
    const r = await interruptWhen(n.node, [CLIENT], env, 'SIGKILL', /endpoint: write/, conf)
    assert.equal(r.signal, 'SIGKILL', r.stdout + r.stderr)
    // Nobody reads pn-cni's answer any more; it unwinds on its own (the checkpoint hook waits
    // 400 ms per step), so wait for the state to come clean.
    const deadline = Date.now() + 20_000
    for (;;) {
      try {
        assertClean('intr-e')
        break
      } catch (err) {
        if (Date.now() > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
    assert.ok(!/eth0/.test(inNs(pod.name, ['ip', '-o', 'link'])), 'no eth0 left in the pod')
  })

  it('SIGINT during `pn veth create` removes the pair and the endpoint record', async () => {
    const pod = createNamespace('intrr')
    const r = await interruptWhen(n.node, [process.execPath, PN_BIN, 'veth', 'create', '--container-id', 'intr-c', '--netns', pod.path, '--ip', '10.61.0.77', '--state-dir', n.stateDir, '--json'], {}, 'SIGINT', /write endpoint record/)
    assert.equal(r.status, 130, r.stdout + r.stderr)
    assert.equal(JSON.parse(r.stdout).error.code, 'PN_INTERRUPTED')
    assertClean('intr-c')
  })
})
