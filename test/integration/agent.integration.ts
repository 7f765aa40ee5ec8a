/**
 * The node agent end to end, on a real node namespace: the native client forwards to it, falls
 * back to the standalone path when it is down, a stop finishes what is in flight, a restart after
 * SIGKILL picks up from disk and kernel, overload is code 11, and a standalone pn working on the
 * same node at the same time never disagrees with it. (The whole CNI conformance suite also runs
 * through the agent: cni-conformance.integration.ts, kind pn-agent.)
 */
import assert from 'node:assert/strict'
import {readFileSync, existsSync} from 'node:fs'
import path from 'node:path'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {pn, pnAsync} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, isRoot} from '../helpers/netns.js'
import {
  cleanupHarness,
  createNode,
  invoke,
  invokeAsync,
  netconf,
  nodeLinks,
  podIps,
  pnState,
  startNodeAgent,
  stopNodeAgent,
  type CniNode,
} from './cni-harness.js'

const V = '1.0.0'

describe('pn agent (native client, node namespace)', function () {
  this.timeout(300_000)
  let node: CniNode
  const asStandalone = (n: CniNode): CniNode => ({...n, kind: 'pn'})

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    node = createNode({kind: 'pn-agent', podCidr: '10.216.0.0/24', routing: 'bpf', tag: 'aga'})
  })
  after(() => {
    cleanupNamespaces()
    cleanupHarness()
  })

  const agentPid = () => Number(readFileSync(path.join(node.stateDir, 'agent.pid'), 'utf8'))
  const status = () => pn(['agent', 'status', '--state-dir', node.stateDir, '--json']).json!.result
  const addEnv = (cid: string, pod: string, extraEnv: Record<string, string> = {}) => ({command: 'ADD', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0', extraEnv})
  const delEnv = (cid: string, pod?: string) => ({command: 'DEL', containerId: cid, netns: pod ? `/run/netns/${pod}` : '', ifname: 'eth0'})

  /** Nothing disagrees: IPs unique, every pn IP owner has an endpoint and a host veth, pods carry their IP. */
  function assertConsistent(live: Map<string, string>) {
    const st = pnState(node)
    const owners = st.owners.filter((o) => !o.startsWith('anon-') && !o.startsWith('solo-'))
    assert.deepEqual([...owners].sort(), [...live.keys()].map((c) => `${c}:eth0`).sort(), 'IPAM owners differ from the live pods')
    assert.deepEqual([...st.endpoints].sort(), [...live.keys()].map((c) => `${c}:eth0`).sort(), 'endpoint records differ from the live pods')
    const list = pn(['ipam', 'list', '--state-dir', node.stateDir, '--json'], {netns: node.ns}).json!.result
    const ips = ((list.allocations ?? list) as {ip: string}[]).map((a) => a.ip)
    assert.equal(new Set(ips).size, ips.length, `an IP is held twice: ${ips.join(' ')}`)
    const links = nodeLinks(node)
    for (const [cid, pod] of live) {
      assert.ok(links.includes(hostIfnameFor(cid, 'eth0')), `host veth of ${cid} missing`)
      assert.equal(podIps(pod).length, 1, `${pod} has no pod IP`)
    }
    assert.equal(links.length, live.size, `host veths without a pod: ${links.join(' ')}`)
  }

  it('serves ADD and DEL through the client, counted by pn agent status', () => {
    const before = status().stats.served
    const pod = createNamespace('agp').name
    const r = invoke(node, addEnv('s1', pod), netconf(node, V))
    assert.equal(r.status, 0, r.stdout + r.stderr)
    assert.deepEqual(podIps(pod), [r.json.ips[0].address.split('/')[0]])
    assert.equal(invoke(node, delEnv('s1', pod), netconf(node, V)).status, 0)
    assert.ok(status().stats.served >= before + 2)
    deleteNamespace(pod)
  })

  it('starts no ip process for ADD and DEL: the kernel worker applies their link, address and route ops (--no-kernel-worker spawns ip)', () => {
    const log = path.join(node.stateDir, 'agent.log')
    const cycle = (cid: string): string[] => {
      const from = readFileSync(log, 'utf8').length
      const pod = createNamespace('agp').name
      const r = invoke(node, addEnv(cid, pod), netconf(node, V))
      assert.equal(r.status, 0, r.stdout + r.stderr)
      assert.deepEqual(podIps(pod), [r.json.ips[0].address.split('/')[0]])
      assert.equal(invoke(node, delEnv(cid, pod), netconf(node, V)).status, 0)
      assertConsistent(new Map())
      deleteNamespace(pod)
      return readFileSync(log, 'utf8').slice(from).split('\n')
    }
    stopNodeAgent(node)
    const traced = {env: {...process.env, PN_TRACE_EXEC: '1'}, netns: node.ns}
    assert.equal(pn(['agent', 'start', '--state-dir', node.stateDir, '--json'], traced).status, 0)
    const lines = cycle('w1')
    assert.deepEqual(lines.filter((l) => / exec: /.test(l)), [], 'the agent spawned a process')
    for (const op of ['create veth lxc', 'add address', 'add route', 'attach ', 'delete link lxc']) {
      assert.ok(lines.some((l) => l.includes(` netlink: `) && l.includes(op)), `no "${op}" through the worker`)
    }
    stopNodeAgent(node)
    assert.equal(pn(['agent', 'start', '--state-dir', node.stateDir, '--no-kernel-worker', '--json'], traced).status, 0)
    const spawned = cycle('w2')
    assert.deepEqual(spawned.filter((l) => / netlink: /.test(l)), [])
    assert.ok(spawned.some((l) => / exec: ip -batch -/.test(l)), 'without the worker the commands are processes')
    stopNodeAgent(node)
    startNodeAgent(node)
  })

  it('falls back to the standalone path while the agent is down, and the agent takes over the same pods', () => {
    stopNodeAgent(node)
    assert.equal(status().running, false)
    assert.equal(existsSync(path.join(node.stateDir, 'agent.sock')), false)
    const pod = createNamespace('agp').name
    const r = invoke(node, addEnv('f1', pod), netconf(node, V))
    assert.equal(r.status, 0, r.stdout + r.stderr)
    startNodeAgent(node)
    const served = status().stats.served
    assert.equal(invoke(node, delEnv('f1', pod), netconf(node, V)).status, 0)
    assert.equal(status().stats.served, served + 1, 'the DEL did not go through the agent')
    assertConsistent(new Map())
    deleteNamespace(pod)
  })

  it('pn agent stop finishes the ADDs in flight; new calls fall back meanwhile', async () => {
    const pods = [createNamespace('agp').name, createNamespace('agp').name]
    // Each step of these ADDs waits 300 ms: they are in flight when the stop arrives.
    const slow = pods.map((pod, i) => invokeAsync(node, addEnv(`g${i}`, pod, {PN_TEST_CHECKPOINT_DELAY_MS: '300'}), netconf(node, V)))
    await new Promise((r) => setTimeout(r, 700))
    const stop = pnAsync(['agent', 'stop', '--state-dir', node.stateDir, '--json'])
    const results = await Promise.all(slow)
    for (const r of results) assert.equal(r.status, 0, r.stdout + r.stderr)
    const stopped = await stop
    assert.equal(stopped.json!.result.changed, true)
    for (const [i, pod] of pods.entries()) assert.deepEqual(podIps(pod), [results[i].json.ips[0].address.split('/')[0]])
    startNodeAgent(node)
    assertConsistent(new Map(pods.map((p, i) => [`g${i}`, p])))
    for (const [i, pod] of pods.entries()) {
      assert.equal(invoke(node, delEnv(`g${i}`, pod), netconf(node, V)).status, 0)
      deleteNamespace(pod)
    }
    assertConsistent(new Map())
  })

  it('a restart after SIGKILL recovers from disk and kernel: the old pods are deleted, new ones added', () => {
    const pod = createNamespace('agp').name
    const k1 = invoke(node, addEnv('k1', pod), netconf(node, V)); assert.equal(k1.status, 0, k1.stdout + k1.stderr)
    process.kill(agentPid(), 'SIGKILL')
    // The dead agent's socket file stays; the client falls back instead of failing.
    const pod2 = createNamespace('agp').name
    assert.equal(invoke(node, addEnv('k2', pod2), netconf(node, V)).status, 0)
    startNodeAgent(node)
    assertConsistent(new Map([['k1', pod], ['k2', pod2]]))
    const served = status().stats.served
    assert.equal(invoke(node, delEnv('k1', pod), netconf(node, V)).status, 0)
    assert.equal(invoke(node, delEnv('k2'), netconf(node, V)).status, 0)
    assert.equal(status().stats.served, served + 2)
    assertConsistent(new Map())
    deleteNamespace(pod)
    deleteNamespace(pod2)
  })

  it('overload answers code 11 at once instead of queueing forever', async () => {
    stopNodeAgent(node)
    // Registered with the harness, so a failing assertion below still gets it stopped.
    assert.ok(startNodeAgent(node, ['--max-inflight', '1', '--max-queued', '0']) > 0)
    const pods = [createNamespace('agp').name, createNamespace('agp').name]
    const slow = invokeAsync(node, addEnv('o1', pods[0], {PN_TEST_CHECKPOINT_DELAY_MS: '300'}), netconf(node, V))
    await new Promise((res) => setTimeout(res, 500))
    const refused = invoke(node, addEnv('o2', pods[1]), netconf(node, V))
    assert.equal(refused.status, 1)
    assert.equal(refused.json.code, 11)
    assert.match(refused.json.details, /PN_AGENT_BUSY/)
    assert.equal((await slow).status, 0)
    // The refused ADD left nothing behind.
    assertConsistent(new Map([['o1', pods[0]]]))
    assert.equal(invoke(node, delEnv('o1', pods[0]), netconf(node, V)).status, 0)
    for (const p of pods) deleteNamespace(p)
    stopNodeAgent(node)
    startNodeAgent(node)
  })

  it('interleaved with standalone pn (ipam alloc/release, cni add/del) no IP is held twice and state matches the kernel', async () => {
    const n = 8
    const agentPods = Array.from({length: n}, () => createNamespace('agp').name)
    const soloPods = Array.from({length: n}, () => createNamespace('agp').name)
    const solo = asStandalone(node)
    const work: Promise<unknown>[] = []
    for (let i = 0; i < n; i++) {
      work.push(invokeAsync(node, addEnv(`ia${i}`, agentPods[i]), netconf(node, V)))
      work.push(invokeAsync(solo, addEnv(`is${i}`, soloPods[i]), netconf(node, V)))
      work.push(pnAsync(['ipam', 'alloc', '--owner', `solo-${i}`, '--state-dir', node.stateDir, '--json'], {netns: node.ns}))
    }
    const out = (await Promise.all(work)) as {status: number; stdout: string; stderr: string}[]
    for (const r of out) assert.equal(r.status, 0, r.stdout + r.stderr)
    const live = new Map<string, string>()
    for (let i = 0; i < n; i++) live.set(`ia${i}`, agentPods[i]).set(`is${i}`, soloPods[i])
    assertConsistent(live)
    const st = pnState(node)
    assert.equal(st.owners.filter((o) => o.startsWith('solo-')).length, n)
    // Now cross over: the agent deletes the standalone pods and vice versa, while IPs are released by hand.
    const undo: Promise<unknown>[] = []
    for (let i = 0; i < n; i++) {
      undo.push(invokeAsync(node, delEnv(`is${i}`, soloPods[i]), netconf(node, V)))
      undo.push(invokeAsync(solo, delEnv(`ia${i}`, agentPods[i]), netconf(node, V)))
      undo.push(pnAsync(['ipam', 'release', '--owner', `solo-${i}`, '--state-dir', node.stateDir, '--json'], {netns: node.ns}))
    }
    for (const r of (await Promise.all(undo)) as {status: number; stdout: string; stderr: string}[]) assert.equal(r.status, 0, r.stdout + r.stderr)
    assertConsistent(new Map())
    assert.deepEqual(pnState(node).owners, [])
    for (const p of [...agentPods, ...soloPods]) deleteNamespace(p)
  })
})
