/**
 * A map joins a running node without an unload: a node whose pinned maps are a subset of the
 * current set (what a node loaded by an older pn looks like) gets the missing ones created from
 * their descriptors and pinned, the existing ones (and their entries) reused. A counters-only map
 * pinned with an older layout is replaced; any other map of another layout refuses the load.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {existsSync, rmSync} from 'node:fs'
import path from 'node:path'
import {MAPS} from '../../src/datapath/bpf/maps/index.js'
import {cleanupNamespaces, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

describe('bpf maps: a node with some of the maps gets the rest on load', function () {
  this.timeout(120_000)
  let n: ReturnType<typeof makeNode>

  before(() => {
    ensureBpffsMounted()
    n = makeNode('mapup')
    const init = n.run(['node', 'init', '--name', n.node, '--device', 'eth0', '--pod-cidr', '10.63.0.0/24', '--bpffs-root', n.bpffsRoot])
    assert.equal(init.status, 0, init.stdout + init.stderr)
  })
  after(() => {
    n.run(['node', 'reset'])
    cleanupNamespaces()
    rmSync(n.stateDir, {recursive: true, force: true})
  })

  it('unpinning a map and the programs, then `pn bpf load --host`, creates the map and keeps the others', () => {
    const before = n.run(['bpf', 'map', 'dump', 'pn_endpoints']).json!.result.entries
    assert.equal(before.length, 1, 'the router IP entry')
    // An "older" node: pn_ipcache never pinned, and the programs of the old build unpinned.
    rmSync(path.join(n.bpffsRoot, 'progs'), {recursive: true})
    rmSync(path.join(n.bpffsRoot, 'maps', 'pn_ipcache'))
    const r = n.run(['bpf', 'load', '--host'])
    assert.equal(r.status, 0, r.stdout + r.stderr)
    assert.deepEqual(r.json!.result.createdMaps, ['pn_ipcache'])
    assert.equal(r.json!.result.loaded, true)
    for (const m of MAPS) assert.ok(existsSync(path.join(n.bpffsRoot, 'maps', m.name)), `${m.name} pinned`)
    const list = n.run(['bpf', 'map', 'list']).json!.result as {name: string; type: string; maxEntries: number}[]
    const ipcache = list.find((m) => m.name === 'pn_ipcache')!
    assert.deepEqual([ipcache.type, ipcache.maxEntries], ['lpm_trie', 65536])
    // The program now running on the uplink uses the same pn_endpoints the node had (router entry kept).
    assert.deepEqual(n.run(['bpf', 'map', 'dump', 'pn_endpoints']).json!.result.entries, before)
    assert.match(inNs(n.node, ['tc', 'filter', 'show', 'dev', 'eth0', 'ingress']), /from_netdev/)
  })

  /** Pin a map of another layout in place of `name` (what an older pn left). */
  function pinOld(name: string, args: string[]): void {
    const p = path.join(n.bpffsRoot, 'maps', name)
    rmSync(p)
    execFileSync('bpftool', ['map', 'create', p, ...args, 'name', name])
  }

  it('a counters map pinned with an older layout (pn_metrics as a per-CPU hash) is replaced on load, and says so', () => {
    rmSync(path.join(n.bpffsRoot, 'progs'), {recursive: true})
    pinOld('pn_metrics', ['type', 'percpu_hash', 'key', '4', 'value', '16', 'entries', '1024'])
    const r = n.run(['bpf', 'load', '--host'])
    assert.equal(r.status, 0, r.stdout + r.stderr)
    assert.deepEqual(r.json!.result.replacedMaps, ['pn_metrics'])
    assert.deepEqual(r.json!.result.createdMaps, [])
    assert.ok((r.json!.warnings as string[]).some((w) => /replaced pn_metrics/.test(w)), JSON.stringify(r.json!.warnings))
    const list = n.run(['bpf', 'map', 'list']).json!.result as {name: string; type: string; maxEntries: number}[]
    const metrics = list.find((m) => m.name === 'pn_metrics')!
    assert.equal(metrics.type, 'percpu_array')
    assert.equal(metrics.maxEntries, 4096)
  })

  it('any other map of another layout refuses the load before anything is pinned, naming the map', () => {
    rmSync(path.join(n.bpffsRoot, 'progs'), {recursive: true})
    pinOld('pn_lb4_gate', ['type', 'array', 'key', '4', 'value', '8', 'entries', '1'])
    const r = n.run(['bpf', 'load', '--host'])
    assert.notEqual(r.status, 0)
    assert.equal(r.json!.error!.code, 'PN_BPF_LOAD_FAILED')
    assert.match(r.json!.error!.message, /pn_lb4_gate is array key 4 value 8 entries 1, this pn needs array key 4 value 4 entries 1/)
    assert.ok(!existsSync(path.join(n.bpffsRoot, 'progs', 'from_container')), 'no program pinned')
    // Put the right one back (unload --force is the documented way; here the test's own cleanup).
    pinOld('pn_lb4_gate', ['type', 'array', 'key', '4', 'value', '4', 'entries', '1'])
    assert.equal(n.run(['bpf', 'load', '--host']).status, 0)
  })
})
