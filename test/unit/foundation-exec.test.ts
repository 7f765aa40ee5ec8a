import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {EXIT, ERROR_CODES, PnError, toPnError} from '../../src/errors.js'
import {acquireFlock} from '../../src/exec/flock.js'
import {ExecaRunner, RecordingRunner, SpawnRunner, effectiveArgv} from '../../src/exec/runner.js'
import {readJsonFile, updateJsonFile, writeFileAtomic} from '../../src/state/files.js'

describe('errors', () => {
  it('maps every code to an exit category and a CNI code >= 100 unless the spec defines one', () => {
    const specCodes = new Set([1, 2, 3, 4, 5, 6, 7, 11, 50, 51])
    for (const [code, m] of Object.entries(ERROR_CODES)) {
      assert.ok(m.exit in EXIT, code)
      assert.ok(specCodes.has(m.cni) || m.cni >= 100, `${code} uses reserved CNI code ${m.cni}`)
    }
  })
  it('wraps unknown errors once and passes PnError through', () => {
    const pe = new PnError('PN_IPAM_EXHAUSTED', 'allocate ip: range is full')
    assert.equal(toPnError(pe), pe)
    const wrapped = toPnError(new Error('boom'), 'do thing')
    assert.equal(wrapped.code, 'PN_INTERNAL')
    assert.equal(wrapped.message, 'do thing: boom')
    assert.equal(toPnError(wrapped), wrapped)
    assert.equal(pe.exitCode, EXIT.exhausted)
  })
})

describe('exec runner', () => {
  it('wraps commands in nsenter for a netns path', () => {
    assert.deepEqual(effectiveArgv('ip', ['link'], {netns: '/run/netns/x'}), ['nsenter', '--net=/run/netns/x', '--', 'ip', 'link'])
  })
  it('records argv and input without running anything', async () => {
    const r = new RecordingRunner((argv) => (argv[0] === 'false' ? {exitCode: 1, stderr: 'nope'} : {stdout: 'hi'}))
    const out = await r.run('ip', ['-batch', '-'], {input: 'link add a type veth\n'})
    assert.equal(out.stdout, 'hi')
    await assert.rejects(r.run('false', []), (e: PnError) => e.code === 'PN_COMMAND_FAILED' && /nope/.test(e.message))
    assert.equal((await r.run('false', [], {allowFailure: true})).exitCode, 1)
    assert.deepEqual(r.records[0], {argv: ['ip', '-batch', '-'], input: 'link add a type veth\n'})
    assert.ok(r.ran('ip'))
    assert.ok(!r.ran('clang'))
  })
  for (const [name, make] of [['SpawnRunner', () => new SpawnRunner()], ['ExecaRunner', () => new ExecaRunner()]] as const) {
    it(`${name}: reports a missing tool with the package to install`, async () => {
      await assert.rejects(make().run('pn-no-such-tool', []), (e: PnError) => e.code === 'PN_TOOL_MISSING' && !!e.hint)
    })
    it(`${name}: returns stdout, feeds stdin, throws PN_COMMAND_FAILED with stderr on failure`, async () => {
      const r = make()
      assert.equal((await r.run('echo', ['ok'])).stdout, 'ok\n')
      assert.equal((await r.run('cat', [], {input: 'batch\n'})).stdout, 'batch\n')
      await assert.rejects(r.run('ls', ['/pn-definitely-missing']), (e: PnError) => e.code === 'PN_COMMAND_FAILED' && /No such file/.test(e.message))
      const failed = await r.run('sh', ['-c', 'echo out; echo err >&2; exit 3'], {allowFailure: true})
      assert.deepEqual([failed.exitCode, failed.stdout, failed.stderr], [3, 'out\n', 'err\n'])
    })
  }
})

describe('flock locks', function () {
  this.timeout(20000)
  const dir = mkdtempSync(path.join(tmpdir(), 'pn-lock-'))

  it('excludes a second holder until release, then times out cleanly', async () => {
    const file = path.join(dir, 'a.lock')
    const first = await acquireFlock(file, 1000)
    await assert.rejects(acquireFlock(file, 200), (e: PnError) => e.code === 'PN_LOCK_TIMEOUT')
    await first.release()
    const second = await acquireFlock(file, 1000)
    await second.release()
  })

  it('a pn process killed while holding the lock does not block the next caller', async () => {
    const file = path.join(dir, 'c.lock')
    const script = `import('${path.resolve('dist/src/exec/flock.js')}').then(async (m) => { await m.acquireFlock('${file}', 5000); process.stdout.write('held\\n'); setInterval(() => {}, 1000) })`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit']})
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
    await assert.rejects(acquireFlock(file, 200), (e: PnError) => e.code === 'PN_LOCK_TIMEOUT')
    child.kill('SIGKILL')
    const started = Date.now()
    const lock = await acquireFlock(file, 5000)
    await lock.release()
    assert.ok(Date.now() - started < 2000, 'lock was released promptly after SIGKILL')
  })
})

describe('state files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pn-state-'))
  const spec = {
    what: 'test state',
    corruptCode: 'PN_STATE_CORRUPT' as const,
    validate: (v: unknown): v is {n: number} => typeof (v as {n?: unknown})?.n === 'number',
  }

  it('writes atomically and leaves no temp files', async () => {
    const file = path.join(dir, 'x.json')
    await writeFileAtomic(file, '{"n":1}\n')
    assert.equal(readFileSync(file, 'utf8'), '{"n":1}\n')
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), [])
  })

  it('refuses a corrupt file with a hint and never overwrites it', async () => {
    const file = path.join(dir, 'bad.json')
    writeFileSync(file, '{"n":')
    await assert.rejects(
      updateJsonFile(file, spec, () => ({next: {n: 2}, result: null})),
      (e: PnError) => e.code === 'PN_STATE_CORRUPT' && !!e.hint && /not valid JSON/.test(e.message),
    )
    assert.equal(readFileSync(file, 'utf8'), '{"n":')
  })

  it('serialises concurrent read-modify-write in one process', async () => {
    const file = path.join(dir, 'counter.json')
    await Promise.all(
      Array.from({length: 20}, () => updateJsonFile(file, spec, (cur) => ({next: {n: (cur?.n ?? 0) + 1}, result: null}))),
    )
    assert.deepEqual(await readJsonFile(file, spec), {n: 20})
  })
})

describe('docs/CLI.md', () => {
  it('documents every error code', () => {
    const doc = readFileSync(path.resolve('docs/CLI.md'), 'utf8')
    for (const code of Object.keys(ERROR_CODES)) assert.ok(doc.includes(`\`${code}\``), `${code} missing from docs/CLI.md`)
  })
})
