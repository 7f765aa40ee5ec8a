/**
 * The consistency check against a real kernel: stale BPF entries (what `pn endpoint delete`
 * without --purge and then DEL leave behind, or an entry written by hand with bpftool) make
 * `pn status` not ok and are named; `pn cni gc` and the reconcile of `pn node init` remove them;
 * a live endpoint whose entry was removed gets it back. Also `pn bpf map dump` of the event
 * array, and `pn monitor` on a host-routes node.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import path from 'node:path'
import {cleanupNamespaces, createNamespace, inNs, ping} from '../helpers/netns.js'
import {pn, PN_BIN} from '../helpers/cli.js'
import {encodeEndpointInfo, encodeEndpointKey, encodeLxcKey} from '../../src/datapath/bpf/maps/index.js'
import {add, cleanupHarness, createNode, destroyNode, mapIps, pnState, type CniNode} from './cni-harness.js'

const BPFFS = '/run/pn/bpffs'
const V = '1.1.0'
const hex = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0'))

interface StatusItem {name: string; kind: string; state: string; problems: string[]}

describe('node consistency (pn status, pn cni gc, reconcile)', function () {
  this.timeout(180_000)
  let node: CniNode
  let hr: CniNode
  let keptPod = ''
  const cli = (n: CniNode, args: string[]) => pn([...args, '--state-dir', n.stateDir, '--json'], {netns: n.ns})
  const status = (n: CniNode) => {
    const r = cli(n, ['status'])
    assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    const res = r.json!.result
    const consistency = (res.sections as {name: string; items: StatusItem[]}[]).find((s) => s.name === 'consistency')!
    return {state: res.state as string, items: consistency.items}
  }
  const bpftool = (args: string[]) => inNs(node.ns, ['bpftool', ...args])
  const mapFile = (m: string) => path.join(node.bpffsRoot, 'maps', m)

  before(() => {
    mkdirSync(BPFFS, {recursive: true})
    if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
    node = createNode({podCidr: '10.233.0.0/24', routing: 'bpf', tag: 'csb'})
    hr = createNode({podCidr: '10.234.0.0/24', routing: 'host-routes', tag: 'csh'})
  })
  after(() => {
    if (node) destroyNode(node)
    if (hr) destroyNode(hr)
    cleanupNamespaces()
    cleanupHarness()
  })

  it('a fresh node with pods is consistent', () => {
    keptPod = createNamespace('csa').name
    assert.equal(add(node, V, 'keep1', keptPod).status, 0)
    const s = status(node)
    assert.deepEqual(s.items, [])
    assert.equal(s.state, 'ok')
  })

  it('endpoint delete (no --purge) + DEL leave pn_endpoints, pn_ipcache and pn_lxc entries: status names them, gc removes them', () => {
    const b = createNamespace('csb').name
    const r = add(node, V, 'gone1', b)
    assert.equal(r.status, 0, r.stdout)
    const ip = r.json.ips[0].address.split('/')[0]
    assert.equal(cli(node, ['endpoint', 'delete', '--container-id', 'gone1']).status, 0)
    assert.equal(cli(node, ['cni', 'del', '--container-id', 'gone1', '--netns', `/run/netns/${b}`]).status, 0)
    assert.ok(mapIps(node).includes(ip), 'the scenario leaves the pn_endpoints entry')

    const s = status(node)
    assert.notEqual(s.state, 'ok')
    assert.deepEqual(s.items.map((i) => i.kind), ['stale-map-entry', 'stale-map-entry', 'stale-map-entry'])
    assert.deepEqual(s.items.map((i) => i.name.replace(/ifindex \d+$/, 'ifindex N')).sort(), [`pn_endpoints ${ip}`, `pn_ipcache ${ip}/32`, 'pn_lxc ifindex N'])
    assert.match(s.items.find((i) => i.name === `pn_endpoints ${ip}`)!.problems[0], /which no longer exists/)

    const gc = cli(node, ['cni', 'gc', '--keep', 'keep1:eth0'])
    assert.equal(gc.status, 0, gc.stdout)
    assert.equal(gc.json!.result.repaired.length, 3)
    assert.equal(mapIps(node).includes(ip), false)
    assert.equal(mapIps(node, 'pn_ipcache').includes(`${ip}/32`), false)
    assert.equal(status(node).state, 'ok')
  })

  it('a pod whose record alone was deleted: gc keeps it while the runtime lists it valid, status reports it; gc without it removes it', () => {
    const c = createNamespace('csk').name
    assert.equal(add(node, V, 'norec1', c).status, 0)
    const del = cli(node, ['endpoint', 'delete', '--container-id', 'norec1'])
    assert.equal(del.status, 0)
    assert.match(del.json!.warnings!.join(' '), /stay; `pn status` reports them and `pn cni gc` removes them/)
    const kinds = () => status(node).items.map((i) => i.kind).sort()
    assert.deepEqual(kinds(), ['orphan-ip', 'stale-map-entry', 'stale-map-entry', 'stale-map-entry'])
    const keep = cli(node, ['cni', 'gc', '--keep', 'keep1:eth0', '--keep', 'norec1:eth0'])
    assert.equal(keep.status, 0, keep.stdout)
    assert.deepEqual(keep.json!.result.repaired, [])
    assert.ok(ping(c, node.gateway), 'gc took down a pod its runtime lists as valid')
    assert.deepEqual(kinds(), ['orphan-ip', 'stale-map-entry', 'stale-map-entry', 'stale-map-entry'])
    const gc = cli(node, ['cni', 'gc', '--keep', 'keep1:eth0'])
    assert.equal(gc.status, 0, gc.stdout)
    assert.equal(status(node).state, 'ok')
    assert.deepEqual(pnState(node).owners, ['keep1:eth0'])
  })

  it('a stale entry written by hand with bpftool is reported and removed by gc; the kept pod still works', () => {
    bpftool(['map', 'update', 'pinned', mapFile('pn_endpoints'), 'key', 'hex', ...hex(encodeEndpointKey('10.233.0.250')),
      'value', 'hex', ...hex(encodeEndpointInfo({ifindex: 4242, endpointId: 77, flags: 0, podMac: '02:00:00:00:00:01', lxcMac: '02:00:00:00:00:02'}))])
    const s = status(node)
    assert.equal(s.state, 'drifted')
    assert.deepEqual(s.items.map((i) => i.name), ['pn_endpoints 10.233.0.250'])
    assert.match(s.items[0].problems[0], /ifindex 4242, which no longer exists \(endpoint 77\)/)
    const gc = cli(node, ['cni', 'gc', '--keep', 'keep1:eth0'])
    assert.equal(gc.status, 0, gc.stdout)
    assert.deepEqual(gc.json!.result.removed, [])
    assert.deepEqual(gc.json!.result.repaired.map((x: {subject: string}) => x.subject), ['pn_endpoints 10.233.0.250'])
    assert.equal(status(node).state, 'ok')
    assert.ok(ping(keptPod, node.gateway))
  })

  it('a live endpoint whose pn_lxc entry is gone is reported missing and gets it back from gc', () => {
    const ep = cli(node, ['endpoint', 'show', '--container-id', 'keep1']).json!.result
    bpftool(['map', 'delete', 'pinned', mapFile('pn_lxc'), 'key', 'hex', ...hex(encodeLxcKey(ep.hostIfindex))])
    const s = status(node)
    assert.equal(s.state, 'missing')
    assert.deepEqual(s.items.map((i) => i.kind), ['record-without-map-entry'])
    assert.match(s.items[0].problems[0], new RegExp(`missing pn_lxc ${ep.hostIfindex}`))
    // By its numeric id, as status prints it.
    assert.equal(cli(node, ['endpoint', 'show', String(ep.endpointId)]).json!.result.id, 'keep1:eth0')
    assert.equal(cli(node, ['cni', 'gc', '--keep', 'keep1:eth0']).status, 0)
    assert.equal(status(node).state, 'ok')
    assert.ok(ping(keptPod, node.gateway), 'the kept pod lost its connectivity')
  })

  it('the reconcile of pn node init removes a stale entry too', () => {
    bpftool(['map', 'update', 'pinned', mapFile('pn_endpoints'), 'key', 'hex', ...hex(encodeEndpointKey('10.233.0.251')),
      'value', 'hex', ...hex(encodeEndpointInfo({ifindex: 4243, endpointId: 78, flags: 0, podMac: '02:00:00:00:00:01', lxcMac: '02:00:00:00:00:02'}))])
    const init = cli(node, ['node', 'init', '--name', node.ns, '--device', 'up0', '--pod-cidr', node.podCidr, '--routing', 'bpf', '--bpffs-root', node.bpffsRoot])
    assert.equal(init.status, 0, init.stdout)
    assert.deepEqual(init.json!.result.reconciled.repaired.map((x: {subject: string}) => x.subject), ['pn_endpoints 10.233.0.251'])
    assert.equal(mapIps(node).includes('10.233.0.251'), false)
    assert.equal(status(node).state, 'ok')
  })

  it('pn bpf map dump pn_events shows its CPU slots and says to read it with pn monitor; a typo is an unknown map', () => {
    const ev = cli(node, ['bpf', 'map', 'dump', 'pn_events'])
    assert.equal(ev.status, 0, ev.stdout)
    assert.ok(ev.json!.result.entries.length >= 1)
    assert.ok(ev.json!.result.entries.every((e: {key: {cpu: number}}) => typeof e.key.cpu === 'number'))
    assert.match(ev.json!.result.note, /event stream.*pn monitor/)
    const typo = cli(node, ['bpf', 'map', 'dump', 'pn_drops'])
    assert.equal(typo.json?.error?.code, 'PN_INVALID_ARGUMENT')
    assert.doesNotMatch(typo.json!.error!.hint ?? '', /load the datapath/)
    assert.match(typo.json!.error!.hint ?? '', /pn_endpoints/)
  })

  it('host-routes node: consistent with a pod; pn monitor says it has no events instead of suggesting a load that status calls drift', () => {
    const a = createNamespace('csr').name
    assert.equal(add(hr, V, 'hr1', a).status, 0)
    assert.equal(status(hr).state, 'ok')
    const mon = spawnSync('ip', ['netns', 'exec', hr.ns, process.execPath, PN_BIN, 'monitor', '--count', '1', '--state-dir', hr.stateDir, '--json'],
      {encoding: 'utf8', timeout: 30_000})
    const err = JSON.parse(mon.stdout).error
    assert.equal(err.code, 'PN_BPF_NOT_LOADED')
    assert.match(err.message, /routing is host-routes/)
    assert.doesNotMatch(err.hint, /bpf load --host/)
    // A host route removed by hand is a record without its kernel part, and gc adds it back.
    const ip = cli(hr, ['endpoint', 'show', '--container-id', 'hr1']).json!.result.ips[0]
    const dev = cli(hr, ['endpoint', 'show', '--container-id', 'hr1']).json!.result.hostIfname
    inNs(hr.ns, ['ip', 'route', 'del', `${ip}/32`, 'dev', dev])
    const s = status(hr)
    assert.deepEqual(s.items.map((i) => i.kind), ['record-without-route'])
    assert.equal(cli(hr, ['cni', 'gc', '--keep', 'hr1:eth0']).status, 0)
    assert.equal(status(hr).state, 'ok')
    assert.ok(ping(a, hr.gateway))
  })
})
