/**
 * The TypeScript side of the native helpers' protocol limits (each C side checks the same; its
 * own tests and fuzzing are scripts/test-native.sh): the agent's wire format, the lock helper's
 * requests (against the built dist/native/pn-lockd, no root) and pn-mapbatch's frames.
 */
import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {decodeRequest, encodeRequest, MAGIC, MAX_WIRE_ENV, MAX_WIRE_FIELD, MAX_WIRE_REQUEST, WireError} from '../../src/agent/wire.js'
import {LockServer, LOCKD_LIMITS} from '../../src/exec/lockd.js'
import {frameProblem, MAPBATCH_LIMITS} from '../../src/exec/mapbatch.js'

// PN_TEST_NATIVE_DIR: another build of the helpers (scripts/test-native.sh: the sanitizer build).
const NATIVE = path.resolve(process.env.PN_TEST_NATIVE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native'))

describe('native protocol limits (TypeScript side)', function () {
  this.timeout(20_000)

  it('wire: a netstring over 16 MiB or with a 9-digit length, too many variables, or a request over 32 MiB is malformed, not incomplete', () => {
    const refused = (b: Buffer, re: RegExp) =>
      assert.throws(() => decodeRequest(b), (e: WireError) => e instanceof WireError && !e.incomplete && re.test(e.message))
    refused(Buffer.from(`${MAGIC}${MAX_WIRE_FIELD + 1}:`), /over the limit/)
    refused(Buffer.from(`${MAGIC}123456789:`), /too long/)
    refused(Buffer.from(`${MAGIC}0:,4:${MAX_WIRE_ENV + 1},`), /environment count/)
    refused(Buffer.alloc(MAX_WIRE_REQUEST + 1), /request of .* bytes is over the limit/)
    // At the limit it still decodes.
    const big = encodeRequest({netnsIno: '1', env: {CNI_COMMAND: 'ADD'}, stdin: 'x'.repeat(MAX_WIRE_FIELD)})
    assert.equal(decodeRequest(big).stdin.length, MAX_WIRE_FIELD)
  })

  describe('lock helper (built dist/native/pn-lockd)', () => {
    let dir: string
    let locks: LockServer
    before(function () {
      assert.ok(existsSync(path.join(NATIVE, 'pn-lockd')), 'pn-lockd is built by npm run build')
    })
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'pn-lim-'))
      locks = new LockServer(path.join(NATIVE, 'pn-lockd'))
    })
    afterEach(async () => {
      await locks.stop()
      rmSync(dir, {recursive: true, force: true})
    })

    it('a lock path with a newline, or over 4095 bytes, is PN_INVALID_ARGUMENT before the helper sees it', async () => {
      for (const p of [path.join(dir, 'a\nU\t1'), path.join(dir, 'x'.repeat(LOCKD_LIMITS.pathBytes))]) {
        await assert.rejects(locks.acquire([{path: p, timeoutMs: 10}]), (e: Error & {code?: string}) => e.code === 'PN_INVALID_ARGUMENT' && /newline or NUL, or is over 4095 bytes/.test(e.message))
      }
      assert.equal(existsSync(path.join(dir, 'a')), false, 'the path was cut at its newline and created')
      const held = await locks.acquire([{path: path.join(dir, 'ok.lock'), timeoutMs: 10}])
      await held.release()
    })

    it('a timeout over 2^31-1 ms (or Infinity) is clamped, not sent as a number the helper refuses, nor a 1 ms wait', async () => {
      const held = await locks.acquire([{path: path.join(dir, 'long.lock'), timeoutMs: Infinity}])
      // A second acquisition waits in the in-process queue: with an unclamped timeout its timer
      // overflowed to 1 ms and it failed as busy at once.
      const waiting = locks.acquire([{path: path.join(dir, 'long.lock'), timeoutMs: Infinity}])
      await new Promise((r) => setTimeout(r, 50))
      await held.release()
      await (await waiting).release()
      const again = await locks.acquire([{path: path.join(dir, 'long.lock'), timeoutMs: 1e15}])
      await again.release()
    })
  })

  it('pn-mapbatch: a frame is 4 + 28 × count bytes with count ≤ 1048576', () => {
    const frame = (count: number, bytes = 4 + count * 28) => {
      const b = Buffer.alloc(bytes)
      b.writeUInt32LE(count, 0)
      return b
    }
    assert.equal(frameProblem(frame(0)), undefined)
    assert.equal(frameProblem(frame(3)), undefined)
    assert.equal(frameProblem(frame(MAPBATCH_LIMITS.records, 4)), '4 bytes do not hold 1048576 records of 28 bytes')
    assert.match(frameProblem(frame(MAPBATCH_LIMITS.records + 1, 4)) ?? '', /1048577 records is over the limit of 1048576/)
    assert.match(frameProblem(frame(2, 4 + 28)) ?? '', /do not hold 2 records/)
    assert.match(frameProblem(Buffer.alloc(3)) ?? '', /shorter than its 4-byte count/)
  })
})
