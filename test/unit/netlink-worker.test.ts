/**
 * WorkerRunner + NetlinkWorker without root: a stand-in worker (a Node script speaking the
 * pn-netlink protocol) checks the framing (answers split across reads, several in one read,
 * binary-safe output), that "unsupported" goes to the inner runner, that a failed command is the
 * same PnError every runner throws, that a dead worker fails its request and is replaced, and the
 * protocol limits on this side (a refusal, a malformed answer, a command over the limits).
 * Then the built worker (dist/native/pn-netlink) on batches past 512 lines, which it once wrote
 * past a static array for; it needs no root (the device does not exist, nothing is changed).
 * The real worker against the real tools: test/integration/netlink-worker.integration.ts.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {fitsWorker, NetlinkWorker, WorkerRunner, WORKER_LIMITS} from '../../src/exec/netlink-worker.js'
import {RecordingRunner} from '../../src/exec/runner.js'

// Reads requests; answers by argv[1]: "ok" → exit 0 with stdout echoing the netns and input,
// "fail" → exit 1 with an ip-style stderr, "unsupported" → -1, "die" → exits without answering,
// "refuse" → -2 (over a limit) with the reason on stderr, "garbage" → an answer header that is
// not the protocol's, "huge" → a header announcing more stdout than the protocol allows.
// Answers are written a byte at a time for one command and two at once for the next, so the
// reader must reassemble frames.
const FAKE = `#!${process.execPath}
let buf = Buffer.alloc(0)
const pending = []
process.stdin.on('data', (d) => {
  buf = Buffer.concat([buf, d])
  for (;;) {
    const nl = buf.indexOf(10)
    if (nl < 0) return
    const [id, argc, alen, nslen, inlen] = buf.subarray(0, nl).toString().split(' ').map(Number)
    const end = nl + 1 + nslen + alen + inlen
    if (buf.length < end) return
    const ns = buf.subarray(nl + 1, nl + 1 + nslen).toString()
    const argv = buf.subarray(nl + 1 + nslen, nl + 1 + nslen + alen).toString().split('\\0').slice(0, argc)
    const input = buf.subarray(nl + 1 + nslen + alen, end).toString()
    buf = buf.subarray(end)
    if (argv[1] === 'die') process.exit(3)
    if (argv[1] === 'garbage') { process.stdout.write(id + ' zero ' + '\\n'); continue }
    if (argv[1] === 'huge') { process.stdout.write(id + ' 0 999999999 0\\n'); continue }
    if (argv[1] === 'refuse') {
      const why = Buffer.from('pn-netlink: a batch of more than 65536 lines is over the limit\\n')
      process.stdout.write(Buffer.concat([Buffer.from(id + ' -2 0 ' + why.length + '\\n'), why]))
      continue
    }
    const out = argv[1] === 'ok' ? Buffer.from('ns=' + ns + ' in=' + input + ' é\\n') : Buffer.alloc(0)
    const err = argv[1] === 'fail' ? Buffer.from('Cannot find device "x"\\n') : Buffer.alloc(0)
    const code = argv[1] === 'ok' ? 0 : argv[1] === 'fail' ? 1 : -1
    const frame = Buffer.concat([Buffer.from(id + ' ' + code + ' ' + out.length + ' ' + err.length + '\\n'), out, err])
    if (argv[2] === 'slow') for (const b of frame) process.stdout.write(Buffer.from([b]))
    else if (argv[2] === 'hold') pending.push(frame)
    else { pending.push(frame); process.stdout.write(Buffer.concat(pending.splice(0))) }
  }
})
`

describe('kernel worker runner (stand-in worker, no root)', function () {
  this.timeout(20_000)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-nlw-unit-'))
  const bin = path.join(dir, 'fake-netlink')
  writeFileSync(bin, FAKE)
  chmodSync(bin, 0o755)
  let worker: NetlinkWorker
  let inner: RecordingRunner
  let runner: WorkerRunner

  beforeEach(() => {
    worker = new NetlinkWorker(bin)
    inner = new RecordingRunner(() => ({stdout: 'from the tool'}))
    runner = new WorkerRunner(inner, worker)
  })
  afterEach(() => worker.stop())
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('returns the worker answer with the argv a spawn would have had, and spawns nothing', async () => {
    const r = await runner.run('ip', ['ok', 'slow'], {netns: '/run/netns/pn-x', input: 'link set dev lo up\n'})
    assert.deepEqual(r, {argv: ['nsenter', '--net=/run/netns/pn-x', '--', 'ip', 'ok', 'slow'], exitCode: 0, stdout: 'ns=/run/netns/pn-x in=link set dev lo up\n é\n', stderr: ''})
    assert.equal(inner.records.length, 0)
  })

  it('reassembles answers that arrive together and in order', async () => {
    const [a, b] = await Promise.all([runner.run('tc', ['ok', 'hold'], {input: 'A'}), runner.run('tc', ['ok'], {input: 'B'})])
    assert.equal(a.stdout, 'ns= in=A é\n')
    assert.equal(b.stdout, 'ns= in=B é\n')
  })

  it('sends an unsupported command, another program, or a command with its own env to the inner runner', async () => {
    assert.equal((await runner.run('ip', ['unsupported'])).stdout, 'from the tool')
    assert.equal((await runner.run('sysctl', ['ok'])).stdout, 'from the tool')
    assert.equal((await runner.run('ip', ['ok'], {env: {X: '1'}})).stdout, 'from the tool')
    assert.deepEqual(inner.records.map((x) => x.argv), [['ip', 'unsupported'], ['sysctl', 'ok'], ['ip', 'ok']])
  })

  it('a failed command is the runner error (PN_COMMAND_FAILED), or the result with allowFailure', async () => {
    await assert.rejects(runner.run('ip', ['fail']), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /run ip fail: Cannot find device "x"/.test(e.message))
    const r = await runner.run('ip', ['fail'], {allowFailure: true})
    assert.equal(r.exitCode, 1)
    assert.equal(r.stderr, 'Cannot find device "x"\n')
  })

  it('a worker that dies fails the request it was running (no replay), and the next command starts a new one', async () => {
    await runner.run('ip', ['ok'])
    const first = worker.pid
    await assert.rejects(runner.run('ip', ['die']), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /exited/.test(e.message))
    assert.equal(inner.records.length, 0, 'a half-done command must not be replayed by the real tool')
    assert.equal((await runner.run('ip', ['ok'])).exitCode, 0)
    assert.notEqual(worker.pid, first)
  })

  it('a refusal (code -2: over a limit, nothing done) is a PN_COMMAND_FAILED with the reason, never a spawn', async () => {
    await assert.rejects(runner.run('bpftool', ['refuse'], {allowFailure: true}), (e: Error & {code?: string}) => {
      assert.equal(e.code, 'PN_COMMAND_FAILED')
      assert.match(e.message, /^run bpftool refuse: the kernel worker refused it: pn-netlink: a batch of more than 65536 lines is over the limit$/)
      return true
    })
    assert.equal(inner.records.length, 0)
    assert.equal((await runner.run('ip', ['ok'])).exitCode, 0, 'the worker lives on')
  })

  for (const kind of ['garbage', 'huge']) {
    it(`an answer header that breaks the protocol (${kind}) fails the request, and the worker is replaced`, async () => {
      await runner.run('ip', ['ok'])
      const first = worker.pid
      await assert.rejects(runner.run('ip', [kind]), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /protocol error: a malformed answer header/.test(e.message))
      assert.equal(inner.records.length, 0)
      assert.equal((await runner.run('ip', ['ok'])).exitCode, 0)
      assert.notEqual(worker.pid, first)
    })
  }

  it('a command over the protocol limits goes to the real tool, not the worker', async () => {
    const lines = 'link set dev x up\n'.repeat(WORKER_LIMITS.lines + 1)
    assert.equal(fitsWorker(['ip', '-batch', '-'], undefined, 'link set dev x up\n'.repeat(WORKER_LIMITS.lines)), true)
    assert.equal(fitsWorker(['ip', '-batch', '-'], undefined, lines), false)
    assert.equal(fitsWorker(['ip', 'a\0b'], undefined, ''), false)
    assert.equal(fitsWorker(['ip', 'ok'], 'x'.repeat(WORKER_LIMITS.netnsBytes + 1), ''), false)
    assert.equal(fitsWorker(['ip', ...Array.from({length: WORKER_LIMITS.argc}, () => 'x')], undefined, ''), false)
    assert.equal((await runner.run('ip', ['ok'], {input: lines})).stdout, 'from the tool')
    assert.equal((await runner.run('ip', ['ok', 'a\0b'])).stdout, 'from the tool')
    assert.equal(inner.records.length, 2)
    await assert.rejects(worker.request(['ip', 'ok'], undefined, lines), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /over the kernel worker's limits/.test(e.message))
  })

  it('after stop() every command goes to the inner runner', async () => {
    await worker.stop()
    assert.equal((await runner.run('ip', ['ok'])).stdout, 'from the tool')
  })
})

describe('kernel worker (the built dist/native/pn-netlink, no root)', function () {
  this.timeout(30_000)
  // PN_TEST_NATIVE_DIR: another build of the helpers (scripts/test-native.sh: the sanitizer build).
  const binary = path.resolve(process.env.PN_TEST_NATIVE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native'), 'pn-netlink')
  let worker: NetlinkWorker
  let inner: RecordingRunner
  let runner: WorkerRunner
  // A device that does not exist: every line parses, the first one fails, nothing is changed.
  const line = 'link set dev pn-nonexist0 up\n'

  before(function () {
    assert.ok(existsSync(binary), `${binary} is built by npm run build`)
  })
  beforeEach(() => {
    worker = new NetlinkWorker(binary)
    inner = new RecordingRunner(() => ({stdout: 'from the tool'}))
    runner = new WorkerRunner(inner, worker)
  })
  afterEach(() => worker.stop())

  it('answers a batch of 513 lines (it wrote past a static array of 512 and crashed), and lives on', async () => {
    const r = await runner.run('ip', ['-batch', '-'], {input: line.repeat(513), allowFailure: true})
    assert.equal(r.exitCode, 1)
    assert.equal(r.stderr, 'Cannot find device "pn-nonexist0"\nCommand failed -:1\n')
    const pid = worker.pid
    const again = await runner.run('ip', ['-batch', '-'], {input: line.repeat(2000), allowFailure: true})
    assert.equal(again.exitCode, 1)
    assert.equal(worker.pid, pid, 'the worker did not survive')
    assert.equal(inner.records.length, 0)
  })

  it('parses every line of a long batch before doing anything: line 1201 unsupported sends the whole batch to the real tool', async () => {
    const r = await runner.run('ip', ['-batch', '-'], {input: line.repeat(1200) + 'link set dev pn-nonexist0 sideways\n'})
    assert.equal(r.stdout, 'from the tool')
    assert.equal(inner.records.length, 1)
  })

  it('refuses a batch over 65536 lines (answer code -2 and the reason), and exits 1 on a malformed header', () => {
    // Spoken to directly: NetlinkWorker hands such a batch to the real tool before it gets here.
    const frame = (id: number, argv: string[], input: string) => {
      const args = Buffer.from(argv.map((a) => a + '\0').join(''))
      return Buffer.concat([Buffer.from(`${id} ${argv.length} ${args.length} 0 ${Buffer.byteLength(input)}\n`), args, Buffer.from(input)])
    }
    const big = 'map delete pinned /x key hex 01\n'.repeat(WORKER_LIMITS.lines + 1)
    const ok = spawnSync(binary, [], {input: frame(7, ['bpftool', 'batch', 'file', '-'], big)})
    const reason = 'pn-netlink: a batch of more than 65536 lines is over the limit\n'
    assert.equal(ok.status, 0, ok.stderr.toString())
    assert.equal(ok.stdout.toString(), `7 -2 0 ${reason.length}\n${reason}`)
    const bad = spawnSync(binary, [], {input: Buffer.concat([Buffer.from('8 1 3 0 99999999999999999999\n'), Buffer.from('ip\0')])})
    assert.equal(bad.status, 1)
    assert.equal(bad.stdout.length, 0)
    assert.match(bad.stderr.toString(), /^pn-netlink: bad request header/)
  })
})
