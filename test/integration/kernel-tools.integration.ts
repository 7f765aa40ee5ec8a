/**
 * The tools backend's tc, program and map ops against the real tools and kernel (root): what
 * tc and bpftool answer is read as the unit tests assume — a second clsact is EEXIST, a missing
 * filter, qdisc or device under missingOk is {deleted: false}, a missing pin is ENOENT
 * (PN_BPF_NOT_LOADED) and found at its index in a batch, entries come back as bytes.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, rmSync} from 'node:fs'
import path from 'node:path'
import {SpawnRunner} from '../../src/exec/runner.js'
import {KernelError} from '../../src/kernel/errors.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {ToolsBackend} from '../../src/kernel/tools.js'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted} from './node-fixture.integration.js'

const BPFFS = '/run/pn/bpffs'

describe('kernel ops: tc, programs and maps through the real tools (root, netns)', function () {
  this.timeout(60000)
  const kernel = new ToolsBackend(new SpawnRunner())
  let ns: {name: string; path: string}
  let dir: string
  const opts = () => ({netns: ns.path})
  const detach = (dev: string): KernelOp => ({kind: 'tc.detach', dev, direction: 'ingress', pref: 1, handle: 1, missingOk: true})

  before(() => {
    ns = createNamespace('kt')
    inNs(ns.name, ['ip', 'link', 'add', 'ka', 'type', 'veth', 'peer', 'name', 'kb'])
    ensureBpffsMounted()
    dir = path.join(BPFFS, `pn-kt-${randomBytes(3).toString('hex')}`)
    mkdirSync(dir)
    execFileSync('bpftool', ['map', 'create', path.join(dir, 'h'), 'type', 'hash', 'key', '4', 'value', '4', 'entries', '8', 'name', 'kt_h'])
    execFileSync('bpftool', ['map', 'create', path.join(dir, 'pc'), 'type', 'percpu_array', 'key', '4', 'value', '4', 'entries', '2', 'name', 'kt_pc'])
  })
  after(() => {
    cleanupNamespaces()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('qdisc: add, a second add is EEXIST, delete, a second delete (missingOk) finds nothing', async () => {
    assert.deepEqual(await kernel.apply([{kind: 'qdisc.add', dev: 'ka'}], opts()), [{kind: 'qdisc.add'}])
    await assert.rejects(kernel.apply([{kind: 'qdisc.add', dev: 'ka'}], opts()), (e: KernelError) => e.index === 0 && e.errno === 'EEXIST')
    assert.deepEqual(await kernel.apply([{kind: 'qdisc.del', dev: 'ka', missingOk: true}, {kind: 'qdisc.del', dev: 'ka', missingOk: true}], opts()),
      [{kind: 'qdisc.del', deleted: true}, {kind: 'qdisc.del', deleted: false}])
  })

  it('filters: none listed on a bare or absent device; a detach of nothing (no filter, no qdisc, no device) is {deleted: false}', async () => {
    await kernel.apply([{kind: 'qdisc.add', dev: 'kb'}], opts())
    const r = await kernel.apply([
      {kind: 'tc.list', dev: 'kb', direction: 'ingress'}, {kind: 'tc.list', dev: 'gone', direction: 'egress'},
      detach('kb'), detach('ka'), detach('gone'),
    ], opts())
    assert.deepEqual(r, [
      {kind: 'tc.list', filters: []}, {kind: 'tc.list', filters: []},
      {kind: 'tc.detach', deleted: false}, {kind: 'tc.detach', deleted: false}, {kind: 'tc.detach', deleted: false},
    ])
    await assert.rejects(kernel.apply([{kind: 'qdisc.add', dev: 'gone'}], opts()), (e: KernelError) => e.errno === 'ENODEV' && e.code === 'PN_LINK_NOT_FOUND')
    await kernel.apply([{kind: 'qdisc.del', dev: 'kb'}], opts())
  })

  it('a program pin that is missing: prog.get none; a qdisc + filter batch fails at the filter (index 1, ENOENT, PN_BPF_NOT_LOADED) with the qdisc made', async () => {
    const pinned = path.join(dir, 'nothing')
    assert.deepEqual(await kernel.apply([{kind: 'prog.get', pinned}], opts()), [{kind: 'prog.get', prog: undefined}])
    await assert.rejects(kernel.apply([{kind: 'qdisc.add', dev: 'ka'}, {kind: 'tc.attach', dev: 'ka', direction: 'ingress', pref: 1, handle: 1, pinned}], opts()),
      (e: KernelError) => e.index === 1 && e.errno === 'ENOENT' && e.code === 'PN_BPF_NOT_LOADED')
    assert.match(inNs(ns.name, ['tc', 'qdisc', 'show', 'dev', 'ka']), /clsact/)
    await kernel.apply([{kind: 'qdisc.del', dev: 'ka'}], opts())
  })

  it('map entries: a batch of writes, lookups (absent: none), a dump as bytes per CPU, a missingOk delete of nothing', async () => {
    const h = path.join(dir, 'h')
    const k = (n: number) => Buffer.from([n, 0, 0, 0])
    assert.deepEqual(await kernel.apply([
      {kind: 'map.update', map: h, key: k(1), value: k(10)},
      {kind: 'map.update', map: h, key: k(2), value: k(20)},
      {kind: 'map.delete', map: h, key: k(2)},
      {kind: 'map.delete', map: h, key: k(3), missingOk: true},
      {kind: 'map.update', map: h, key: k(4), value: k(40)},
      {kind: 'map.lookup', map: h, key: k(1)},
      {kind: 'map.lookup', map: h, key: k(2)},
    ]), [
      {kind: 'map.update'}, {kind: 'map.update'}, {kind: 'map.delete', deleted: true}, {kind: 'map.delete', deleted: false}, {kind: 'map.update'},
      {kind: 'map.lookup', value: k(10)}, {kind: 'map.lookup', value: undefined},
    ])
    const [dump, pc] = await kernel.apply([{kind: 'map.dump', map: h}, {kind: 'map.dump', map: path.join(dir, 'pc')}])
    assert.ok(dump.kind === 'map.dump' && pc.kind === 'map.dump')
    assert.deepEqual(dump.entries.map((e) => [e.key[0], e.value?.[0]]).sort(), [[1, 10], [4, 40]])
    assert.equal(pc.entries.length, 2)
    assert.ok(pc.entries.every((e) => e.values && e.values.length >= 1 && e.values.every((v) => v.length === 4)), 'one value per CPU')
  })

  it('a map write to a pin that is missing fails at its index: ENOENT, PN_BPF_NOT_LOADED; the ops before it took effect', async () => {
    const h = path.join(dir, 'h')
    const k = Buffer.from([7, 0, 0, 0])
    await assert.rejects(kernel.apply([
      {kind: 'map.update', map: h, key: k, value: k},
      {kind: 'map.update', map: path.join(dir, 'nothing'), key: k, value: k},
    ]), (e: KernelError) => e.index === 1 && e.errno === 'ENOENT' && e.code === 'PN_BPF_NOT_LOADED')
    assert.deepEqual(await kernel.apply([{kind: 'map.lookup', map: h, key: k}]), [{kind: 'map.lookup', value: k}])
  })
})
