/**
 * Service changes from a program (src/service/request.ts) through the client a runtime also
 * execs (dist/native/pn-cni with PN_AGENT_OP=service): served by the node agent, which keeps its
 * map writer between changes, and in-process when no agent answers. Both write the same table
 * and maps as `pn service`, interleaved with it; a bad request is an error envelope that changes
 * nothing; maps re-created under a running agent get the next change, not the old maps.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {cleanupNamespaces, isRoot} from '../helpers/netns.js'
import {REPO_ROOT} from '../helpers/cli.js'
import {cleanupHarness, createNode, startNodeAgent, stopNodeAgent, type CniNode} from './cni-harness.js'

const CLIENT = path.join(REPO_ROOT, 'dist/native/pn-cni')

describe('service requests through the client (agent and in-process)', function () {
  this.timeout(180_000)
  let node: CniNode

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    node = createNode({kind: 'pn-agent', podCidr: '10.217.0.0/24', routing: 'bpf', tag: 'svr'})
  })
  after(() => {
    cleanupNamespaces()
    cleanupHarness()
  })

  /** One request through the native client in the node netns: the envelope and exit code. */
  function request(body: Record<string, unknown>): {status: number; env: {status: string; result?: Record<string, unknown>; error?: {code: string; message: string}}} {
    const r = spawnSync('nsenter', [`--net=/run/netns/${node.ns}`, '--', CLIENT], {
      input: JSON.stringify({stateDir: node.stateDir, ...body}),
      env: {PATH: process.env.PATH, PN_AGENT_OP: 'service'},
      encoding: 'utf8',
    })
    return {status: r.status ?? 1, env: JSON.parse(r.stdout)}
  }
  const backendsOf = (frontend: string): string[] => {
    const out = pn(['service', 'list', '--state-dir', node.stateDir, '--json'], {netns: node.ns}).json!
    assert.deepEqual(out.warnings, [], 'table and maps disagree')
    const list = out.result as {frontend: string; backends: {address: string}[]}[]
    return (list.find((s) => s.frontend === frontend)?.backends ?? []).map((b) => b.address).sort()
  }
  const served = () => (pn(['agent', 'status', '--state-dir', node.stateDir, '--json']).json!.result as {stats: {served: number}}).stats.served

  it('the agent serves add, update, apply and del, interleaved with pn service, on one table', () => {
    const before = served()
    let r = request({op: 'add', frontend: '10.96.7.1:80/tcp', backends: ['10.217.0.10:8080']})
    assert.equal(r.status, 0, JSON.stringify(r.env))
    assert.equal(r.env.status, 'ok')
    assert.equal(r.env.result!.frontend, '10.96.7.1:80/tcp')
    assert.deepEqual(backendsOf('10.96.7.1:80/tcp'), ['10.217.0.10:8080'])
    // The CLI changes the same table in between; the agent's next change builds on it.
    assert.equal(pn(['service', 'add', '10.96.7.2:53/udp', '--backend', '10.217.0.11:5353', '--state-dir', node.stateDir, '--json'], {netns: node.ns}).status, 0)
    r = request({op: 'add', frontend: '10.96.7.1:80/tcp', backends: ['10.217.0.10:8080', '10.217.0.12:8080']})
    assert.equal(r.status, 0)
    assert.deepEqual(backendsOf('10.96.7.1:80/tcp'), ['10.217.0.10:8080', '10.217.0.12:8080'])
    assert.deepEqual(backendsOf('10.96.7.2:53/udp'), ['10.217.0.11:5353'])
    r = request({op: 'apply', services: [{frontend: '10.96.7.3:443/tcp', backends: ['10.217.0.13:8443']}], dryRun: true})
    assert.equal(r.status, 0)
    assert.deepEqual(backendsOf('10.96.7.1:80/tcp').length, 2, 'a dry run changed the table')
    r = request({op: 'apply', services: [{frontend: '10.96.7.3:443/tcp', backends: ['10.217.0.13:8443']}]})
    assert.equal(r.status, 0)
    assert.deepEqual(backendsOf('10.96.7.1:80/tcp'), [])
    assert.deepEqual(backendsOf('10.96.7.3:443/tcp'), ['10.217.0.13:8443'])
    r = request({op: 'del', frontend: '10.96.7.3:443/tcp'})
    assert.equal(r.status, 0)
    assert.deepEqual(backendsOf('10.96.7.3:443/tcp'), [])
    assert.equal(served(), before + 5, 'the requests did not go through the agent')
  })

  it('a bad request is an error envelope with the CLI exit code, and changes nothing', () => {
    request({op: 'add', frontend: '10.96.7.4:80/tcp', backends: ['10.217.0.14:80']})
    for (const [body, code] of [
      [{op: 'add', frontend: '10.96.7.4:80/tcp', backends: ['10.217.0.14:80', '10.217.0.14:80']}, 'PN_SERVICE_INVALID'],
      [{op: 'add', frontend: '10.217.0.5:80/tcp', backends: ['10.217.0.14:80']}, 'PN_SERVICE_CONFLICT'],
      [{op: 'move', frontend: '10.96.7.4:80/tcp'}, 'PN_SERVICE_INVALID'],
      [{op: 'add', frontend: '10.96.7.4:80/sctp', backends: ['10.217.0.14:80']}, 'PN_SERVICE_INVALID'],
    ] as const) {
      const r = request(body)
      assert.notEqual(r.status, 0, JSON.stringify(body))
      assert.equal(r.env.status, 'error')
      assert.equal(r.env.error!.code, code, `${JSON.stringify(body)}: ${r.env.error!.message}`)
    }
    assert.deepEqual(backendsOf('10.96.7.4:80/tcp'), ['10.217.0.14:80'])
  })

  it('maps re-created under a running agent get the next change (the addon re-opens pins whose inode changed)', () => {
    request({op: 'add', frontend: '10.96.7.5:80/tcp', backends: ['10.217.0.15:80']})
    const idOf = () => JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', path.join(node.bpffsRoot!, 'maps', 'pn_lb4_services')], {encoding: 'utf8'})).id as number
    const oldId = idOf()
    assert.equal(pn(['bpf', 'unload', '--host', '--force', '--state-dir', node.stateDir, '--json'], {netns: node.ns}).status, 0)
    assert.equal(pn(['bpf', 'load', '--host', '--state-dir', node.stateDir, '--json'], {netns: node.ns}).status, 0)
    assert.notEqual(idOf(), oldId, 'the maps were not re-created')
    const r = request({op: 'add', frontend: '10.96.7.6:80/tcp', backends: ['10.217.0.16:80']})
    assert.equal(r.status, 0, JSON.stringify(r.env))
    // The new maps hold the whole table again (resynced), including the service added before.
    assert.deepEqual(backendsOf('10.96.7.6:80/tcp'), ['10.217.0.16:80'])
    assert.deepEqual(backendsOf('10.96.7.5:80/tcp'), ['10.217.0.15:80'])
  })

  it('without an agent the client runs the same request in-process', () => {
    stopNodeAgent(node)
    try {
      const r = request({op: 'add', frontend: '10.96.7.7:80/tcp', backends: ['10.217.0.17:80']})
      assert.equal(r.status, 0, JSON.stringify(r.env))
      assert.deepEqual(backendsOf('10.96.7.7:80/tcp'), ['10.217.0.17:80'])
      const bad = request({op: 'del'})
      assert.equal(bad.env.error!.code, 'PN_SERVICE_INVALID')
    } finally {
      startNodeAgent(node)
    }
  })
})
