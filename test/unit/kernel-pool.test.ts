import assert from 'node:assert/strict'
import {KernelPool} from '../../src/agent/kernel-pool.js'
import {RecordingRunner, type RunOptions, type RunResult, type Runner} from '../../src/exec/runner.js'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A runner whose every command takes `ms` and answers `answer` (default: success). */
function slowRunner(name: string, ms: number, seen: string[], answer?: (argv: string[]) => Partial<RunResult>): Runner {
  const base = new RecordingRunner()
  return {
    run: async (file: string, args: readonly string[], _opts?: RunOptions): Promise<RunResult> => {
      seen.push(`${name}: ${[file, ...args].join(' ')}`)
      await sleep(ms)
      return {argv: [file, ...args], exitCode: 0, stdout: '', stderr: '', ...answer?.([file, ...args])}
    },
    stream: (f, a, o) => base.stream(f, a, o),
    spawnDetached: (f, a, o) => base.spawnDetached(f, a, o),
    makeDir: (p) => base.makeDir(p),
    remove: (p) => base.remove(p),
    writeFile: (p, c) => base.writeFile(p, c),
  }
}

describe('agent kernel pool (src/agent/kernel-pool.ts)', () => {
  it('sends each command to the runner with the fewest in flight, the first when all are idle', async () => {
    const seen: string[] = []
    const pool = new KernelPool([slowRunner('w0', 20, seen), slowRunner('w1', 20, seen), slowRunner('w2', 20, seen)])
    await pool.run('ip', ['link', 'show', 'a'])
    await Promise.all([pool.run('ip', ['link', 'show', 'b']), pool.run('ip', ['link', 'show', 'c']), pool.run('ip', ['link', 'show', 'd']), pool.run('ip', ['link', 'show', 'e'])])
    assert.deepEqual(seen, ['w0: ip link show a', 'w0: ip link show b', 'w1: ip link show c', 'w2: ip link show d', 'w0: ip link show e'])
    assert.deepEqual(pool.load, [0, 0, 0])
  })

  it('answers a deletion in its own netns once the link is gone, before the worker answers; the worker is still busy', async () => {
    const seen: string[] = []
    let present = true
    const pool = new KernelPool([slowRunner('w0', 200, seen), slowRunner('w1', 5, seen)], {linkPresent: () => present})
    setTimeout(() => (present = false), 10)
    const t0 = performance.now()
    const r = await pool.run('ip', ['link', 'del', 'dev', 'lxc1'], {allowFailure: true})
    const ms = performance.now() - t0
    assert.equal(r.exitCode, 0)
    assert.deepEqual(r.argv, ['ip', 'link', 'del', 'dev', 'lxc1'])
    assert.ok(ms < 150, `answered after ${ms} ms, not after the worker's 200`)
    assert.deepEqual(pool.load, [1, 0], 'the deletion still runs on w0')
    await pool.run('ip', ['link', 'show', 'x'])
    assert.equal(seen.at(-1), 'w1: ip link show x', 'the next command goes to the idle worker')
  })

  it("gives the worker's own answer for a link that is not there, in another netns, or that the worker answers first", async () => {
    const seen: string[] = []
    const gone = (argv: string[]) => (argv.includes('lxc-none') ? {exitCode: 1, stderr: 'Cannot find device "lxc-none"'} : {})
    const pool = new KernelPool([slowRunner('w0', 5, seen, gone)], {linkPresent: (dev) => dev !== 'lxc-none'})
    const absent = await pool.run('ip', ['link', 'del', 'dev', 'lxc-none'], {allowFailure: true})
    assert.equal(absent.exitCode, 1, 'ENODEV reported as the tool does: DEL then knows it deleted nothing')
    // The link never goes away in this fake: the worker's answer (5 ms) is the answer.
    const first = await pool.run('ip', ['link', 'del', 'dev', 'lxc2'], {allowFailure: true})
    assert.equal(first.exitCode, 0)
    const inPod = await pool.run('ip', ['link', 'del', 'dev', 'eth0'], {netns: '/run/netns/p', allowFailure: true})
    assert.equal(inPod.exitCode, 0)
    assert.equal(seen.length, 3)
  })

  it('reports a worker failure that comes after the early answer', async () => {
    const seen: string[] = []
    const late: string[] = []
    let present = true
    const failing = slowRunner('w0', 60, seen, () => ({exitCode: 2, stderr: 'RTNETLINK answers: Device or resource busy'}))
    const pool = new KernelPool([failing], {linkPresent: () => present, onLateFailure: (argv, why) => late.push(`${argv.join(' ')}: ${why}`)})
    setTimeout(() => (present = false), 5)
    const r = await pool.run('ip', ['link', 'del', 'dev', 'lxc3'], {allowFailure: true})
    assert.equal(r.exitCode, 0)
    await sleep(100)
    assert.deepEqual(late, ['ip link del dev lxc3: RTNETLINK answers: Device or resource busy'])
  })
})
