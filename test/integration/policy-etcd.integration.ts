/**
 * Identities and policies on a real etcd (test/helpers/etcd.ts, loopback): concurrent
 * allocation from two clients gives one number per label set and never one number to two sets;
 * a relabel keeps the endpoint under its node's lease; an apply larger than one transaction
 * lands whole; the collector frees an unused identity after its grace period.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {allocateIdentity, collectIdentities, identityForPod, labelEndpoint} from '../../src/cluster/identities.js'
import {applyPolicies, listPolicies} from '../../src/cluster/policies.js'
import {openClusterStore, type ClusterStore} from '../../src/cluster/store.js'
import {parseLabelChanges, podLabelSet} from '../../src/policy/labels.js'
import {TestEtcd} from '../helpers/etcd.js'

describe('identities and policies on etcd (real etcd on loopback)', function () {
  this.timeout(120_000)
  let dir: string
  let etcd: TestEtcd
  let a: ClusterStore
  let b: ClusterStore

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-policy-etcd-'))
    etcd = new TestEtcd(dir)
    await etcd.start()
    a = openClusterStore(etcd.location, {timeoutMs: 3000})
    b = openClusterStore(etcd.location, {timeoutMs: 3000})
    await a.init()
  })
  after(async () => {
    await a.close()
    await b.close()
    await etcd.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('20 label sets allocated twice each from two clients at once: one number per set, 20 distinct numbers', async () => {
    const sets = Array.from({length: 20}, (_, i) => podLabelSet('x', {app: `a${i}`}))
    const results = await Promise.all([...sets, ...sets].map((s, i) => allocateIdentity(i % 2 ? a : b, s)))
    const byKey = new Map<string, Set<number>>()
    results.forEach((r, i) => byKey.set(sets[i % 20].join(';'), (byKey.get(sets[i % 20].join(';')) ?? new Set()).add(r.id)))
    assert.ok([...byKey.values()].every((ids) => ids.size === 1), 'one number per set')
    const ids = [...byKey.values()].map((s) => [...s][0])
    assert.equal(new Set(ids).size, 20)
    assert.deepEqual([...ids].sort((x, y) => x - y), Array.from({length: 20}, (_, i) => 256 + i))
    assert.equal(results.filter((r) => r.created).length, 20)
  })

  it('a relabel rewrites the endpoint under its lease; the unused identity is freed after the grace period', async () => {
    const reg = await a.registerNode({name: 'n1', nodeIps: ['192.168.0.1'], podCidrs: ['10.1.0.0/24'], reach: 'direct'}, {ttlSeconds: 10})
    try {
      const {id} = await identityForPod(a, 'y', {app: 'web'})
      await a.publishEndpoint({ip: '10.1.0.5', node: 'n1', containerId: 'c1', namespace: 'y', pod: 'p', labels: {app: 'web'}, identity: id}, reg)
      const r = await labelEndpoint(b, 'y/p', parseLabelChanges(['app=db'], 'label'))
      assert.equal(r.endpoints[0].from, id)
      const after = (await a.snapshot()).endpoints.get('10.1.0.5')!
      assert.deepEqual([after.labels, after.identity], [{app: 'db'}, r.endpoints[0].to])
      const now = Date.now()
      assert.ok((await collectIdentities(a, {graceMs: 1000, now: () => now})).marked.includes(id))
      assert.ok((await collectIdentities(a, {graceMs: 1000, now: () => now + 1000})).freed.includes(id))
      assert.equal((await a.snapshot()).policy.identities.has(id), false)
    } finally {
      await reg.close({revoke: true})
    }
    assert.equal((await a.snapshot()).endpoints.size, 0, 'the relabelled endpoint went with the lease')
  })

  it('an apply of 250 policies (three transactions) lands whole; applying it again changes nothing', async () => {
    const items = Array.from({length: 250}, (_, i) => ({apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: {namespace: `ns${i % 5}`, name: `p${i}`}, spec: {podSelector: {matchLabels: {app: `a${i}`}}, ingress: [{ports: [{port: 80 + (i % 100)}]}]}}))
    const text = JSON.stringify({apiVersion: 'v1', kind: 'List', items})
    const r = await applyPolicies(a, {file: 'many.json', text})
    assert.equal(r.policies.filter((p) => p.action === 'create').length, 250)
    assert.equal((await listPolicies(b)).policies.length, 250)
    assert.equal((await applyPolicies(b, {file: 'many.json', text})).changed, false)
  })
})
