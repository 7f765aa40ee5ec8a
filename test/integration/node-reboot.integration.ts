/**
 * A node reboot, simulated inside throwaway `pn-is…` namespaces: the state dir survives, while the
 * pods' namespaces, the host devices and the bpffs pins do not. `pn node init` afterwards must reap
 * the endpoints whose netns and veth are gone, free their IPs and say so (text and --json), and
 * keep a pod that is still alive. Debian's host-local, run the same way, keeps its reservations.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {pn} from '../helpers/cli.js'
import {createNamespace, deleteNamespace, inNs, tryInNs} from '../helpers/netns.js'
import {add, cleanupHarness, createNode, destroyNode, hostLocalOwners, nodeLinks, pnState, podIps, type CniNode} from './cni-harness.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const V = '1.0.0'

describe('node reboot: pn node init reaps what the reboot took (root, netns)', function () {
  this.timeout(300_000)
  let node: CniNode
  const pods: string[] = []

  const init = (json = true) =>
    pn(['node', 'init', '--name', node.ns, '--device', 'up0', '--pod-cidr', node.podCidr, '--routing', node.routing,
      '--state-dir', node.stateDir, '--bpffs-root', node.bpffsRoot, ...(json ? ['--json'] : [])], {netns: node.ns})

  /** What a reboot does to the kernel side: the pods' netns go, and with them their veths; host devices and pins go. */
  function reboot(gone: string[]): void {
    for (const p of gone) deleteNamespace(p)
    for (const dev of ['pn_host', 'pn_net']) tryInNs(node.ns, ['ip', 'link', 'del', dev])
    spawnSync('rm', ['-rf', node.bpffsRoot])
    // A deleted netns takes its veths with it, but asynchronously (the kernel's cleanup_net
    // workqueue): on a loaded machine the host ends linger for a moment. A reboot has no such lag.
    const until = Date.now() + 10_000
    while (nodeLinks(node).length > pods.length - gone.length && Date.now() < until) spawnSync('sleep', ['0.05'])
  }

  before(() => {
    ensureBpffsMounted()
    node = createNode({podCidr: '10.64.7.0/24', routing: 'bpf', tag: 'isrb'})
  })
  after(() => {
    for (const p of pods) deleteNamespace(p)
    if (node) destroyNode(node)
    cleanupHarness()
  })

  it('reaps the endpoints whose netns and veth are gone, frees their IPs, keeps a live pod, and reports it', () => {
    const ips = new Map<string, string>()
    for (let i = 0; i < 4; i++) {
      const pod = createNamespace('isp').name
      pods.push(pod)
      const r = add(node, V, `rb${i}`, pod)
      assert.equal(r.status, 0, r.stdout + r.stderr)
      ips.set(`rb${i}:eth0`, podIps(pod)[0])
    }
    assert.equal(nodeLinks(node).length, 4)
    // Pods 0-2 went down with the "reboot"; pod 3 is one that is still alive (its netns and veth remain).
    reboot(pods.slice(0, 3))
    assert.equal(nodeLinks(node).length, 1)
    assert.deepEqual(pnState(node).endpoints.sort(), ['rb0:eth0', 'rb1:eth0', 'rb2:eth0', 'rb3:eth0'], 'the state dir survived')

    const r = init()
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    const rc = r.json!.result.reconciled
    assert.deepEqual(rc.reaped.map((e: {id: string}) => e.id).sort(), ['rb0:eth0', 'rb1:eth0', 'rb2:eth0'])
    for (const e of rc.reaped) assert.deepEqual(e.ips, [ips.get(e.id)], `${e.id} released its IP`)
    assert.equal(rc.kept, 1)
    assert.deepEqual(rc.errors, [])
    assert.ok(r.json!.result.actions.some((a: string) => /reaped 3 endpoint/.test(a)), r.stdout)
    const after = pnState(node)
    assert.deepEqual(after.endpoints, ['rb3:eth0'])
    assert.deepEqual(after.owners, ['rb3:eth0'])
    assert.match(inNs(node.ns, ['ip', 'link', 'show', 'pn_host']), /pn_host/, 'node init recreated the host devices')
    // The freed addresses are handed out again: fill the /24 and find every reaped one among them.
    const list = pn(['ipam', 'show', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(list.json?.result[0].used, 2, 'router + the live pod')
    for (const i of [0, 1, 2]) {
      const got = pn(['ipam', 'alloc', '--state-dir', node.stateDir, '--ip', ips.get(`rb${i}:eth0`)!, '--owner', `again${i}`, '--json'], {netns: node.ns})
      assert.equal(got.json?.status, 'ok', `${ips.get(`rb${i}:eth0`)} is free again: ${got.stdout}`)
      pn(['ipam', 'release', '--state-dir', node.stateDir, '--owner', `again${i}`, '--json'], {netns: node.ns})
    }

    // Nothing left to reap: a re-run reports none.
    const again = init()
    assert.deepEqual(again.json?.result.reconciled.reaped, [])

    // A second reboot, reported in text mode.
    reboot([pods[3]])
    const text = init(false)
    assert.equal(text.status, 0, text.stdout + text.stderr)
    assert.match(text.stdout, /reaped 1 endpoint\(s\) whose netns and veth are gone/)
    assert.match(text.stdout, new RegExp(`rb3:eth0 .*released ${ips.get('rb3:eth0')!.replace(/\./g, '\\.')}`))
    assert.deepEqual(pnState(node), {owners: [], endpoints: []})
  })

  it('host-local (the reference) keeps its reservations across the same reboot unless its dataDir is on tmpfs', () => {
    const ref = createNode({kind: 'ptp', podCidr: '10.64.8.0/24', tag: 'isrf'})
    try {
      const pod = createNamespace('isq').name
      pods.push(pod)
      assert.equal(add(ref, V, 'hl0', pod).status, 0)
      deleteNamespace(pod)
      assert.deepEqual(hostLocalOwners(ref).map((o) => o.split(/\r?\n/)[0]), ['hl0'], 'host-local still holds the IP of a pod that is gone')
    } finally {
      destroyNode(ref)
    }
  })
})
