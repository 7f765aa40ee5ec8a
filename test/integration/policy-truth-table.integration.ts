/**
 * The network policy truth table on real nodes, as the upstream Kubernetes e2e tests run it:
 * namespaces x, y, z with pods a, b, c each, spread over two nodes that share a cluster store
 * (etcd) and run their agents with --cluster; an "outside" namespace on the nodes' L2 holds the
 * three addresses the ipBlock scenario names. Each scenario step (test/helpers/policy-scenarios.ts)
 * becomes pn commands (`pn policy apply|delete`, `pn namespace label`, `pn endpoint label`), the
 * agents converge, and every pod pair (and pod ↔ outside address) is probed on TCP 80, TCP 81 and
 * UDP 80 from inside the namespaces. The verdicts must equal the independent Kubernetes model's
 * (test/helpers/policy-model.ts), and `pn policy trace`'s resolution must agree with the datapath
 * on every probe.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type {ClusterEndpoint} from '../../src/cluster/layout.js'
import {pn, REPO_ROOT} from '../helpers/cli.js'
import {TestEtcd} from '../helpers/etcd.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot} from '../helpers/netns.js'
import {modelAllows, xyzWorld, type ModelProtocol, type ModelWorld} from '../helpers/policy-model.js'
import {OUTSIDE, PROBES, SCENARIOS, type Step} from '../helpers/policy-scenarios.js'
import {cleanupHarness, createNode, invoke, netconf, startNodeAgent, type CniNode} from './cni-harness.js'

const V = '1.0.0'
const LAN = '192.168.241'
const OUT_IP = `${LAN}.100`
const PROBE_TIMEOUT_S = 2

/** Listens on TCP 80 and 81 (accept, close) and echoes UDP 80, on each address given (default any). */
const SERVER = `
import socket, sys, threading
addrs = sys.argv[1:] or ['0.0.0.0']
def tcp(a, p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((a, p)); s.listen(256)
    while True:
        c, _ = s.accept(); c.close()
def udp(a, p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((a, p))
    while True:
        d, peer = s.recvfrom(64); s.sendto(d, peer)
ts = [threading.Thread(target=f, args=(a, p), daemon=True) for a in addrs for (f, p) in ((tcp, 80), (tcp, 81), (udp, 80))]
for t in ts: t.start()
print('ready', flush=True)
for t in ts: t.join()
`

/** Probes [src|null, dst, proto, port] rows at once; prints one JSON list of booleans (reached or not). */
const PROBER = `
import json, socket, sys, threading
rows = json.loads(sys.argv[1]); timeout = float(sys.argv[2]); out = [False] * len(rows)
def probe(i, src, dst, proto, port):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'TCP' else socket.SOCK_DGRAM)
        s.settimeout(timeout)
        if src: s.bind((src, 0))
        if proto == 'TCP':
            s.connect((dst, port)); out[i] = True
        else:
            s.connect((dst, port)); s.send(b'pn'); out[i] = s.recv(64) == b'pn'
        s.close()
    except Exception:
        out[i] = False
ts = [threading.Thread(target=probe, args=(i, *r)) for i, r in enumerate(rows)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
`

async function until<T>(what: string, probe: () => T | undefined | false, ms = 30_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const value = probe()
    if (value) return value
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

interface Pod {
  ns: string
  name: string
  id: string
  netns: string
  node: CniNode & {ip: string}
  ip: string
}

describe('network policy truth table on two nodes (x, y, z × a, b, c; TCP 80, TCP 81, UDP 80; real etcd)', function () {
  this.timeout(900_000)
  let tmp: string
  let lan: string
  let out: string
  let etcd: TestEtcd
  const nodes: (CniNode & {ip: string})[] = []
  const pods: Pod[] = []
  const servers: ChildProcess[] = []
  let world: ModelWorld
  let fileNo = 0

  const pnc = (args: string[]) => {
    const r = pn([...args, '--cluster', etcd.location, '--json'], {netns: nodes[0].ns})
    assert.equal(r.status, 0, `pn ${args.join(' ')}: ${r.stdout}${r.stderr}`)
    return r.json!.result
  }
  const podOf = (t: string) => pods.find((p) => `${p.ns}/${p.name}` === t)
  const ipOf = (t: string) => podOf(t)?.ip ?? t

  function startServer(netns: string, addrs: string[] = []): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', netns, 'python3', '-c', SERVER, ...addrs], {stdio: ['ignore', 'pipe', 'inherit']})
    servers.push(child)
    return new Promise((resolve, reject) => {
      child.stdout!.once('data', () => resolve())
      child.once('exit', (code) => reject(new Error(`server in ${netns} exited (${code})`)))
    })
  }

  /** Probe every pair at once (one prober per source namespace); `from -> to port/PROTO` → reached. */
  async function probeAll(): Promise<Map<string, boolean>> {
    const targets = [...pods.map((p) => `${p.ns}/${p.name}`), ...OUTSIDE]
    const jobs: Promise<void>[] = []
    const result = new Map<string, boolean>()
    for (const from of targets) {
      const rows: [string | null, string, ModelProtocol, number][] = []
      const keys: string[] = []
      for (const to of targets) {
        if (to === from || (!to.includes('/') && !from.includes('/'))) continue
        for (const [proto, port] of PROBES) {
          rows.push([from.includes('/') ? null : from, ipOf(to), proto, port])
          keys.push(`${from} -> ${to} ${port}/${proto}`)
        }
      }
      const netns = podOf(from)?.netns ?? out
      jobs.push(new Promise((resolve, reject) => {
        const c = spawn('ip', ['netns', 'exec', netns, 'python3', '-c', PROBER, JSON.stringify(rows), String(PROBE_TIMEOUT_S)])
        let text = ''
        c.stdout.on('data', (d) => (text += d))
        c.on('close', (code) => {
          if (code !== 0) return reject(new Error(`prober in ${netns} exited ${code}`))
          const got = JSON.parse(text) as boolean[]
          keys.forEach((k, i) => result.set(k, got[i]))
          resolve()
        })
      }))
    }
    await Promise.all(jobs)
    return result
  }

  /** Turn the difference between two worlds into pn commands on the cluster, then wait for both nodes. */
  async function applyWorld(next: ModelWorld): Promise<void> {
    const key = (p: unknown) => {
      const m = (p as {metadata: {namespace: string; name: string}}).metadata
      return `${m.namespace}/${m.name}`
    }
    const before = new Map(world.policies.map((p) => [key(p), JSON.stringify(p)]))
    const after = new Map(next.policies.map((p) => [key(p), JSON.stringify(p)]))
    const changed = next.policies.filter((p) => before.get(key(p)) !== JSON.stringify(p))
    if (changed.length > 0) {
      const file = path.join(tmp, `policies-${++fileNo}.json`)
      writeFileSync(file, JSON.stringify({apiVersion: 'v1', kind: 'List', items: changed}))
      pnc(['policy', 'apply', file])
    }
    for (const k of before.keys()) if (!after.has(k)) pnc(['policy', 'delete', k])
    for (const ns of new Set([...Object.keys(world.namespaces), ...Object.keys(next.namespaces)])) {
      const words = labelWords(world.namespaces[ns] ?? {}, next.namespaces[ns] ?? {})
      if (words.length > 0) pnc(['namespace', 'label', ns, ...words])
    }
    for (const p of next.pods) {
      const was = world.pods.find((q) => q.namespace === p.namespace && q.name === p.name)!
      const words = labelWords(was.labels, p.labels)
      if (words.length > 0) pnc(['endpoint', 'label', `${p.namespace}/${p.name}`, ...words])
    }
    world = clone(next)
    await converged()
  }

  /** The store, read in the LAN namespace (where etcd is): its endpoints and trace's verdict of each probe. */
  function readStore(probes: [string, string, number, number][] = []): {revision: number; endpoints: ClusterEndpoint[]; verdicts: {verdict: string; reason: string}[]} {
    const r = spawnSync('ip', ['netns', 'exec', lan, process.execPath, path.join(REPO_ROOT, 'dist/test/helpers/policy-store-probe.js'), etcd.location, JSON.stringify(probes)], {encoding: 'utf8', maxBuffer: 64 << 20})
    assert.equal(r.status, 0, r.stdout + r.stderr)
    return JSON.parse(r.stdout)
  }

  async function converged(): Promise<void> {
    await until('both agents converged on the store\'s latest revision', () => {
      const r = pn(['cluster', 'status', '--cluster', etcd.location, '--json'], {netns: nodes[0].ns})
      if (r.status !== 0) return false
      const rows = r.json!.result.nodes as {name: string; alive: boolean; converged: boolean | null}[]
      return rows.filter((x) => x.alive && x.converged === true).length === nodes.length
    })
  }

  /** Probe, and compare with the model and with trace's resolution of the store. */
  async function check(step: string): Promise<{mismatches: string[]; denied: number}> {
    const got = [...(await probeAll()).entries()].map(([probe, reached]) => {
      const [, from, to, port, proto] = /^(\S+) -> (\S+) (\d+)\/(TCP|UDP)$/.exec(probe)!
      return {probe, reached, from, to, port: Number(port), proto: proto as ModelProtocol}
    })
    const {verdicts} = readStore(got.map((g) => [ipOf(g.from), ipOf(g.to), g.proto === 'TCP' ? 6 : 17, g.port]))
    const mismatches: string[] = []
    let denied = 0
    for (const [i, g] of got.entries()) {
      const want = modelAllows(world, g.from, g.to, g.proto, g.port)
      if (!want) denied++
      if (g.reached !== want) mismatches.push(`${step}: ${g.probe}: model ${want ? 'allows' : 'denies'}, datapath ${g.reached ? 'reached' : 'dropped'}`)
      const t = verdicts[i]
      if ((t.verdict === 'allowed') !== g.reached) mismatches.push(`${step}: ${g.probe}: trace says ${t.verdict} (${t.reason}), datapath ${g.reached ? 'reached' : 'dropped'}`)
    }
    return {mismatches, denied}
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-poltt-'))
    lan = createNamespace('plan').name
    inNs(lan, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(lan, ['ip', 'addr', 'add', `${LAN}.254/24`, 'dev', 'br0'])
    inNs(lan, ['ip', 'link', 'set', 'br0', 'up'])
    etcd = new TestEtcd(tmp, {netns: lan, host: `${LAN}.254`, prefix: '/pn-poltt'})
    await etcd.start()
    for (let i = 1; i <= 2; i++) {
      const n = createNode({kind: 'pn', podCidr: `10.24${i}.0.0/24`, routing: 'bpf', tag: `pt${i}`})
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'down'])
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'name', `lan${i}`])
      inNs(n.ns, ['ip', 'link', 'set', `lan${i}`, 'netns', lan])
      inNs(lan, ['ip', 'link', 'set', `lan${i}`, 'master', 'br0', 'up'])
      inNs(n.ns, ['ip', 'addr', 'add', `${LAN}.${i}/24`, 'dev', 'up0'])
      // Everything beyond the L2 (the outside addresses) is behind the outside namespace.
      inNs(n.ns, ['ip', 'route', 'add', 'default', 'via', OUT_IP, 'dev', 'up0'])
      nodes.push({...n, kind: 'pn-agent', ip: `${LAN}.${i}`})
    }
    // The outside: on the L2, with the ipBlock addresses, routing back to the pod CIDRs via the nodes.
    out = createNamespace('pout').name
    inNs(out, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'outp', 'netns', lan])
    inNs(lan, ['ip', 'link', 'set', 'outp', 'master', 'br0', 'up'])
    inNs(out, ['ip', 'addr', 'add', `${OUT_IP}/24`, 'dev', 'eth0'])
    inNs(out, ['ip', 'link', 'set', 'eth0', 'up'])
    inNs(out, ['ip', 'link', 'set', 'lo', 'up'])
    for (const a of OUTSIDE) inNs(out, ['ip', 'addr', 'add', `${a}/32`, 'dev', 'lo'])
    for (const n of nodes) inNs(out, ['ip', 'route', 'add', n.podCidr, 'via', n.ip])

    pnc(['cluster', 'init'])
    for (const n of nodes) startNodeAgent(n, ['--cluster', etcd.location, '--auto-direct-routes', '--lease-ttl', '5'])

    // Namespaces' labels before any pod, so the first identities already carry them.
    world = xyzWorld(() => '')
    for (const [ns, labels] of Object.entries(world.namespaces)) {
      const words = Object.entries(labels).map(([k, v]) => `${k}=${v}`)
      if (words.length > 0) pnc(['namespace', 'label', ns, ...words])
    }
    for (const [i, p] of world.pods.entries()) {
      const node = nodes[i % 2]
      const netns = createNamespace('ptp').name
      const id = `pt-${p.namespace}-${p.name}`
      const labels = Object.entries(p.labels).map(([key, value]) => ({key, value}))
      const r = invoke(node, {command: 'ADD', containerId: id, netns: `/run/netns/${netns}`, ifname: 'eth0', args: `K8S_POD_NAMESPACE=${p.namespace};K8S_POD_NAME=${p.name}`},
        netconf(node, V, {args: {cni: {labels}}}))
      assert.equal(r.status, 0, r.stdout + r.stderr)
      const ip = (r.json.ips[0].address as string).split('/')[0]
      p.ip = ip
      pods.push({ns: p.namespace, name: p.name, id, netns, node, ip})
    }
    await Promise.all([...pods.map((p) => startServer(p.netns)), startServer(out, OUTSIDE)])
    await converged()
  })

  after(async () => {
    for (const s of servers) s.kill('SIGKILL')
    cleanupHarness()
    await etcd?.stop()
    cleanupNamespaces()
    if (tmp) rmSync(tmp, {recursive: true, force: true})
  })

  it('every pod has an identity of its labels and its namespace\'s, the same on both nodes', async () => {
    const endpoints = new Map(readStore().endpoints.map((e) => [e.ip, e]))
    const ids = new Map<string, number>()
    for (const p of pods) {
      const ep = endpoints.get(p.ip)
      assert.ok(ep && ep.identity !== null && ep.identity >= 256, `${p.ns}/${p.name} has an identity in the store`)
      assert.equal(ep.namespace, p.ns)
      assert.deepEqual(ep.labels, {pod: p.name})
      ids.set(`${p.ns}/${p.name}`, ep.identity)
    }
    // Same labels in another namespace: another identity (the namespace is part of the set).
    assert.notEqual(ids.get('x/a'), ids.get('y/a'))
    const ipcacheOf = (n: CniNode) => {
      const r = pn(['bpf', 'map', 'dump', 'pn_ipcache', '--state-dir', n.stateDir, '--json'], {netns: n.ns})
      assert.equal(r.status, 0, r.stdout + r.stderr)
      return new Map((r.json!.result.entries as {key: {prefix: string}; value: {identity: number}}[]).map((e) => [e.key.prefix, e.value.identity]))
    }
    for (const n of nodes) {
      const cache = ipcacheOf(n)
      for (const p of pods) assert.equal(cache.get(`${p.ip}/32`), ids.get(`${p.ns}/${p.name}`), `${n.ns}: identity of ${p.ns}/${p.name} (${p.ip})`)
    }
  })

  it('with no policy every probe reaches its target, and trace agrees', async () => {
    const r = await check('no policy')
    assert.deepEqual(r.mismatches, [])
    assert.equal(r.denied, 0)
  })

  for (const s of SCENARIOS) {
    it(s.name, async () => {
      const base = clone(world)
      try {
        let denied = 0
        for (const step of s.steps as Step[]) {
          const next = clone(world)
          step.change(next)
          await applyWorld(next)
          const r = await check(step.name)
          if (r.mismatches.length > 0 && process.env.PN_POLTT_DEBUG) {
            for (const n of nodes) {
              for (const m of ['pn_ipcache', 'pn_policy', 'pn_policy_ep']) console.log(n.ns, m, pn(['bpf', 'map', 'dump', m, '--state-dir', n.stateDir], {netns: n.ns}).stdout)
              console.log(spawnSync('tail', ['-30', path.join(n.stateDir, 'agent.log')], {encoding: 'utf8'}).stdout)
            }
            console.log(JSON.stringify(readStore().endpoints.filter((e) => e.namespace === 'y' || e.pod === 'a')))
          }
          assert.deepEqual(r.mismatches, [])
          denied += r.denied
        }
        assert.ok(denied > 0, 'the scenario denies something')
      } finally {
        // Back to the open cluster for the next scenario (policies deleted, labels restored).
        await applyWorld(base)
      }
    })
  }
})

function clone(w: ModelWorld): ModelWorld {
  return JSON.parse(JSON.stringify(w)) as ModelWorld
}

/** `key=value` for what `to` sets differently, `key-` for what it drops. */
function labelWords(from: Record<string, string>, to: Record<string, string>): string[] {
  const words = Object.entries(to).filter(([k, v]) => from[k] !== v).map(([k, v]) => `${k}=${v}`)
  for (const k of Object.keys(from)) if (!(k in to)) words.push(`${k}-`)
  return words
}
