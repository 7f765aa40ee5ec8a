import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {FileStore, MemoryStore} from '../../src/state/store.js'
import type {JsonFileSpec} from '../../src/state/files.js'

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
