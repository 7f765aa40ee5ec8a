/**
 * Agents that converge, on real nodes: three node namespaces on one L2 (a bridge in a LAN
 * namespace, where a real etcd runs), each with `pn agent start --cluster … --auto-direct-routes`
 * and a short lease. A pod ADD on one node shows in the others' pn_ipcache (with its node IP)
 * and goes on DEL; each node routes to the others' pod CIDRs; a service table written once with
 * `pn service apply --cluster` shows in every node's `pn service list`; a SIGKILLed agent's
 * entries and routes leave the other nodes within the lease TTL + 1 s; with etcd stopped, ADD and
 * DEL still work and the publication reaches the store once etcd is back.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {TestEtcd} from '../helpers/etcd.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs, isRoot} from '../helpers/netns.js'
import {cleanupHarness, createNode, invoke, netconf, startNodeAgent, type CniNode} from './cni-harness.js'

const V = '1.0.0'
const TTL = 3
const LAN = '192.168.231'

async function until<T>(what: string, probe: () => T | undefined | false, ms = 15_000): Promise<{value: T; ms: number}> {
  const start = Date.now()
  for (;;) {
    const value = probe()
    if (value) return {value, ms: Date.now() - start}
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('cluster agents (three nodes on one L2, real etcd)', function () {
  this.timeout(300_000)
  let lan: string
  let etcd: TestEtcd
  let tmp: string
  const nodes: (CniNode & {ip: string; agentPid: number})[] = []

  const ipcache = (n: CniNode): {prefix: string; nodeIp?: string; flags: number}[] => {
    const r = pn(['bpf', 'map', 'dump', 'pn_ipcache', '--state-dir', n.stateDir, '--json'], {netns: n.ns})
    assert.equal(r.status, 0, r.stdout + r.stderr)
    return (r.json!.result.entries as {key: {prefix?: string; ip?: string; prefixlen?: number}; value: {nodeIp?: string; flags: number}}[]).map((e) => ({
      prefix: e.key.prefix ?? `${e.key.ip}/${e.key.prefixlen}`,
      nodeIp: e.value.nodeIp,
      flags: e.value.flags,
    }))
  }
  const remote = (n: CniNode, prefix: string) => ipcache(n).find((e) => e.prefix === prefix && (e.flags & 1) === 0)
  const routeTo = (n: CniNode, cidr: string) => inNs(n.ns, ['ip', '-j', 'route', 'show', 'exact', cidr]).trim()
  const agentStatus = (n: CniNode) => pn(['agent', 'status', '--state-dir', n.stateDir, '--json']).json!.result
  const addPod = (n: CniNode, cid: string) => {
    const pod = createNamespace('cap').name
    const r = invoke(n, {command: 'ADD', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(n, V))
    assert.equal(r.status, 0, r.stdout + r.stderr)
    return {pod, ip: (r.json.ips[0].address as string).split('/')[0]}
  }
  const delPod = (n: CniNode, cid: string, pod: string) => {
    const r = invoke(n, {command: 'DEL', containerId: cid, netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(n, V))
    assert.equal(r.status, 0, r.stdout + r.stderr)
    deleteNamespace(pod)
  }

  before(async function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-cagents-'))
    lan = createNamespace('lan').name
    inNs(lan, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    inNs(lan, ['ip', 'addr', 'add', `${LAN}.254/24`, 'dev', 'br0'])
    inNs(lan, ['ip', 'link', 'set', 'br0', 'up'])
    etcd = new TestEtcd(tmp, {netns: lan, host: `${LAN}.254`, prefix: '/pn-cagents'})
    await etcd.start()
    for (let i = 1; i <= 3; i++) {
      const n = createNode({kind: 'pn', podCidr: `10.23${i}.0.0/24`, routing: 'bpf', tag: `ca${i}`})
      // The node's uplink peer goes onto the LAN bridge: the nodes share one L2.
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'down'])
      inNs(n.ns, ['ip', 'link', 'set', 'up0p', 'name', `lan${i}`])
      inNs(n.ns, ['ip', 'link', 'set', `lan${i}`, 'netns', lan])
      inNs(lan, ['ip', 'link', 'set', `lan${i}`, 'master', 'br0', 'up'])
      inNs(n.ns, ['ip', 'addr', 'add', `${LAN}.${i}/24`, 'dev', 'up0'])
      nodes.push({...n, kind: 'pn-agent', ip: `${LAN}.${i}`, agentPid: 0})
    }
    const init = pn(['cluster', 'init', '--cluster', etcd.location, '--json'], {netns: nodes[0].ns})
    assert.equal(init.status, 0, init.stdout + init.stderr)
    for (const n of nodes) n.agentPid = startNodeAgent(n, ['--cluster', etcd.location, '--auto-direct-routes', '--lease-ttl', String(TTL)])
  })
  after(async () => {
    cleanupHarness()
    await etcd?.stop()
    cleanupNamespaces()
    if (tmp) rmSync(tmp, {recursive: true, force: true})
  })

  it('registers every node; each routes to the others\' pod CIDRs via their node IPs on the uplink', async () => {
    await until('three nodes alive in pn cluster status', () => {
      const r = pn(['cluster', 'status', '--cluster', etcd.location, '--json'], {netns: nodes[0].ns})
      return r.status === 0 && (r.json!.result.nodes as {alive: boolean}[]).filter((x) => x.alive).length === 3
    })
    for (const n of nodes) {
      for (const peer of nodes.filter((p) => p !== n)) {
        const {value} = await until(`${n.ns} → ${peer.podCidr}`, () => routeTo(n, peer.podCidr) !== '[]' && routeTo(n, peer.podCidr))
        const [route] = JSON.parse(value) as {gateway: string; dev: string; protocol: string}[]
        assert.deepEqual([route.gateway, route.dev, route.protocol], [peer.ip, 'up0', '112'], 'a peer route via its node IP, marked with pn\'s route protocol')
      }
      const s = agentStatus(n)
      assert.equal(s.stats.cluster.store, 'connected')
      assert.equal(s.stats.cluster.registered, true)
      assert.match(pn(['agent', 'status', '--state-dir', n.stateDir]).stdout, /^cluster etcd:\/\/.*: store connected since \S+; applied revision \d+; 0 publication\(s\) queued$/m)
    }
  })

  it('a pod ADD on A is in B\'s and C\'s pn_ipcache with A\'s node IP, and goes on DEL', async () => {
    const [a, b, c] = nodes
    const {pod, ip} = addPod(a, 'cap-1')
    for (const n of [b, c]) {
      const {value} = await until(`${ip} in ${n.ns}'s ipcache`, () => remote(n, `${ip}/32`))
      assert.equal(value.nodeIp, a.ip)
    }
    assert.equal(remote(a, `${ip}/32`), undefined, 'A keeps its own pod as a local entry only')
    delPod(a, 'cap-1', pod)
    for (const n of [b, c]) await until(`${ip} gone from ${n.ns}`, () => remote(n, `${ip}/32`) === undefined)
  })

  it('a service table written once with --cluster is in every node\'s pn service list; pn service list --cluster reads the store', async () => {
    const file = path.join(tmp, 'services.json')
    writeFileSync(file, JSON.stringify([{frontend: '10.96.31.10:80/tcp', backends: [`10.231.0.50:8080`, `10.232.0.50:8080`]}]))
    const w = pn(['service', 'apply', file, '--cluster', etcd.location, '--json'], {netns: nodes[1].ns})
    assert.equal(w.status, 0, w.stdout + w.stderr)
    assert.equal(w.json!.result.changed, true)
    const listed = pn(['service', 'list', '--cluster', etcd.location, '--json'], {netns: nodes[2].ns})
    assert.deepEqual(listed.json!.result, [{frontend: '10.96.31.10:80/tcp', backends: ['10.231.0.50:8080', '10.232.0.50:8080']}])
    for (const n of nodes) {
      await until(`the service on ${n.ns}`, () => {
        const r = pn(['service', 'list', '--state-dir', n.stateDir, '--json'], {netns: n.ns})
        return r.status === 0 && (r.json!.result as {frontend: string; backends: {address: string}[]}[]).some((s) => s.frontend === '10.96.31.10:80/tcp' && s.backends.length === 2)
      })
    }
    const again = pn(['service', 'apply', file, '--cluster', etcd.location, '--json'], {netns: nodes[1].ns})
    assert.equal(again.json!.result.changed, false)
    await until('every node reports it converged', () => {
      const r = pn(['cluster', 'status', '--cluster', etcd.location, '--json'], {netns: nodes[0].ns})
      return r.status === 0 && (r.json!.result.nodes as {converged: boolean | null}[]).every((x) => x.converged === true)
    })
  })

  it('with etcd stopped, ADD and DEL still work on a node and the agent says it retries; the publication is sent once etcd is back', async () => {
    const [, b, c] = nodes
    await etcd.stop()
    const t0 = Date.now()
    const {pod, ip} = addPod(b, 'cap-2')
    assert.ok(Date.now() - t0 < 10_000, 'ADD did not wait on etcd')
    const gone = addPod(b, 'cap-3')
    delPod(b, 'cap-3', gone.pod)
    await until('the agent reports the store retrying', () => agentStatus(b).stats.cluster.store === 'retrying')
    const s = agentStatus(b).stats.cluster
    assert.ok(s.queued >= 1, 'the publications wait in the queue')
    assert.match(s.error, /.+/)
    const cs = pn(['cluster', 'status', '--cluster', etcd.location, '--state-dir', b.stateDir, '--json'], {netns: b.ns})
    assert.notEqual(cs.status, 0, 'the store cannot be read')
    assert.match(cs.json?.error?.hint ?? '', /this node's agent .*store retrying since/)
    await etcd.start()
    const {value} = await until(`${ip} in ${c.ns}'s ipcache after etcd restarted`, () => remote(c, `${ip}/32`), 30_000)
    assert.equal(value.nodeIp, b.ip)
    assert.equal(remote(c, `${gone.ip}/32`), undefined, 'the deleted pod was never published as present')
    await until('the agent reports the store connected', () => agentStatus(b).stats.cluster.store === 'connected' && agentStatus(b).stats.cluster.queued === 0)
    delPod(b, 'cap-2', pod)
    await until(`${ip} gone from ${c.ns}`, () => remote(c, `${ip}/32`) === undefined)
  })

  it('a restarted agent reads back what it applied and changes nothing that is right (no ipcache or route churn)', async () => {
    const [a, b] = nodes
    const {pod, ip} = addPod(a, 'cap-5')
    await until(`${ip} on ${b.ns}`, () => remote(b, `${ip}/32`))
    const t = Date.now()
    const r = pn(['agent', 'stop', '--state-dir', b.stateDir, '--json'])
    assert.equal(r.status, 0, r.stdout + r.stderr)
    assert.ok(Date.now() - t < 8000, `pn agent stop took ${Date.now() - t} ms`)
    b.agentPid = startNodeAgent(b, ['--cluster', etcd.location, '--auto-direct-routes', '--lease-ttl', String(TTL)])
    await until('b applied again', () => agentStatus(b).stats?.cluster?.appliedRevision !== null && agentStatus(b).stats?.cluster?.appliedRevision !== undefined)
    const st = agentStatus(b).stats.cluster
    assert.deepEqual([st.converged.ipcache, st.converged.routes], [0, 0], 'no ipcache entry or route rewritten')
    // The service table's digest is not kept across restarts: it is handed over again, and its writer diffs it against the maps (no map write).
    assert.ok(st.converged.serviceTables <= 1)
    assert.ok(remote(b, `${ip}/32`))
    delPod(a, 'cap-5', pod)
    await until(`${ip} gone from ${b.ns}`, () => remote(b, `${ip}/32`) === undefined)
  })

  it(`a SIGKILLed agent's ipcache entries and routes leave the other nodes within the lease TTL (${TTL} s) + 1 s`, async () => {
    const [a, b, c] = nodes
    const {ip} = addPod(a, 'cap-4')
    await until(`${ip} on ${b.ns} and ${c.ns}`, () => remote(b, `${ip}/32`) && remote(c, `${ip}/32`))
    process.kill(a.agentPid, 'SIGKILL')
    const killed = Date.now()
    for (const n of [b, c]) {
      await until(`A's state gone from ${n.ns}`, () => remote(n, `${ip}/32`) === undefined && routeTo(n, a.podCidr) === '[]', (TTL + 5) * 1000)
    }
    const took = Date.now() - killed
    assert.ok(took <= (TTL + 1) * 1000, `took ${took} ms`)
    assert.notEqual(routeTo(b, c.podCidr), '[]', 'the live node\'s route stays')
  })
})
