/** Identities, namespaces' labels and NetworkPolicies in the cluster store (directory backend), and what a node enforces from them. */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {allocateIdentity, collectIdentities, getIdentity, identityForPod, labelEndpoint, listIdentities} from '../../src/cluster/identities.js'
import {labelNamespace} from '../../src/cluster/namespaces.js'
import {applyPolicies, deletePolicy, getPolicy, listPolicies, nodePolicyFromCluster, policyRef, tracePolicy} from '../../src/cluster/policies.js'
import {openClusterStore, type ClusterStore, type NodeRegistration} from '../../src/cluster/store.js'
import {parseLabelChanges, podLabelSet} from '../../src/policy/labels.js'

const POLICIES = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
    ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: no-egress, namespace: y}
spec:
  podSelector: {}
  policyTypes: [Egress]
`

describe('policy in the cluster store: identities, namespaces, policies', function () {
  this.timeout(30_000)
  let dir: string
  let clock: number
  let store: ClusterStore
  let reg: NodeRegistration

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-policy-'))
    clock = Date.now()
    store = openClusterStore(dir, {now: () => clock})
    await store.init()
    reg = await store.registerNode({name: 'n1', nodeIps: ['192.168.0.1'], podCidrs: ['10.1.0.0/24'], reach: 'direct'}, {ttlSeconds: 60})
  })
  afterEach(async () => {
    await reg.close({revoke: false})
    await store.close()
    rmSync(dir, {recursive: true, force: true})
  })

  /** A pod published as its agent would: identity allocated for its labels first. */
  async function pod(ns: string, name: string, ip: string, labels: Record<string, string>) {
    const {id} = await identityForPod(store, ns, labels)
    await store.publishEndpoint({ip, node: 'n1', containerId: `c-${name}-${ns}`, namespace: ns, pod: name, labels, identity: id}, reg)
    return id
  }

  it('one label set gets one number from 256, on every node and under concurrent allocation', async () => {
    const a = podLabelSet('x', {app: 'web'})
    const b = podLabelSet('x', {app: 'db'})
    const other = openClusterStore(dir, {now: () => clock})
    try {
      const results = await Promise.all([a, b, a, b, a].map((set, i) => allocateIdentity(i % 2 ? other : store, set)))
      const ida = results[0].id
      const idb = results[1].id
      assert.deepEqual(results.map((r) => r.id), [ida, idb, ida, idb, ida])
      assert.notEqual(ida, idb)
      assert.deepEqual([ida, idb].sort(), [256, 257])
      assert.equal(results.filter((r) => r.created).length, 2)
      assert.equal((await allocateIdentity(other, [...a].reverse())).id, ida)
    } finally {
      await other.close()
    }
  })

  it('counts an identity\'s endpoints and frees it a grace period after the last one went; a new user in between keeps it', async () => {
    const id = await pod('x', 'a', '10.1.0.5', {app: 'web'})
    assert.deepEqual(await collectIdentities(store, {graceMs: 1000, now: () => clock}), {marked: [], freed: [], revived: []})
    let rows = (await listIdentities(store)).identities
    assert.deepEqual(rows.find((r) => r.id === id), {id, kind: 'cluster', labels: podLabelSet('x', {app: 'web'}), endpoints: 1, createdAt: rows.find((r) => r.id === id)!.createdAt})
    assert.deepEqual(rows.filter((r) => r.kind === 'reserved').map((r) => r.id), [1, 2, 6])

    await store.deleteEndpoint('10.1.0.5', 'n1')
    assert.deepEqual((await collectIdentities(store, {graceMs: 1000, now: () => clock})).marked, [id])
    // Allocated again within the grace period: the mark goes, the number stays.
    assert.equal((await identityForPod(store, 'x', {app: 'web'})).id, id)
    assert.equal((await listIdentities(store)).identities.find((r) => r.id === id)!.unusedSince, undefined)
    assert.deepEqual((await collectIdentities(store, {graceMs: 1000, now: () => clock})).marked, [id])
    assert.deepEqual((await collectIdentities(store, {graceMs: 1000, now: () => clock + 500})).freed, [])
    assert.deepEqual((await collectIdentities(store, {graceMs: 1000, now: () => clock + 1000})).freed, [id])
    rows = (await listIdentities(store)).identities
    assert.equal(rows.some((r) => r.id === id), false)
    await assert.rejects(getIdentity(store, id), (e) => isPnError(e, 'PN_IDENTITY_NOT_FOUND') && /pn identity list/.test(e.hint ?? ''))
  })

  it('applies, lists, gets, dry-runs and deletes policies; a node resolves its endpoints from the followed state', async () => {
    await labelNamespace(store, 'y', parseLabelChanges(['team=blue'], 'label'))
    const web = await pod('x', 'a', '10.1.0.5', {app: 'web'})
    const client = await pod('y', 'b', '10.1.0.6', {app: 'client'})
    await pod('z', 'c', '10.1.0.7', {app: 'client'})

    const dry = await applyPolicies(store, {file: 'p.yaml', text: POLICIES}, {dryRun: true})
    assert.deepEqual(dry.policies, [{policy: 'x/web', action: 'create'}, {policy: 'y/no-egress', action: 'create'}])
    assert.deepEqual(dry.endpoints!.map((e) => [e.endpoint, e.ingressEnforced.after, e.egressEnforced.after, e.added]), [
      ['x/a', true, false, [{direction: 'ingress', identity: client, protocol: 6, port: 80, endPort: 80}]],
      ['y/b', false, true, []],
    ])
    assert.deepEqual((await listPolicies(store)).policies, [], 'a dry run writes nothing')

    const applied = await applyPolicies(store, {file: 'p.yaml', text: POLICIES})
    assert.equal(applied.changed, true)
    assert.equal((await applyPolicies(store, {file: 'p.yaml', text: POLICIES})).changed, false)
    assert.deepEqual((await listPolicies(store)).policies.map((p) => [`${p.namespace}/${p.name}`, p.podSelector, p.policyTypes, p.endpoints]), [
      ['x/web', 'app=web', ['Ingress'], 1],
      ['y/no-egress', '{}', ['Egress'], 1],
    ])
    const got = await getPolicy(store, policyRef('web', 'x'))
    assert.deepEqual(got.selects, ['x/a'])
    assert.equal((got.policy as {kind: string}).kind, 'NetworkPolicy')

    // What node n1 enforces, from the state an agent follows.
    const state = await store.snapshot()
    const node = nodePolicyFromCluster(state, [{ip: '10.1.0.5', endpointId: 11}, {ip: '10.1.0.6', endpointId: 12}, {ip: '10.1.0.7', endpointId: 13}])
    assert.deepEqual(node, {
      endpoints: [
        {endpointId: 11, ingressEnforced: true, egressEnforced: false, entries: [{direction: 'ingress', identity: client, protocol: 6, port: 80, endPort: 80}]},
        {endpointId: 12, ingressEnforced: false, egressEnforced: true, entries: []},
        {endpointId: 13, ingressEnforced: false, egressEnforced: false, entries: []},
      ],
      cidrIdentities: [],
    })

    // Trace reads the same resolution.
    const allowed = await tracePolicy(store, {from: 'z/c', to: 'x/a', port: '80/tcp'})
    assert.equal(allowed.verdict, 'denied')
    assert.match(allowed.reason, /ingress at x\/a denied by default \(selected by x\/web/)
    const egress = await tracePolicy(store, {from: 'y/b', to: 'x/a', port: '80/tcp'})
    assert.equal(egress.verdict, 'denied')
    assert.match(egress.reason, /egress at y\/b denied by default/)
    await labelNamespace(store, 'z', parseLabelChanges(['team=blue'], 'label'))
    const now = await tracePolicy(store, {from: 'z/c', to: 'x/a', port: '80/tcp'})
    assert.equal(now.verdict, 'allowed')
    assert.match(now.reason, /allowed by x\/web ingress\[0\] peer from\[0\] ports\[0\]/)
    assert.equal(now.to.identity, web)
    assert.equal((await tracePolicy(store, {from: 'z/c', to: 'x/a', port: '81/tcp'})).verdict, 'denied')

    const del = await deletePolicy(store, policyRef('y/no-egress'), {dryRun: true})
    assert.deepEqual(del.endpoints!.map((e) => [e.endpoint, e.egressEnforced]), [['y/b', {before: true, after: false}]])
    await deletePolicy(store, policyRef('y/no-egress'))
    await assert.rejects(deletePolicy(store, policyRef('y/no-egress')), (e) => isPnError(e, 'PN_POLICY_NOT_FOUND') && /pn policy list/.test(e.hint ?? ''))
    assert.equal((await tracePolicy(store, {from: 'y/b', to: 'x/a', port: '80/tcp'})).verdict, 'allowed')
  })

  it('a relabel moves the endpoint to the identity of its new labels, under its node\'s lease; a namespace label moves its pods', async () => {
    const before = await pod('x', 'a', '10.1.0.5', {app: 'web'})
    const r = await labelEndpoint(store, 'x/a', parseLabelChanges(['role=client', 'app-'], 'label'))
    assert.deepEqual(r.labels, {role: 'client'})
    assert.equal(r.endpoints.length, 1)
    assert.equal(r.endpoints[0].from, before)
    const after = r.endpoints[0].to
    assert.notEqual(after, before)
    let state = await store.snapshot()
    assert.deepEqual(state.endpoints.get('10.1.0.5')!.labels, {role: 'client'})
    assert.equal(state.endpoints.get('10.1.0.5')!.identity, after)
    assert.equal(state.endpoints.get('10.1.0.5')!.node, 'n1')
    // By container id too; the same labels again change nothing.
    assert.deepEqual((await labelEndpoint(store, 'c-a-x', parseLabelChanges(['role=client'], 'label'))).endpoints, [])
    const ns = await labelNamespace(store, 'x', parseLabelChanges(['team=red'], 'label'))
    assert.equal(ns.changed, true)
    assert.deepEqual(ns.endpoints.map((e) => e.ip), ['10.1.0.5'])
    state = await store.snapshot()
    assert.deepEqual(state.policy.identities.get(state.endpoints.get('10.1.0.5')!.identity!)!.labels, podLabelSet('x', {role: 'client'}, {team: 'red'}))
    // The endpoint is still under the node's lease: it goes with the node.
    await reg.close({revoke: true})
    assert.equal((await store.snapshot()).endpoints.size, 0)
    reg = await store.registerNode({name: 'n1', nodeIps: ['192.168.0.1'], podCidrs: ['10.1.0.0/24'], reach: 'direct'}, {ttlSeconds: 60})
    await assert.rejects(labelEndpoint(store, 'x/a', parseLabelChanges(['a=b'], 'label')), (e) => isPnError(e, 'PN_ENDPOINT_NOT_FOUND'))
    await assert.rejects(labelNamespace(store, 'x', parseLabelChanges(['kubernetes.io/metadata.name=y'], 'label')), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
  })

  it('an agent following the store sees policies, namespaces and identities change (update.policy), and resolves its endpoints from them', async () => {
    const id = await pod('x', 'a', '10.1.0.5', {app: 'web'})
    const updates: boolean[] = []
    const follower = await store.follow({onUpdate: (_s, u) => updates.push(u.policy === true), desiredOnly: true, retryMs: 50})
    try {
      await applyPolicies(store, {file: 'p.yaml', text: POLICIES})
      const until = async (what: string, cond: () => boolean) => {
        const end = Date.now() + 5000
        while (!cond()) {
          if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
          await new Promise((r) => setTimeout(r, 20))
        }
      }
      await until('the policies', () => follower.state.policy.policies.size === 2)
      assert.ok(updates.includes(true))
      assert.equal(follower.state.policy.identities.get(id)!.labels.includes('k8s:app=web'), true)
      // A local endpoint the store does not have yet is resolved from what the node knows; a second address of one endpoint id adds nothing.
      const node = nodePolicyFromCluster(follower.state, [
        {ip: '10.1.0.5', endpointId: 11}, {ip: 'fd00::5', endpointId: 11},
        {ip: '10.1.0.9', endpointId: 14, namespace: 'x', pod: 'd', labels: {app: 'web'}},
      ])
      assert.deepEqual(node.endpoints.map((e) => [e.endpointId, e.ingressEnforced, e.entries.length]), [[11, true, 0], [14, true, 0]])
      await store.write('corrupt', [], [{put: store.keys.policy('x', 'bad'), value: '{"kind": "NetworkPolicy"}'}])
      await until('the bad key reported', () => follower.state.problems.has(store.keys.policy('x', 'bad')))
      assert.equal(follower.state.policy.policies.size, 2)
      await deletePolicy(store, policyRef('x/web'))
      await until('the delete', () => !follower.state.policy.policies.has('x/web'))
    } finally {
      await follower.close()
    }
  })
})
