/**
 * The one lock mechanism: flock(2) held by the Node process itself (src/exec/flock.ts over the
 * addon native/pn-sys.c). No root: lock files in a temp dir, other holders are child processes.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {acquireFlock, acquireFlocks, LockBusyError} from '../../src/exec/flock.js'
import {isPnError} from '../../src/errors.js'

const FLOCK_JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/exec/flock.js')

/** A child process that takes the lock (shared or not) and holds it until killed; resolves once it holds it. */
async function holder(file: string, opts: {shared?: boolean} = {}): Promise<ChildProcess> {
  const script = `import(${JSON.stringify(FLOCK_JS)}).then(async (m) => { await m.acquireFlock(${JSON.stringify(file)}, 5000, {shared: ${Boolean(opts.shared)}}); process.stdout.write('held\\n'); setInterval(() => {}, 1000) })`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit']})
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)))
  })
  return child
}

/** Run a script in a child and wait for its exit: [exit code, stdout, ms]. */
function run(script: string, timeoutMs = 10_000): Promise<{code: number | null; out: string; ms: number}> {
  const t0 = Date.now()
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  return new Promise((resolve) => child.once('exit', (code) => (clearTimeout(timer), resolve({code, out, ms: Date.now() - t0}))))
}

/** Holders of a flock on `file` in /proc/locks: their pids. */
function flockPids(file: string): number[] {
  const {ino} = statSync(file)
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((l) => /\bFLOCK\b/.test(l) && !l.includes('->') && l.split(/\s+/)[5]?.endsWith(`:${ino}`))
    .map((l) => Number(l.split(/\s+/)[4]))
}

const busy = (file: string, index = 0) => (e: unknown) =>
  e instanceof LockBusyError && e.code === 'PN_LOCK_TIMEOUT' && e.index === index && e.path === file && e.message.includes(file)

describe('locks: flock(2) in this process', function () {
  this.timeout(30_000)
  let dir: string
  const children: ChildProcess[] = []
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-locks-'))))
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('excludes a second holder until release; a timeout is LockBusyError naming the lock', async () => {
    const file = path.join(dir, 'a.lock')
    const first = await acquireFlock(file, 1000)
    await assert.rejects(acquireFlock(file, 0), busy(file))
    const t0 = Date.now()
    await assert.rejects(acquireFlock(file, 200), busy(file))
    assert.ok(Date.now() - t0 >= 190, 'waited its timeout')
    await first.release()
    const second = await acquireFlock(file, 1000)
    await second.release()
    assert.deepEqual(flockPids(file), [], 'nothing holds it after release')
  })

  it('a chain names the lock that timed out by its index, and keeps none of the chain', async () => {
    const a = path.join(dir, 'a.lock')
    const b = path.join(dir, 'b.lock')
    children.push(await holder(b))
    await assert.rejects(acquireFlocks([{path: a, timeoutMs: 100}, {path: b, timeoutMs: 100}]), busy(b, 1))
    const again = await acquireFlock(a, 0)
    await again.release()
  })

  it('shared locks coexist; exclusive excludes shared and the other way round, in this process and across processes', async () => {
    const file = path.join(dir, 'node.lock')
    const s1 = await acquireFlock(file, 0, {shared: true})
    const s2 = await acquireFlock(file, 0, {shared: true})
    children.push(await holder(file, {shared: true}))
    await assert.rejects(acquireFlock(file, 100), busy(file))
    await s1.release()
    await s2.release()
    await assert.rejects(acquireFlock(file, 100), busy(file), 'the other process still holds it shared')
    children.pop()!.kill('SIGKILL')
    const x = await acquireFlock(file, 2000)
    await assert.rejects(acquireFlock(file, 0, {shared: true}), busy(file))
    const r = await run(`import(${JSON.stringify(FLOCK_JS)}).then((m) => m.acquireFlock(${JSON.stringify(file)}, 100, {shared: true})).then(() => process.exit(0), (e) => { process.stdout.write(e.code); process.exit(3) })`)
    assert.deepEqual([r.code, r.out], [3, 'PN_LOCK_TIMEOUT'])
    await x.release()
  })

  it('a holder killed with SIGKILL lets a waiter in at once, and the wait burns no CPU (no polling)', async () => {
    const file = path.join(dir, 'k.lock')
    const child = await holder(file)
    children.push(child)
    const cpu0 = process.cpuUsage()
    const waiting = acquireFlock(file, 10_000).then((l) => ({l, at: performance.now()}))
    await new Promise((r) => setTimeout(r, 500))
    const cpu = process.cpuUsage(cpu0)
    const killedAt = performance.now()
    child.kill('SIGKILL')
    const {l, at} = await waiting
    const latency = at - killedAt
    await l.release()
    // The kernel releases the dead holder's lock as it closes its files; the blocked thread
    // returns from flock(2) then. Measured ≈ 1–3 ms here (most of it the child's exit).
    console.log(`      grant ${latency.toFixed(2)} ms after SIGKILL; ${((cpu.user + cpu.system) / 1000).toFixed(1)} ms CPU in 500 ms of waiting`)
    assert.ok(latency < 50, `granted ${latency.toFixed(1)} ms after the holder's death`)
    assert.ok((cpu.user + cpu.system) / 1000 < 100, 'waiting spent no CPU on polling')
  })

  it('an abandoned waiter (timed out) never holds the lock later: it is let go as soon as it is granted', async () => {
    const file = path.join(dir, 'w.lock')
    const child = await holder(file)
    children.push(child)
    await assert.rejects(acquireFlock(file, 50), busy(file))
    child.kill('SIGKILL')
    // Another process gets it at once, though our abandoned thread was waiting in flock(2).
    const r = await run(`import(${JSON.stringify(FLOCK_JS)}).then((m) => m.acquireFlock(${JSON.stringify(file)}, 3000)).then(() => { process.stdout.write('got'); process.exit(0) }, (e) => { process.stdout.write(e.code); process.exit(3) })`)
    assert.deepEqual([r.code, r.out], [0, 'got'])
    assert.ok(!flockPids(file).includes(process.pid), 'this process holds no flock on it')
    // And this process gets it again, in order.
    const mine = await acquireFlock(file, 1000)
    await mine.release()
  })

  it('an abandoned wait does not keep the process alive (pn-cni exits after a busy lock)', async () => {
    const file = path.join(dir, 'e.lock')
    children.push(await holder(file))
    const r = await run(`import(${JSON.stringify(FLOCK_JS)}).then((m) => m.acquireFlock(${JSON.stringify(file)}, 100)).catch((e) => process.stdout.write(e.code))`, 5000)
    assert.equal(r.out, 'PN_LOCK_TIMEOUT')
    assert.equal(r.code, 0, 'it exited on its own')
    assert.ok(r.ms < 4000)
  })

  it('waiters of this process are served in order, each within its timeout', async () => {
    const file = path.join(dir, 'q.lock')
    const first = await acquireFlock(file, 0)
    const order: number[] = []
    const waits = [0, 1, 2, 3].map((i) => acquireFlock(file, 5000).then(async (l) => {
      order.push(i)
      await new Promise((r) => setTimeout(r, 5))
      await l.release()
    }))
    await new Promise((r) => setTimeout(r, 50))
    await first.release()
    await Promise.all(waits)
    assert.deepEqual(order, [0, 1, 2, 3])
  })

  it('an AbortSignal ends a wait with PN_INTERRUPTED; the lock is not taken later', async () => {
    const file = path.join(dir, 's.lock')
    const child = await holder(file)
    children.push(child)
    const ac = new AbortController()
    const waiting = acquireFlock(file, 10_000, {signal: ac.signal})
    setTimeout(() => ac.abort(), 50)
    await assert.rejects(waiting, (e) => isPnError(e, 'PN_INTERRUPTED') && (e as Error).message.includes(file))
    child.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 50))
    assert.ok(!flockPids(file).includes(process.pid))
  })

  it('a timeout over 2^31-1 ms (or Infinity) is clamped, not a 1 ms wait', async () => {
    const file = path.join(dir, 'long.lock')
    const held = await acquireFlock(file, Infinity)
    const waiting = acquireFlock(file, Infinity)
    await new Promise((r) => setTimeout(r, 50))
    await held.release()
    await (await waiting).release()
    const again = await acquireFlock(file, 1e15)
    await again.release()
  })

  it('a path with a NUL is PN_INVALID_ARGUMENT (never cut short); a missing directory a clear error', async () => {
    await assert.rejects(acquireFlock(path.join(dir, 'a\0b'), 10), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    await assert.rejects(acquireFlock(path.join(dir, 'missing', 'x.lock'), 10), (e) => isPnError(e, 'PN_COMMAND_FAILED') && /ENOENT|No such file/.test((e as Error).message))
  })
})
