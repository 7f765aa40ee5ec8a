/**
 * Manual mode: `pn cni add|check|del|status|gc` run the same flows as bin/pn-cni and print the
 * same CNI result (or the pn envelope with --json); on a terminal ADD shows its steps.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {cleanupNamespaces, createNamespace, inNs, ping} from '../helpers/netns.js'
import {pn, PN_BIN} from '../helpers/cli.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {cleanupHarness, createNode, nodeLinks, pnState, type CniNode} from './cni-harness.js'

describe('cni manual mode (pn cni add/check/del/status/gc)', function () {
  this.timeout(120_000)
  let node: CniNode
  const cli = (args: string[]) => pn([...args, '--state-dir', node.stateDir], {netns: node.ns})

  before(() => {
    node = createNode({podCidr: '10.241.0.0/24', routing: 'bpf', tag: 'cnm'})
  })
  after(() => {
    cleanupNamespaces()
    cleanupHarness()
  })

  it('add prints the CNI result (envelope with --json), check passes, del is idempotent', () => {
    const pod = createNamespace('cpm').name
    const add = cli(['cni', 'add', '--container-id', 'm1', '--netns', `/run/netns/${pod}`, '--cni-version', '0.4.0',
      '--args', 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=web', '--json'])
    assert.equal(add.status, 0, add.stdout + add.stderr)
    assert.equal(add.json?.status, 'ok')
    const r = add.json!.result
    assert.equal(r.cniVersion, '0.4.0')
    assert.equal(r.interfaces[0].name, hostIfnameFor('m1', 'eth0'))
    assert.equal(r.ips[0].version, '4')
    assert.ok(ping(pod, node.gateway))
    const ep = pn(['endpoint', 'show', '--container-id', 'm1', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(ep.status, 0, ep.stdout + ep.stderr)
    assert.equal(ep.json?.result?.podName, 'web')
    assert.equal(ep.json?.result?.podNamespace, 'default')
    assert.equal(ep.json?.result?.bpfAttached, true)

    const check = cli(['cni', 'check', '--container-id', 'm1', '--netns', `/run/netns/${pod}`, '--json'])
    assert.equal(check.status, 0, check.stdout + check.stderr)
    assert.ok(check.json!.result.checked.includes('bpf'))

    // Break the pod's routes: CHECK names what is wrong.
    inNs(pod, ['ip', 'route', 'del', 'default'])
    const bad = cli(['cni', 'check', '--container-id', 'm1', '--netns', `/run/netns/${pod}`, '--json'])
    assert.notEqual(bad.status, 0)
    assert.equal(bad.json?.error?.code, 'PN_CHECK_FAILED')
    assert.match(bad.json!.error!.message, /route 0\.0\.0\.0\/0 via/)

    const plain = cli(['cni', 'del', '--container-id', 'm1', '--netns', `/run/netns/${pod}`])
    assert.equal(plain.status, 0, plain.stderr)
    assert.match(plain.stdout, /deleted m1:eth0/)
    const again = cli(['cni', 'del', '--container-id', 'm1', '--json'])
    assert.equal(again.status, 0)
    assert.equal(again.json!.result.veth, false)
    assert.deepEqual(pnState(node).owners, [])
  })

  it('add on a terminal shows each step as a task list', () => {
    const pod = createNamespace('cpm').name
    const cmd = ['ip', 'netns', 'exec', node.ns, process.execPath, PN_BIN, 'cni', 'add', '--container-id', 'tty1',
      '--netns', `/run/netns/${pod}`, '--state-dir', node.stateDir].join(' ')
    const r = spawnSync('script', ['-qec', `stty cols 200 rows 50; ${cmd}`, '/dev/null'], {encoding: 'utf8', env: {...process.env, NO_COLOR: '1', TERM: 'dumb'}})
    assert.equal(r.status, 0, r.stdout + r.stderr)
    for (const step of ['ipam: allocate', 'veth: create', 'endpoint: write', 'bpf: attach', 'ipam: confirm']) {
      assert.ok(r.stdout.includes(step), `step "${step}" not shown:\n${r.stdout}`)
    }
    assert.match(r.stdout, /"cniVersion": "1\.1\.0"/)
    assert.ok(ping(pod, node.gateway))
  })

  it('status reports free addresses; gc keeps only what is listed', () => {
    const st = cli(['cni', 'status', '--json'])
    assert.equal(st.status, 0, st.stdout + st.stderr)
    assert.ok(st.json!.result.ranges[0].free > 0)
    const pod = createNamespace('cpm').name
    assert.equal(cli(['cni', 'add', '--container-id', 'keepme', '--netns', `/run/netns/${pod}`, '--json']).status, 0)
    const gc = cli(['cni', 'gc', '--keep', 'keepme:eth0', '--json'])
    assert.equal(gc.status, 0, gc.stdout + gc.stderr)
    assert.deepEqual(gc.json!.result.kept, ['keepme:eth0'])
    assert.ok(gc.json!.result.removed.includes('tty1:eth0'))
    assert.deepEqual(nodeLinks(node), [hostIfnameFor('keepme', 'eth0')])
    assert.ok(ping(pod, node.gateway))
    assert.equal(cli(['cni', 'gc', '--json']).status, 0)
    assert.deepEqual(nodeLinks(node), [])
  })
})
