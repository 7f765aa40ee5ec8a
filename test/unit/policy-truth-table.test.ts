/**
 * The truth table of the upstream network policy e2e tests, without a kernel: namespaces x, y, z
 * with pods a, b, c (and three outside addresses for ipBlock), one scenario at a time. For every
 * pair and TCP 80, TCP 81 and UDP 80, the verdict of pn's resolution (its NodePolicy entries,
 * read by a tiny evaluator written here the way the datapath looks them up) and of `pn policy
 * trace` must equal the independent model's (test/helpers/policy-model.ts).
 */
import assert from 'node:assert/strict'
import {labelSetKey, podLabelSet} from '../../src/policy/labels.js'
import {parsePolicies} from '../../src/policy/parse.js'
import {nodePolicy, resolvePolicy, type PolicyIdentity} from '../../src/policy/resolve.js'
import {traceVerdict} from '../../src/policy/trace.js'
import type {NodePolicy} from '../../src/policy/types.js'
import {modelAllows, xyzWorld} from '../helpers/policy-model.js'
import {OUTSIDE, PROBES, SCENARIOS, type Step} from '../helpers/policy-scenarios.js'

const NS_INDEX: Record<string, number> = {x: 1, y: 2, z: 3}
const ipOf = (ns: string, pod: string) => `10.0.${NS_INDEX[ns]}.${pod.charCodeAt(0) - 96}`
const PROTO_NUM = {TCP: 6, UDP: 17, SCTP: 132} as const


/** Identities as the cluster store hands them out: one number per label set, never reused here. */
class Identities {
  private readonly byKey = new Map<string, PolicyIdentity>()
  of(labels: string[]): number {
    const k = labelSetKey(labels)
    let i = this.byKey.get(k)
    if (!i) {
      i = {id: 256 + this.byKey.size, labels}
      this.byKey.set(k, i)
    }
    return i.id
  }
  get all(): PolicyIdentity[] {
    return [...this.byKey.values()]
  }
}

function ipv4(t: string): number {
  return t.split('.').reduce((a, o) => a * 256 + Number(o), 0)
}

/** The datapath's view: the ipcache (pod /32s, CIDRs by longest prefix, else world 2) and the entry lookup. */
function evaluate(policy: NodePolicy, ipcache: Map<string, number>, endpointOf: Map<string, number>, from: string, to: string, protocol: number, port: number): boolean {
  const identityOf = (ip: string) => {
    const own = ipcache.get(ip)
    if (own !== undefined) return own
    let best = -1
    let id = 2
    for (const c of policy.cidrIdentities) {
      const [net, len] = c.cidr.split('/')
      const bits = Number(len)
      const size = 2 ** (32 - bits)
      if (Math.floor(ipv4(ip) / size) === Math.floor(ipv4(net) / size) && bits > best) [best, id] = [bits, c.identity]
    }
    return id
  }
  const passes = (ip: string, direction: 'ingress' | 'egress', peer: string) => {
    const epId = endpointOf.get(ip)
    if (epId === undefined) return true
    const ep = policy.endpoints.find((e) => e.endpointId === epId)!
    if (!(direction === 'ingress' ? ep.ingressEnforced : ep.egressEnforced)) return true
    const peerId = identityOf(peer)
    return ep.entries.some((e) => e.direction === direction && (e.identity === 0 || e.identity === peerId) &&
      (e.protocol === 0 || e.protocol === protocol) && (e.port === 0 || (port >= e.port && port <= e.endPort)))
  }
  return passes(from, 'egress', to) && passes(to, 'ingress', from)
}

/** Run the steps on a fresh world; after each, compare every probe. Returns the mismatches and the matrices. */
function run(steps: Step[]): {mismatches: string[]; matrices: Map<string, boolean>[]} {
  const world = xyzWorld(ipOf)
  const ids = new Identities()
  const mismatches: string[] = []
  const matrices: Map<string, boolean>[] = []
  for (const step of steps) {
    step.change(world)
    const endpoints = world.pods.map((p, i) => ({
      ip: p.ip, endpointId: i + 1, namespace: p.namespace, name: p.name, labels: {...p.labels},
      identity: ids.of(podLabelSet(p.namespace, p.labels, world.namespaces[p.namespace])),
    }))
    const policies = world.policies.length ? parsePolicies(JSON.stringify({apiVersion: 'v1', kind: 'List', items: world.policies}), step.name) : []
    const resolved = resolvePolicy({endpoints, namespaces: world.namespaces, identities: ids.all, policies})
    const node = nodePolicy(resolved, () => true)
    const ipcache = new Map(endpoints.map((e) => [e.ip, e.identity]))
    // Entries name only identities a packet can carry: any (0), a pod's current one, a CIDR's, world.
    const carried = new Set([0, 2, ...endpoints.map((e) => e.identity), ...node.cidrIdentities.map((c) => c.identity)])
    for (const ep of node.endpoints) for (const e of ep.entries) if (!carried.has(e.identity)) mismatches.push(`${step.name}: endpoint ${ep.endpointId} has an entry for identity ${e.identity}, which nothing carries`)
    const endpointOf = new Map(endpoints.map((e) => [e.ip, e.endpointId]))
    const pods = world.pods.map((p) => `${p.namespace}/${p.name}`)
    const ip = (t: string) => (t.includes('/') ? world.pods.find((p) => `${p.namespace}/${p.name}` === t)!.ip : t)
    const pairs = [...pods.flatMap((f) => pods.filter((t) => t !== f).map((t) => [f, t])), ...pods.flatMap((p) => OUTSIDE.flatMap((o) => [[p, o], [o, p]]))]
    const matrix = new Map<string, boolean>()
    for (const [proto, port] of PROBES) {
      for (const [f, t] of pairs) {
        const want = modelAllows(world, f, t, proto, port)
        const got = evaluate(node, ipcache, endpointOf, ip(f), ip(t), PROTO_NUM[proto], port)
        const traced = traceVerdict(resolved, ip(f), ip(t), PROTO_NUM[proto], port)
        const probe = `${step.name}: ${f} -> ${t} ${port}/${proto}`
        matrix.set(`${f} -> ${t} ${port}/${proto}`, want)
        if (got !== want) mismatches.push(`${probe}: model ${want ? 'allows' : 'denies'}, entries ${got ? 'allow' : 'deny'}`)
        if ((traced.verdict === 'allowed') !== want) mismatches.push(`${probe}: model ${want ? 'allows' : 'denies'}, trace says ${traced.verdict} (${traced.reason})`)
      }
    }
    matrices.push(matrix)
  }
  return {mismatches, matrices}
}

const denied = (m: Map<string, boolean>) => [...m.entries()].filter(([, v]) => !v).map(([k]) => k)

describe('policy truth table: resolution and trace against the Kubernetes model (x, y, z × a, b, c; TCP 80, TCP 81, UDP 80)', () => {
  const baseline = run([{name: 'none', change: () => {}}])

  it('with no policy everything is allowed, and pn agrees', () => {
    assert.deepEqual(baseline.mismatches, [])
    assert.deepEqual(denied(baseline.matrices[0]), [])
  })

  for (const s of SCENARIOS) {
    it(s.name, () => {
      const r = run(s.steps)
      assert.deepEqual(r.mismatches, [])
      // The model itself, on a few pairs worked out by hand from the spec (after the first step).
      for (const [probe, want] of s.spot) assert.equal(r.matrices[0].get(probe), want, `model, ${probe}`)
      // Every scenario denies something the open cluster allowed (it tests a policy, not the default).
      assert.ok(denied(r.matrices[0]).length > 0, 'the scenario denies nothing')
    })
  }

  it('the multi-step scenarios move the verdicts as Kubernetes says', () => {
    const ns = run(SCENARIOS.find((s) => s.name.startsWith('allow from a namespace'))!.steps).matrices
    assert.equal(ns[0].get('z/a -> x/a 80/TCP'), false)
    assert.equal(ns[1].get('z/a -> x/a 80/TCP'), true)
    const union = run(SCENARIOS.find((s) => s.name.startsWith('two policies'))!.steps).matrices
    assert.equal(union[0].get('z/c -> x/a 81/TCP'), false)
    assert.equal(union[1].get('z/c -> x/a 81/TCP'), true)
    assert.equal(union[1].get('z/c -> x/a 80/TCP'), false)
    assert.equal(union[1].get('x/a -> 198.51.100.1 80/TCP'), false)
    assert.deepEqual(union[2], union[0])
    const relabel = run(SCENARIOS.find((s) => s.name.startsWith('a relabel'))!.steps).matrices
    assert.equal(relabel[0].get('y/b -> x/a 80/TCP'), false)
    assert.equal(relabel[1].get('y/b -> x/a 80/TCP'), true)
    assert.equal(relabel[1].get('y/a -> x/a 80/TCP'), false)
    assert.deepEqual(relabel[2], relabel[0])
  })
})
