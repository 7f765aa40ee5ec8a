/**
 * WorkerRunner + NetlinkWorker without root: a stand-in worker (a Node script speaking the
 * pn-netlink protocol) checks the framing (answers split across reads, several in one read,
 * binary-safe output), that "unsupported" goes to the inner runner, that a failed command is the
 * same PnError every runner throws, and that a dead worker fails its request and is replaced.
 * The real worker against the real tools: test/integration/netlink-worker.integration.ts.
 */
import assert from 'node:assert/strict'
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {NetlinkWorker, WorkerRunner} from '../../src/exec/netlink-worker.js'
import {RecordingRunner} from '../../src/exec/runner.js'

// Reads requests; answers by argv[1]: "ok" → exit 0 with stdout echoing the netns and input,
// "fail" → exit 1 with an ip-style stderr, "unsupported" → -1, "die" → exits without answering.
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

  it('after stop() every command goes to the inner runner', async () => {
    await worker.stop()
    assert.equal((await runner.run('ip', ['ok'])).stdout, 'from the tool')
  })
})
