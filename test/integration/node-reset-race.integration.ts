/**
 * `pn node reset` racing CNI ADDs, as an operator would try it: 30 ADDs at once on a node, and
 * a reset 2 s later. Reset and ADD exclude each other (src/node/lock.ts): the reset waits for
 * the ADDs in flight, and ADDs that arrive while it runs are refused with CNI code 11 ("try
 * again later"). Afterwards nothing pn made is left — not the endpoints the ADDs finished, not
 * devices no record names, not lock files — and a second reset finds nothing.
 */
import assert from 'node:assert/strict'
import {existsSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'
import {cleanupHarness, createNode, invokeAsync, netconf, type CniNode} from './cni-harness.js'

const N = 30

describe('node reset racing CNI ADDs', function () {
  this.timeout(300_000)
  let node: CniNode
  const pods: {id: string; ns: string}[] = []

  before(() => {
    ensureBpffsMounted()
    node = createNode({podCidr: '10.231.0.0/24', routing: 'bpf', tag: 'rrace'})
    for (let i = 0; i < N; i++) pods.push({id: `race${i}`, ns: createNamespace('rrp').name})
  })
  after(() => {
    cleanupNamespaces()
    cleanupHarness()
  })

  it(`${N} parallel ADDs, then a reset 2 s later: they exclude each other and nothing is left`, async () => {
    const conf = netconf(node, '1.0.0')
    const adds = Promise.all(pods.map((p) =>
      invokeAsync(node, {command: 'ADD', containerId: p.id, netns: `/run/netns/${p.ns}`, ifname: 'eth0'}, conf)))
    await new Promise((r) => setTimeout(r, 2000))
    const reset = pn(['node', 'reset', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    const results = await adds
    assert.equal(reset.status, 0, reset.stdout + reset.stderr)

    // Every ADD either finished before the reset took the node (and was then removed by it), or
    // was refused: PN_NODE_BUSY (code 11) while the reset ran, or the node was gone after it.
    const outcomes = results.map((r) => (r.status === 0 ? 'ok' : `${r.json?.code}:${String(r.json?.details ?? '').split(';')[0]}`))
    for (const o of outcomes) assert.match(o, /^(ok|11:PN_NODE_BUSY|105:PN_NODE_NOT_INITIALIZED)$/, `unexpected ADD outcome ${o}`)
    const succeeded = outcomes.filter((o) => o === 'ok').length
    const removedEndpoints = (reset.json!.result.removed as string[]).filter((x) => x.startsWith('endpoint ')).length
    assert.equal(removedEndpoints, succeeded, `reset removed ${removedEndpoints} endpoints, ${succeeded} ADDs had succeeded`)

    // Nothing left: no lxc device (with or without filters), no pod side, no records, no pins, no lock files.
    assert.doesNotMatch(inNs(node.ns, ['ip', '-o', 'link']), /\blxc[0-9a-f]{12}\b|pn_host|pn_net/)
    for (const p of pods) assert.doesNotMatch(inNs(p.ns, ['ip', '-o', 'link']), /\beth0\b/, `${p.id} still has eth0`)
    assert.equal(existsSync(node.bpffsRoot), false, 'bpffs root removed')
    const left = readdirSync(node.stateDir).filter((f) => f !== 'node.lock' && f !== 'bpf')
    assert.deepEqual(left, [], `state dir holds ${left.join(', ')}`)
    assert.equal(existsSync(path.join(node.stateDir, 'cni')), false, 'attachment lock files removed')

    // Running it again is safe and finds nothing.
    const again = pn(['node', 'reset', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(again.status, 0, again.stdout + again.stderr)
    assert.deepEqual([again.json!.result.changed, again.json!.result.removed], [false, []])
    console.log(`      ${succeeded} ADDs finished before the reset, ${N - succeeded} were refused`)
  })

  it('an ADD while a reset holds the node is refused with code 11, and a pn device no record names is swept', async () => {
    const init = pn(['node', 'init', '--name', node.ns, '--device', 'up0', '--pod-cidr', '10.231.0.0/24', '--state-dir', node.stateDir,
      '--bpffs-root', node.bpffsRoot, '--json'], {netns: node.ns})
    assert.equal(init.status, 0, init.stdout + init.stderr)
    // A pn veth whose ADD died before its record: the from-container filter says it is pn's.
    const add = await invokeAsync(node, {command: 'ADD', containerId: 'orphan', netns: `/run/netns/${pods[0].ns}`, ifname: 'eth0'}, netconf(node, '1.0.0'))
    assert.equal(add.status, 0, add.stdout + add.stderr)
    const rec = path.join(node.stateDir, 'endpoints', 'orphan:eth0.json')
    const {rmSync} = await import('node:fs')
    rmSync(rec)
    // Hold the node the way a reset does (marker + exclusive lock) while an ADD arrives.
    const {withNodeExclusive} = await import('../../src/node/lock.js')
    const refused = await withNodeExclusive(node.stateDir, () =>
      invokeAsync(node, {command: 'ADD', containerId: 'late', netns: `/run/netns/${pods[1].ns}`, ifname: 'eth0'}, netconf(node, '1.0.0')))
    assert.equal(refused.status, 1)
    assert.equal(refused.json?.code, 11, refused.stdout)
    assert.match(refused.json?.msg ?? '', /pn node reset is running/)
    const reset = pn(['node', 'reset', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(reset.status, 0, reset.stdout + reset.stderr)
    assert.ok((reset.json!.result.removed as string[]).some((x) => /^stray pod device lxc[0-9a-f]{12}$/.test(x)), JSON.stringify(reset.json!.result))
    assert.doesNotMatch(inNs(node.ns, ['ip', '-o', 'link']), /\blxc[0-9a-f]{12}\b/)
  })
})
