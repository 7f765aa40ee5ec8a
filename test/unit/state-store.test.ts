import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {FileStore, MemoryStore} from '../../src/state/store.js'
import {createFileExclusive, removeFileDurable, writeFileAtomic, type JsonFileSpec} from '../../src/state/files.js'

interface Counter {
  n: number
}
const spec: JsonFileSpec<Counter> = {
  what: 'counter',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v: unknown): v is Counter => typeof (v as Counter)?.n === 'number',
}

describe('ipam stores', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-store-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('FileStore: locked read-modify-write, no write for an unchanged result, serialised updates', async () => {
    const s = new FileStore<Counter>(path.join(dir, 'c.json'), spec)
    assert.equal(await s.read(), undefined)
    await Promise.all(Array.from({length: 20}, () => s.update((cur) => ({next: {n: (cur?.n ?? 0) + 1}, result: null}))))
    assert.deepEqual(await s.read(), {n: 20})
    const before = readFileSync(s.location, 'utf8')
    assert.equal(await s.update(() => ({result: 'same'})), 'same')
    assert.equal(readFileSync(s.location, 'utf8'), before)
    assert.deepEqual(readdirSync(dir).sort(), ['c.json', 'c.json.lock'])
  })

  it('FileStore: an error inside the update writes nothing; remove is idempotent', async () => {
    const s = new FileStore<Counter>(path.join(dir, 'c.json'), spec)
    await s.update(() => ({next: {n: 1}, result: null}))
    await assert.rejects(s.update(() => {
      throw new Error('boom')
    }))
    assert.deepEqual(await s.read(), {n: 1})
    assert.equal(await s.remove(), true)
    assert.equal(await s.remove(), false)
    assert.equal(existsSync(s.location), false)
    assert.equal(await new FileStore<Counter>(path.join(dir, 'none', 'x.json'), spec).remove(), false)
    assert.equal(existsSync(path.join(dir, 'none')), false)
  })

  it('FileStore: a file that fails validation is reported with the spec code', async () => {
    const s = new FileStore<Counter>(path.join(dir, 'c.json'), spec)
    await (await import('node:fs/promises')).writeFile(s.location, '{"n":"x"}')
    await assert.rejects(s.read(), (e) => isPnError(e, 'PN_STATE_CORRUPT'))
  })

  it('MemoryStore: copies values and counts writes', async () => {
    const m = new MemoryStore<Counter>({n: 1})
    const v = await m.read()
    v!.n = 99
    assert.deepEqual(await m.read(), {n: 1})
    await m.update((cur) => ({next: {n: cur!.n + 1}, result: null}))
    await m.update(() => ({result: null}))
    assert.equal(m.writes, 1)
    assert.equal(await m.remove(), true)
    assert.equal(await m.read(), undefined)
  })
})

describe('state files (src/state/files.ts)', () => {
  let dir: string
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8)
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-files-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('writeFileAtomic: 0600 in 0700 directories it creates, no temp file left; a 0644 file gets 0755 ones', async () => {
    await writeFileAtomic(path.join(dir, 'state/sub/a.json'), '{}\n')
    assert.equal(mode(path.join(dir, 'state/sub/a.json')), '600')
    assert.equal(mode(path.join(dir, 'state')), '700')
    assert.equal(mode(path.join(dir, 'state/sub')), '700')
    await writeFileAtomic(path.join(dir, 'state/sub/a.json'), '{"n":2}\n')
    assert.equal(readFileSync(path.join(dir, 'state/sub/a.json'), 'utf8'), '{"n":2}\n')
    assert.deepEqual(readdirSync(path.join(dir, 'state/sub')), ['a.json'])
    await writeFileAtomic(path.join(dir, 'etc/cni/10-pn.conflist'), '{}', 0o644)
    assert.equal(mode(path.join(dir, 'etc/cni')), '755')
    assert.equal(mode(path.join(dir, 'etc/cni/10-pn.conflist')), '644')
  })

  it('createFileExclusive claims a name once (0600); removeFileDurable says whether it removed one', async () => {
    const f = path.join(dir, '7')
    await createFileExclusive(f, 'a:eth0\n')
    assert.equal(mode(f), '600')
    await assert.rejects(createFileExclusive(f, 'b:eth0\n'), (e: NodeJS.ErrnoException) => e.code === 'EEXIST')
    assert.equal(readFileSync(f, 'utf8'), 'a:eth0\n')
    assert.equal(await removeFileDurable(f), true)
    assert.equal(await removeFileDurable(f), false)
  })

  it('FileStore writes its file 0600', async () => {
    const s = new FileStore<Counter>(path.join(dir, 'pool', 'c.json'), spec)
    await s.update(() => ({next: {n: 1}, result: null}))
    assert.equal(mode(s.location), '600')
    assert.equal(mode(path.join(dir, 'pool')), '700')
    assert.equal(await s.remove(), true)
    assert.ok(!existsSync(s.location))
  })
})
