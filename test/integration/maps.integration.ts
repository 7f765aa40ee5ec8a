/**
 * The one map writer (native/pn-sys.c through src/kernel/maps.ts and the record frames of
 * src/datapath/bpf/op-list.ts) on real pinned maps: created with bpftool under a throwaway
 * folder of pn's bpffs, read back with bpftool.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {openMapWriter, OP_DELETE, OP_UPDATE, OpList, KEY_OFFSET, VALUE_OFFSET} from '../../src/datapath/bpf/op-list.js'
import {KernelError} from '../../src/kernel/errors.js'
import {ToolsBackend} from '../../src/kernel/tools.js'
import {SpawnRunner} from '../../src/exec/runner.js'
import {MapBackend} from '../../src/kernel/maps.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {sys} from '../../src/exec/sys.js'
import {isPnError} from '../../src/errors.js'
import {isRoot} from '../helpers/netns.js'

const BPFFS = '/run/pn/bpffs'

function bpftool(...args: string[]): string {
  return execFileSync('bpftool', args, {encoding: 'utf8'})
}

/** bpftool's JSON dump: key/value as hex strings (little endian bytes). */
function dump(pin: string): Map<string, string> {
  const out = JSON.parse(bpftool('-j', 'map', 'dump', 'pinned', pin)) as {key: string[]; value: string[]}[]
  const hex = (a: string[]) => a.map((b) => b.replace(/^0x/, '')).join('')
  return new Map(out.map((e) => [hex(e.key), hex(e.value)]))
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}
const u64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(n))
  return b
}

describe('map writer on pinned maps (root)', function () {
  this.timeout(60_000)
  let root: string
  const backend = new MapBackend()
  const pin = (name: string) => path.join(root, name)
  const create = (name: string, type: string, key: number, value: number, entries: number) => {
    bpftool('map', 'create', pin(name), 'type', type, 'key', String(key), 'value', String(value), 'entries', String(entries), 'name', path.basename(name).slice(0, 15))
    return pin(name)
  }

  before(function () {
    if (!isRoot()) throw new Error('these tests need root (bpffs, bpf(2))')
    mkdirSync(BPFFS, {recursive: true})
  })
  beforeEach(() => {
    root = mkdtempSync(path.join(BPFFS, 'pn-mt-'))
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))

  it('updates and deletes of one map are batch syscalls; lookup and dump read them back', async () => {
    const m = create('h', 'hash', 4, 8, 2048)
    const info = sys().mapInfo(m)
    assert.deepEqual([info.batchUpdate, info.batchDelete], [true, true], 'a hash map has both batch ops')
    const ups: KernelOp[] = Array.from({length: 1000}, (_, i) => ({kind: 'map.update', map: m, key: u32(i), value: u64(i * 1000)}))
    const r = await backend.apply(ups)
    assert.equal(r.length, 1000)
    assert.deepEqual(r[0], {kind: 'map.update'})
    const seen = dump(m)
    assert.equal(seen.size, 1000)
    assert.equal(seen.get(u32(42).toString('hex')), u64(42_000).toString('hex'))
    const [hit, miss] = await backend.apply([
      {kind: 'map.lookup', map: m, key: u32(7)},
      {kind: 'map.lookup', map: m, key: u32(7777)},
    ])
    assert.deepEqual(hit, {kind: 'map.lookup', value: u64(7000)})
    assert.deepEqual(miss, {kind: 'map.lookup', value: undefined})
    const dels = await backend.apply(Array.from({length: 500}, (_, i) => ({kind: 'map.delete' as const, map: m, key: u32(i * 2)})))
    assert.ok(dels.every((d) => d.kind === 'map.delete' && d.deleted))
    const [d] = await backend.apply([{kind: 'map.dump', map: m}])
    assert.equal(d.kind, 'map.dump')
    const entries = (d as {entries: {key: Buffer; value?: Buffer}[]}).entries
    assert.equal(entries.length, 500)
    assert.deepEqual(entries.map((e) => e.key.readUInt32LE(0)).sort((a, b) => a - b), Array.from({length: 500}, (_, i) => i * 2 + 1))
    assert.ok(entries.every((e) => e.value!.readBigUInt64LE(0) === BigInt(e.key.readUInt32LE(0) * 1000)))
  })

  it('a missing key: missingOk is {deleted: false}; otherwise a KernelError naming the op (index, ENOENT), the ops before it applied', async () => {
    const m = create('h', 'hash', 4, 8, 16)
    await backend.apply([1, 2, 3].map((i) => ({kind: 'map.update' as const, map: m, key: u32(i), value: u64(i)})))
    const r = await backend.apply([1, 9, 2].map((i) => ({kind: 'map.delete' as const, map: m, key: u32(i), missingOk: true})))
    assert.deepEqual(r, [{kind: 'map.delete', deleted: true}, {kind: 'map.delete', deleted: false}, {kind: 'map.delete', deleted: true}])
    await backend.apply([{kind: 'map.update', map: m, key: u32(1), value: u64(1)}])
    const ops: KernelOp[] = [
      {kind: 'map.update', map: m, key: u32(5), value: u64(5)},
      {kind: 'map.delete', map: m, key: u32(1)},
      {kind: 'map.delete', map: m, key: u32(8)},
      {kind: 'map.delete', map: m, key: u32(3)},
    ]
    await assert.rejects(backend.apply(ops), (e) => e instanceof KernelError && e.index === 2 && e.errno === 'ENOENT' && e.op === ops[2] && /delete h entry 08000000/.test(e.message))
    assert.deepEqual([...dump(m).keys()].sort(), [u32(3), u32(5)].map((b) => b.toString('hex')).sort(), 'ops 0 and 1 applied, op 3 not')
  })

  it('a map full mid-batch fails at the entry the kernel refused (E2BIG), after the ones it took', async () => {
    const m = create('small', 'hash', 4, 8, 4)
    const ops = Array.from({length: 6}, (_, i) => ({kind: 'map.update' as const, map: m, key: u32(i), value: u64(i)}))
    await assert.rejects(backend.apply(ops), (e) => e instanceof KernelError && e.index === 4 && e.errno === 'E2BIG')
    assert.equal(dump(m).size, 4)
  })

  it('a map type without batch ops is written one element a syscall, with the same results', async () => {
    const m = create('dh', 'devmap_hash', 4, 4, 8)
    const info = sys().mapInfo(m)
    assert.deepEqual([info.batchUpdate, info.batchDelete], [false, false], 'devmap_hash has no batch ops (the per-element path runs)')
    // Every value is ifindex 1 (lo).
    await backend.apply([1, 2, 3].map((i) => ({kind: 'map.update' as const, map: m, key: u32(i), value: u32(1)})))
    assert.deepEqual([...dump(m).keys()].sort(), [1, 2, 3].map((i) => u32(i).toString('hex')))
    const r = await backend.apply([2, 7].map((i) => ({kind: 'map.delete' as const, map: m, key: u32(i), missingOk: true})))
    assert.deepEqual(r, [{kind: 'map.delete', deleted: true}, {kind: 'map.delete', deleted: false}])
    await assert.rejects(backend.apply([{kind: 'map.delete', map: m, key: u32(1)}, {kind: 'map.delete', map: m, key: u32(7)}]), (e) => e instanceof KernelError && e.index === 1 && e.errno === 'ENOENT')
    assert.deepEqual([...dump(m).keys()], [u32(3).toString('hex')])
  })

  it('a map re-created and re-pinned at the same path is written, never the old map through a kept fd', async () => {
    const m = create('h', 'hash', 4, 8, 16)
    await backend.apply([{kind: 'map.update', map: m, key: u32(1), value: u64(1)}])
    const oldId = sys().mapInfo(m).id
    rmSync(m)
    create('h', 'hash', 4, 8, 16)
    const newId = sys().mapInfo(m).id
    assert.notEqual(newId, oldId)
    await backend.apply([{kind: 'map.update', map: m, key: u32(2), value: u64(2)}])
    assert.deepEqual([...dump(m).keys()], [u32(2).toString('hex')], 'the new map got the write')
    rmSync(m)
    await assert.rejects(backend.apply([{kind: 'map.update', map: m, key: u32(3), value: u64(3)}]), (e) => e instanceof KernelError && e.errno === 'ENOENT' && e.index === 0)
  })

  it('a per-CPU map: one value is written to every CPU; lookup and dump give one value per CPU', async () => {
    const m = create('pc', 'percpu_hash', 4, 4, 8)
    await backend.apply([{kind: 'map.update', map: m, key: u32(1), value: u32(0xabcd)}])
    const [r] = await backend.apply([{kind: 'map.lookup', map: m, key: u32(1)}])
    const values = (r as {values?: Buffer[]}).values!
    assert.equal(values.length, os.cpus().length)
    assert.ok(values.every((v) => v.equals(u32(0xabcd))))
    const [d] = await backend.apply([{kind: 'map.dump', map: m}])
    assert.deepEqual((d as {entries: unknown[]}).entries, [{key: u32(1), values}])
  })

  it('map.info reads the shape of a pinned map as bpftool names it, the same through the addon and the tools; not pinned is none', async () => {
    const a = create('lh', 'lru_hash', 16, 8, 64)
    const b = create('pa', 'percpu_array', 4, 8, 4)
    const tools = new ToolsBackend(new SpawnRunner())
    const ops = [{kind: 'map.info' as const, map: a}, {kind: 'map.info' as const, map: b}, {kind: 'map.info' as const, map: pin('nothing')}]
    const viaAddon = await backend.apply(ops)
    assert.deepEqual(viaAddon.map((r) => (r as {info?: {type: string; keySize: number}}).info && {type: (r as {info: {type: string}}).info.type, keySize: (r as {info: {keySize: number}}).info.keySize}), [{type: 'lru_hash', keySize: 16}, {type: 'percpu_array', keySize: 4}, undefined])
    assert.deepEqual(viaAddon, await tools.apply(ops), 'the addon and bpftool answer alike')
  })

  it('keys or values of the wrong size are PN_INVALID_ARGUMENT, nothing written', async () => {
    const m = create('h', 'hash', 4, 8, 16)
    await assert.rejects(backend.apply([{kind: 'map.update', map: m, key: u32(1), value: u32(1)}]), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /value bytes/.test((e as Error).message))
    await assert.rejects(backend.apply([{kind: 'map.lookup', map: m, key: u64(1)}]), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    assert.equal(dump(m).size, 0)
    await assert.rejects(backend.apply([{kind: 'link.list'}]), (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && /map backend handles/.test((e as Error).message))
  })

  it('prog.get: id, name and tag of a pinned program; nothing pinned is {prog: undefined}; a map is no program', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-prog-'))
    try {
      writeFileSync(path.join(dir, 'p.c'), '__attribute__((section("socket"), used)) int pn_probe(void *ctx) { (void)ctx; return 0; }\nchar _license[] __attribute__((section("license"), used)) = "GPL";\n')
      execFileSync('clang', ['-O2', '-target', 'bpf', '-c', path.join(dir, 'p.c'), '-o', path.join(dir, 'p.o')])
      bpftool('prog', 'load', path.join(dir, 'p.o'), pin('prog'))
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
    const shown = JSON.parse(bpftool('-j', 'prog', 'show', 'pinned', pin('prog'))) as {id: number; name: string; tag: string}
    const [r, none] = await backend.apply([
      {kind: 'prog.get', pinned: pin('prog')},
      {kind: 'prog.get', pinned: pin('nothing')},
    ])
    assert.deepEqual(r, {kind: 'prog.get', prog: {id: shown.id, name: 'pn_probe', tag: shown.tag}})
    assert.deepEqual(none, {kind: 'prog.get', prog: undefined})
    const m = create('h', 'hash', 4, 8, 16)
    await assert.rejects(backend.apply([{kind: 'prog.get', pinned: m}]), (e) => e instanceof KernelError && e.errno === 'EINVAL' && e.index === 0)
  })

  it('record frames (service apply): runs batched, absent deletes skipped, a refused record named; the lock held until close', async () => {
    const maps = [
      {name: 'fa', keySize: 4, valueSize: 8},
      {name: 'fb', keySize: 8, valueSize: 4},
    ]
    // Pinned as the datapath pins them: <root>/maps/<name> (src/datapath/bpf/bpffs.ts).
    mkdirSync(pin('maps'))
    create('maps/fa', 'hash', 4, 8, 3)
    create('maps/fb', 'hash', 8, 4, 16)
    const lockDir = mkdtempSync(path.join(os.tmpdir(), 'pn-mt-lock-'))
    try {
      const w = await openMapWriter(root, maps, {lock: {path: path.join(lockDir, 'x.lock'), timeoutMs: 1000}})
      await assert.rejects(openMapWriter(root, maps, {lock: {path: path.join(lockDir, 'x.lock'), timeoutMs: 50}}), (e) => isPnError(e, 'PN_LOCK_TIMEOUT'))
      const ops = new OpList(maps)
      const put = (map: number, k: Buffer, v: Buffer, op = OP_UPDATE) => {
        const off = ops.add(op, map)
        k.copy(ops.buf, off + KEY_OFFSET)
        if (op === OP_UPDATE) v.copy(ops.buf, off + VALUE_OFFSET)
      }
      put(0, u32(1), u64(10))
      put(0, u32(2), u64(20))
      put(1, u64(7), u32(70))
      put(0, u32(9), Buffer.alloc(0), OP_DELETE) // absent: skipped
      put(0, u32(2), Buffer.alloc(0), OP_DELETE)
      put(0, u32(3), u64(30))
      put(0, u32(4), u64(40))
      put(0, u32(5), u64(50)) // the map holds 3: refused
      const r = await w.write(ops)
      assert.deepEqual(r, {done: 7, skipped: [3], failed: {index: 7, errno: 7, error: 'Argument list too long'}})
      assert.deepEqual([...dump(pin('maps/fa')).keys()].sort(), [1, 3, 4].map((i) => u32(i).toString('hex')))
      assert.deepEqual([...dump(pin('maps/fb')).entries()], [[u64(7).toString('hex'), u32(70).toString('hex')]])
      await w.close()
      const again = await openMapWriter(root, maps, {lock: {path: path.join(lockDir, 'x.lock'), timeoutMs: 0}})
      await again.close()
      await assert.rejects(openMapWriter(root, [...maps, {name: 'absent', keySize: 4, valueSize: 4}]), (e) => isPnError(e, 'PN_BPF_NOT_LOADED'))
    } finally {
      rmSync(lockDir, {recursive: true, force: true})
    }
  })
})
