import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {formatSplit, parseSplit, RequestTimer} from '../../src/agent/timing.js'
import type {Locker} from '../../src/exec/flock.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {kernelClock} from '../../src/kernel/clock.js'
import {ToolsBackend} from '../../src/kernel/tools.js'
import {writeFileAtomic} from '../../src/state/files.js'
import {syncCounters} from '../../src/state/timing.js'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

describe('agent request timing', () => {
  it('splits a request into its kernel calls, lock waits and fsyncs, and the log line parses back', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pn-timing-'))
    try {
      const timer = new RequestTimer({acceptedAt: performance.now() - 5, queueMs: 1})
      const slow: Locker = {acquire: async () => (await sleep(15), {release: async () => sleep(5)})}
      const kernel = new ToolsBackend(new RecordingRunner())
      await kernelClock.run(timer.clock, async () => {
        await kernel.apply([{kind: 'link.set', name: 'x', up: true}])
        await kernel.apply([{kind: 'sysctl.set', key: 'net.ipv4.ip_forward', value: '1'}])
      })
      await kernel.apply([{kind: 'link.set', name: 'y', up: true}])
      const held = await timer.locker(slow).acquire([{path: '/x.lock', timeoutMs: 0}])
      await held.release()
      await writeFileAtomic(path.join(dir, 'f.json'), '{}\n')
      const s = timer.split()
      assert.equal(s.kernelCalls, 2, 'the two applies inside the request\'s clock are kernel calls, the one outside is not')
      assert.equal(s.lockCalls, 2, 'acquire and release')
      assert.ok(s.locks >= 18, `lock time ${s.locks} ms includes both waits`)
      assert.equal(s.fsyncs, 2, 'the file and its directory')
      assert.equal(s.queue, 1)
      assert.ok(s.total >= s.locks + 5, 'total counts from the accept')
      assert.ok(Math.abs(s.total - (s.read + s.queue + s.locks + s.kernel + s.fsync + s.other)) < 0.1, 'the parts add up to the total')
      assert.deepEqual(parseSplit(`ADD c1:eth0 exit 0 after 30 ms: ${formatSplit(s)}`), s)
      assert.equal(parseSplit('ADD c1:eth0 exit 0 after 30 ms'), undefined)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('counts fsyncs process-wide, a parallel group once per path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pn-timing-'))
    try {
      const {syncPaths} = await import('../../src/state/files.js')
      const before = syncCounters.count
      await syncPaths([dir, path.join(dir, 'missing'), dir])
      assert.equal(syncCounters.count - before, 2, 'duplicates dropped; a missing path still counted as asked')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
