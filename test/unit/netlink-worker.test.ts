/**
 * The kernel worker's protocol without root. First the TypeScript side against a stand-in worker
 * (a Node script speaking the pn-netlink framing): answers split across reads and several in one
 * read, a refusal, a malformed answer, a dead worker (its request fails, never replayed, the next
 * request starts a new one), the limits. Then the native backend's encoder and decoder: golden op
 * lines, per-field limits, the answer's shape, failure → KernelError (index, errno name, extack;
 * pnCode the one mapping), an apply split at 65536 ops, map ops to the injected backend, and
 * kernelFor's choice. Last the built worker (dist/native/pn-netlink): a refused line, a malformed
 * header, a batch of 65536 ops on a device that does not exist (nothing changes; no root needed).
 * The worker on real devices: test/integration/netlink-worker.integration.ts.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {kernelOf} from '../../src/entry/env.js'
import {NetlinkWorker, WorkerRunner, WORKER_LIMITS, type WorkerAnswer} from '../../src/exec/netlink-worker.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {RecordingBackend, applyOne} from '../../src/kernel/backend.js'
import {KernelError} from '../../src/kernel/errors.js'
import {NativeBackend, decodeAnswer, encodeOp, errnoName} from '../../src/kernel/native.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {ToolsBackend, kernelFor} from '../../src/kernel/tools.js'

const hex = (s: string) => Buffer.from(s).toString('hex')

// Reads requests; answers by the first op line's name (link.get name=<hex>): "ok" → a result per
// op echoing the netns, "die" → exits without answering, "refuse" → code -2 with a reason,
// "garbage" → an answer header that is not the protocol's, "huge" → a body over the limit.
// "slow" is written a byte at a time; "hold" waits to go out with the next answer.
const FAKE = `#!${process.execPath}
let buf = Buffer.alloc(0)
const pending = []
process.stdin.on('data', (d) => {
  buf = Buffer.concat([buf, d])
  for (;;) {
    const nl = buf.indexOf(10)
    if (nl < 0) return
    const [id, nslen, count, blen] = buf.subarray(0, nl).toString().split(' ').map(Number)
    const end = nl + 1 + nslen + blen
    if (buf.length < end) return
    const ns = buf.subarray(nl + 1, nl + 1 + nslen).toString()
    const lines = buf.subarray(nl + 1 + nslen, end).toString().split('\\n').slice(0, count)
    buf = buf.subarray(end)
    const name = Buffer.from(/name=([0-9a-f]*)/.exec(lines[0])[1], 'hex').toString()
    if (name === 'die') process.exit(3)
    if (name === 'garbage') { process.stdout.write(id + ' zero\\n'); continue }
    if (name === 'huge') { process.stdout.write(id + ' 0 999999999\\n'); continue }
    const body = name === 'refuse' ? Buffer.from('op 0 (link.get): an unknown key') :
      Buffer.from(JSON.stringify({results: lines.map(() => ({link: {ifindex: 1, ifname: name, mtu: 1500, address: ns}}))}))
    const frame = Buffer.concat([Buffer.from(id + ' ' + (name === 'refuse' ? -2 : 0) + ' ' + body.length + '\\n'), body])
    if (name === 'slow') for (const b of frame) process.stdout.write(Buffer.from([b]))
    else if (name === 'hold') pending.push(frame)
    else { pending.push(frame); process.stdout.write(Buffer.concat(pending.splice(0))) }
  }
})
`

describe('kernel worker protocol (stand-in worker, no root)', function () {
  this.timeout(20_000)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-nlw-unit-'))
  const bin = path.join(dir, 'fake-netlink')
  writeFileSync(bin, FAKE)
  chmodSync(bin, 0o755)
  let worker: NetlinkWorker
  let inner: RecordingRunner
  let kernel: NativeBackend

  beforeEach(() => {
    worker = new NetlinkWorker(bin)
    inner = new RecordingRunner()
    kernel = new NativeBackend(worker, new ToolsBackend(inner))
  })
  afterEach(() => worker.stop())
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('sends an apply as one request in its netns and returns typed results; nothing is spawned', async () => {
    const r = await kernel.apply([{kind: 'link.get', name: 'slow'}, {kind: 'link.get', name: 'x'}], {netns: '/run/netns/pn-x'})
    assert.deepEqual(r, [
      {kind: 'link.get', link: {ifindex: 1, ifname: 'slow', mtu: 1500, address: '/run/netns/pn-x'}},
      {kind: 'link.get', link: {ifindex: 1, ifname: 'slow', mtu: 1500, address: '/run/netns/pn-x'}},
    ])
    assert.equal(inner.records.length, 0)
  })

  it('reassembles answers that arrive together, each to its request', async () => {
    const [a, b] = await Promise.all([applyOne(kernel, {kind: 'link.get', name: 'hold'}), applyOne(kernel, {kind: 'link.get', name: 'ok'})])
    assert.equal(a.link?.ifname, 'hold')
    assert.equal(b.link?.ifname, 'ok')
  })

  it('a worker that dies fails the request it was running (no replay by the tools), and the next request starts a new one', async () => {
    await applyOne(kernel, {kind: 'link.get', name: 'ok'})
    const first = worker.pid
    await assert.rejects(applyOne(kernel, {kind: 'link.get', name: 'die'}), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /exited/.test(e.message))
    assert.equal(inner.records.length, 0, 'a half-done request must not be replayed by the tools')
    assert.equal((await applyOne(kernel, {kind: 'link.get', name: 'ok'})).link?.ifname, 'ok')
    assert.notEqual(worker.pid, first)
  })

  it('a refusal (code -2: nothing done) is a PN_COMMAND_FAILED with the reason, and the worker lives on', async () => {
    await applyOne(kernel, {kind: 'link.get', name: 'ok'})
    const pid = worker.pid
    await assert.rejects(applyOne(kernel, {kind: 'link.get', name: 'refuse'}), (e: Error & {code?: string}) => {
      assert.equal(e.code, 'PN_COMMAND_FAILED')
      assert.equal(e.message, 'show link refuse: the kernel worker refused the request: op 0 (link.get): an unknown key')
      return true
    })
    assert.equal(worker.pid, pid)
  })

  for (const kind of ['garbage', 'huge']) {
    it(`an answer header that breaks the protocol (${kind}) fails the request, and the worker is replaced`, async () => {
      await applyOne(kernel, {kind: 'link.get', name: 'ok'})
      const first = worker.pid
      await assert.rejects(applyOne(kernel, {kind: 'link.get', name: kind}), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /protocol error: a malformed answer header/.test(e.message))
      assert.equal((await applyOne(kernel, {kind: 'link.get', name: 'ok'})).link?.ifname, 'ok')
      assert.notEqual(worker.pid, first)
    })
  }

  it('a request over the limits is never sent: ops, body bytes, netns path', async () => {
    const body = Buffer.from('link.list\n')
    for (const [ns, n, b] of [[undefined, 0, body], [undefined, WORKER_LIMITS.ops + 1, body], [undefined, 1, Buffer.alloc(WORKER_LIMITS.bodyBytes + 1)], ['x'.repeat(WORKER_LIMITS.netnsBytes + 1), 1, body], ['a\0b', 1, body]] as const) {
      await assert.rejects(worker.request(ns, n, b), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /over its limits/.test(e.message))
    }
    assert.equal(worker.pid, undefined, 'no worker was started for them')
  })

  it('after stop() a request fails; the WorkerRunner runs every command through its inner runner', async () => {
    const runner = new WorkerRunner(inner, worker)
    await runner.run('ip', ['link', 'show'])
    assert.deepEqual(inner.records.map((r) => r.argv), [['ip', 'link', 'show']])
    await worker.stop()
    await assert.rejects(applyOne(kernel, {kind: 'link.get', name: 'ok'}), /stopped/)
  })
})

/** A stand-in worker link: records requests, answers with `answer`. */
function link(answer: (lines: string[], netns?: string) => WorkerAnswer | object) {
  const sent: {netns?: string; count: number; lines: string[]}[] = []
  let broke: string | undefined
  return {
    sent,
    get broke() {
      return broke
    },
    request: async (netns: string | undefined, count: number, body: Buffer): Promise<WorkerAnswer> => {
      const lines = body.toString('latin1').split('\n').slice(0, -1)
      assert.equal(lines.length, count)
      sent.push({netns, count, lines})
      const a = answer(lines, netns)
      return 'code' in a && 'body' in a ? (a as WorkerAnswer) : {code: 0, body: Buffer.from(JSON.stringify(a))}
    },
    broken: (why: string) => {
      broke = why
    },
  }
}

describe('native backend: encoding, decoding, failures (no worker)', () => {
  it('renders each op to its line: strings in hex, numbers in decimal, flags as =1, absent and false left out', () => {
    const lines = ([
      {kind: 'link.add', type: 'veth', name: 'lxc1', address: '02:00:00:00:00:01', mtu: 1450, txqueuelen: 1000, peer: {name: 'eth0', mtu: 1450, netns: '/run/netns/p q'}},
      {kind: 'link.set', name: 'lxc1', up: false, mtu: 9000},
      {kind: 'link.del', name: 'lxc1', missingOk: true},
      {kind: 'addr.add', dev: 'eth0', address: 'fd00::1/128', nodad: true, scope: 'link', replace: false},
      {kind: 'route.add', dst: '0.0.0.0/0', via: '10.0.0.1', dev: 'eth0', mtu: 1400, replace: true},
      {kind: 'route.add', dst: '10.2.0.0/24', via: '10.0.0.2', dev: 'eth0', replace: true, proto: 'pn'},
      {kind: 'route.list', family: 6, table: 'all', exact: '::/0'},
      {kind: 'neigh.add', dev: 'eth0', dst: '10.0.0.1', lladdr: '02:00:00:00:00:09', permanent: true},
      {kind: 'sysctl.set', key: 'net.ipv4.conf.eth0/100.forwarding', value: '1'},
      {kind: 'tc.attach', dev: 'lxc1', direction: 'egress', pref: 1, handle: 1, pinned: '/sys/fs/bpf/pn/to_container'},
      {kind: 'tc.detach', dev: 'lxc1', direction: 'ingress', pref: 1, handle: 1, missingOk: true},
      {kind: 'link.list'},
      {kind: 'link.add', type: 'vxlan', name: 'pn_vxlan', mtu: 1450, dstport: 8472},
    ] as KernelOp[]).map(encodeOp)
    assert.deepEqual(lines, [
      `link.add name=${hex('lxc1')} mac=${hex('02:00:00:00:00:01')} mtu=1450 txqlen=1000 peer=${hex('eth0')} peer_mtu=1450 peer_netns=${hex('/run/netns/p q')}`,
      `link.set name=${hex('lxc1')} mtu=9000`,
      `link.del name=${hex('lxc1')} missing_ok=1`,
      `addr.add dev=${hex('eth0')} addr=${hex('fd00::1/128')} scope_link=1 nodad=1`,
      `route.add dst=${hex('0.0.0.0/0')} dev=${hex('eth0')} via=${hex('10.0.0.1')} mtu=1400 replace=1`,
      `route.add dst=${hex('10.2.0.0/24')} dev=${hex('eth0')} via=${hex('10.0.0.2')} replace=1 proto=112`,
      `route.list family=6 table_all=1 exact=${hex('::/0')}`,
      `neigh.add dev=${hex('eth0')} dst=${hex('10.0.0.1')} lladdr=${hex('02:00:00:00:00:09')} permanent=1`,
      `sysctl.set key=${hex('net.ipv4.conf.eth0/100.forwarding')} value=${hex('1')}`,
      `tc.attach dev=${hex('lxc1')} egress=1 pref=1 handle=1 pinned=${hex('/sys/fs/bpf/pn/to_container')}`,
      `tc.detach dev=${hex('lxc1')} pref=1 handle=1 missing_ok=1`,
      'link.list',
      `link.add name=${hex('pn_vxlan')} mtu=1450 vxlan_port=8472`,
    ])
    // link.set up:false is "down": the flag is a number, not left out.
    assert.equal(encodeOp({kind: 'link.set', name: 'a', up: false}), `link.set name=${hex('a')}`)
  })

  it('refuses a value the worker would refuse, before sending: a name over 15 bytes, a NUL, an empty string, a number out of range', () => {
    const bad: KernelOp[] = [
      {kind: 'link.get', name: 'abcdefghijklmnop'},
      {kind: 'link.get', name: 'a\0b'},
      {kind: 'link.get', name: ''},
      {kind: 'link.set', name: 'a', mtu: -1},
      {kind: 'link.set', name: 'a', mtu: 1.5},
      {kind: 'route.add', dst: '10.0.0.0/8', dev: 'a', mtu: 2 ** 32},
      {kind: 'tc.attach', dev: 'a', direction: 'ingress', pref: 65536, handle: 1, pinned: '/x'},
      {kind: 'tc.attach', dev: 'a', direction: 'ingress', pref: 1, handle: 1, pinned: '/'.repeat(4096)},
    ]
    for (const op of bad) assert.throws(() => encodeOp(op), (e: Error & {code?: string}) => e.code === 'PN_INVALID_ARGUMENT', JSON.stringify(op))
    assert.throws(() => encodeOp({kind: 'map.dump', map: '/x'}), /not an op of the kernel worker/)
  })

  it('decodes results in pn\'s schema (kind from the op) and checks the shape a caller relies on', () => {
    const ops: KernelOp[] = [{kind: 'link.get', name: 'a'}, {kind: 'link.del', name: 'b', missingOk: true}, {kind: 'tc.list', dev: 'a', direction: 'ingress'}]
    assert.deepEqual(decodeAnswer('{"results":[{},{"deleted":false},{"filters":[{"pref":1,"kind":"bpf","handle":1,"prog":{"id":7,"name":"from_container","tag":"00"}}]}]}', ops).results, [
      {kind: 'link.get'},
      {kind: 'link.del', deleted: false},
      {kind: 'tc.list', filters: [{pref: 1, kind: 'bpf', handle: 1, prog: {id: 7, name: 'from_container', tag: '00'}}]},
    ])
    for (const [text, why] of [
      ['not json', /not JSON/],
      ['{"results":{}}', /without results/],
      ['{"results":[{}]}', /1 results for 3 ops/],
      ['{"results":[{},{"deleted":true}, {"filters":{}}]}', /result 2 \(tc.list\) has no filters/],
      ['{"results":[{},{"deleted":"no"},{"filters":[]}]}', /result 1 \(link.del\) has no deleted/],
      ['{"results":[{}],"error":{"index":0,"errno":17}}', /error index is not the first op without a result/],
      ['{"results":[],"error":{"index":0,"errno":-17}}', /malformed errno/],
      ['{"results":[],"error":{"index":0,"extack":5}}', /malformed extack/],
    ] as const) {
      assert.throws(() => decodeAnswer(text, ops), why, text)
    }
  })

  it('a failure is a KernelError at its index: errno named, pnCode mapping (EEXIST on link.add → PN_LINK_EXISTS, ENODEV → PN_LINK_NOT_FOUND), extack as the cause', async () => {
    const eexist = os.constants.errno.EEXIST
    const w = link((lines) => ({results: lines.slice(0, 1).map(() => ({})), error: {index: 1, errno: eexist}}))
    const ops: KernelOp[] = [{kind: 'link.set', name: 'pn_host', up: true}, {kind: 'link.add', type: 'veth', name: 'lxc1', peer: {name: 'eth0'}}, {kind: 'link.set', name: 'lxc1', up: true}]
    await assert.rejects(new NativeBackend(w, new RecordingBackend()).apply(ops, {netns: '/run/netns/pn-a'}), (e: KernelError) => {
      assert.ok(e instanceof KernelError)
      assert.deepEqual([e.code, e.index, e.errno, e.extack, e.op], ['PN_LINK_EXISTS', 1, 'EEXIST', undefined, ops[1]])
      assert.equal(e.message, 'create veth lxc1 (peer eth0) in /run/netns/pn-a: File exists')
      return true
    })
    assert.equal(w.sent.length, 1, 'one request for the apply')
    const nodev = link(() => ({results: [], error: {index: 0, errno: os.constants.errno.ENODEV}}))
    await assert.rejects(applyOne(new NativeBackend(nodev, new RecordingBackend()), {kind: 'addr.add', dev: 'gone0', address: '10.0.0.1/32'}), (e: KernelError) => e.code === 'PN_LINK_NOT_FOUND' && e.errno === 'ENODEV' && e.index === 0)
    const ext = link(() => ({results: [], error: {index: 0, errno: os.constants.errno.EINVAL, extack: 'Nexthop has invalid gateway'}}))
    await assert.rejects(applyOne(new NativeBackend(ext, new RecordingBackend()), {kind: 'route.add', dst: '0.0.0.0/0', via: '10.9.9.9', dev: 'eth0'}), (e: KernelError) => {
      assert.deepEqual([e.code, e.errno, e.extack], ['PN_COMMAND_FAILED', 'EINVAL', 'Nexthop has invalid gateway'])
      assert.equal(e.message, 'add route 0.0.0.0/0 via 10.9.9.9 dev eth0: Nexthop has invalid gateway')
      return true
    })
    // An errno pn does not tell apart: no Errno, the name and number in the message; the worker's own reason as is.
    const odd = link(() => ({results: [], error: {index: 0, errno: os.constants.errno.EMLINK}}))
    await assert.rejects(applyOne(new NativeBackend(odd, new RecordingBackend()), {kind: 'link.set', name: 'a', up: true}), (e: KernelError) => e.errno === undefined && /: EMLINK \(\d+\)$/.test(e.message))
    const ns = link(() => ({results: [], error: {index: 0, reason: 'cannot enter the netns /run/netns/x: No such file or directory'}}))
    await assert.rejects(applyOne(new NativeBackend(ns, new RecordingBackend()), {kind: 'link.list'}), (e: KernelError) => e.code === 'PN_COMMAND_FAILED' && /cannot enter the netns/.test(e.message))
    assert.deepEqual(errnoName(os.constants.errno.ESRCH), {name: 'ESRCH', errno: 'ESRCH'})
  })

  it('an answer that breaks the schema marks the worker broken and fails the apply', async () => {
    const w = link(() => ({results: [{links: 'no'}]}))
    await assert.rejects(applyOne(new NativeBackend(w, new RecordingBackend()), {kind: 'link.list'}), /broke its protocol: result 0 \(link.list\) has no links/)
    assert.match(w.broke ?? '', /has no links/)
  })

  it('splits an apply over 65536 ops into requests in order; map and prog ops go to the injected backend with their own index', async () => {
    const w = link((lines) => ({results: lines.map(() => ({}))}))
    const ops: KernelOp[] = Array.from({length: WORKER_LIMITS.ops + 2}, () => ({kind: 'link.set', name: 'x', up: true}) as KernelOp)
    const r = await new NativeBackend(w, new RecordingBackend()).apply(ops)
    assert.equal(r.length, ops.length)
    assert.deepEqual(w.sent.map((s) => s.count), [WORKER_LIMITS.ops, 2])
    const other = new RecordingBackend((op) => (op.kind === 'map.lookup' ? {kind: 'map.lookup', value: Buffer.from([1])} : undefined))
    const w2 = link((lines) => ({results: lines.map(() => ({}))}))
    const mixed: KernelOp[] = [{kind: 'link.set', name: 'a', up: true}, {kind: 'map.lookup', map: '/sys/fs/bpf/pn/m', key: Buffer.from([0])}, {kind: 'prog.get', pinned: '/p'}, {kind: 'qdisc.add', dev: 'a'}]
    const out = await new NativeBackend(w2, other).apply(mixed, {netns: '/run/netns/pn-n'})
    assert.deepEqual(out.map((x) => x.kind), ['link.set', 'map.lookup', 'prog.get', 'qdisc.add'])
    assert.deepEqual(w2.sent.map((s) => s.lines.map((l) => l.split(' ')[0])), [['link.set'], ['qdisc.add']])
    assert.deepEqual(other.applied, [{ops: [mixed[1], mixed[2]], netns: '/run/netns/pn-n'}])
    // The injected backend's failure keeps the caller's index.
    const failing = {apply: async (o: readonly KernelOp[]) => Promise.reject(new KernelError({op: o[1], index: 1, errno: 'ENOENT'}))}
    await assert.rejects(new NativeBackend(w2, failing).apply(mixed), (e: KernelError) => e.index === 2 && e.op === mixed[2])
  })

  it('kernelFor: the native backend for the agent\'s WorkerRunner, the tools backend for any other runner', () => {
    const inner = new RecordingRunner()
    assert.ok(kernelFor(new WorkerRunner(inner, new NetlinkWorker('/nonexistent'))) instanceof NativeBackend)
    assert.ok(kernelFor(inner) instanceof ToolsBackend)
    // PN_KERNEL=tools: the entries make no WorkerRunner; unset or native keeps the worker.
    assert.deepEqual([kernelOf('tools'), kernelOf('native'), kernelOf(undefined)], ['tools', 'native', 'native'])
  })
})

describe('kernel worker (the built dist/native/pn-netlink, no root)', function () {
  this.timeout(60_000)
  // PN_TEST_NATIVE_DIR: another build of the helpers (scripts/test-native.sh: the sanitizer build).
  const binary = path.resolve(process.env.PN_TEST_NATIVE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native'), 'pn-netlink')
  const frame = (id: number, lines: string[], ns = '') => {
    const body = Buffer.from(lines.map((l) => l + '\n').join(''))
    return Buffer.concat([Buffer.from(`${id} ${Buffer.byteLength(ns)} ${lines.length} ${body.length}\n${ns}`), body])
  }
  const answers = (stdout: Buffer) => {
    const out: {id: number; code: number; body: string}[] = []
    for (let rest = stdout; rest.length; ) {
      const nl = rest.indexOf(10)
      const [id, code, len] = rest.subarray(0, nl).toString().split(' ').map(Number)
      out.push({id, code, body: rest.subarray(nl + 1, nl + 1 + len).toString()})
      rest = rest.subarray(nl + 1 + len)
    }
    return out
  }

  before(function () {
    assert.ok(existsSync(binary), `${binary} is built by npm run build`)
  })

  it('answers a batch of 65536 ops on an absent device: every link.get empty, then ENODEV at the change (index and errno), nothing done', () => {
    const lines = [...Array.from({length: WORKER_LIMITS.ops - 1}, () => `link.get name=${hex('pn-nonexist0')}`), `link.set name=${hex('pn-nonexist0')} up=1`]
    const r = spawnSync(binary, [], {input: frame(7, lines), maxBuffer: 64 << 20})
    assert.equal(r.status, 0, r.stderr.toString())
    const [a] = answers(r.stdout)
    assert.equal(a.code, 0)
    const json = JSON.parse(a.body) as {results: unknown[]; error: unknown}
    assert.equal(json.results.length, WORKER_LIMITS.ops - 1)
    assert.deepEqual(json.results[0], {})
    assert.deepEqual(json.error, {index: WORKER_LIMITS.ops - 1, errno: os.constants.errno.ENODEV})
  })

  it('refuses (code -2, the reason, nothing done) an op line outside the grammar, and lives on for the next request', () => {
    const input = Buffer.concat([
      frame(1, [`link.set name=${hex('pn-nonexist0')} up=1 sideways=1`, `link.set name=${hex('pn-nonexist0')} peer=${hex('x')}`]),
      frame(2, [`link.get name=${hex('abcdefghijklmnop')}`]),
      frame(3, [`link.get name=${hex('lo').toUpperCase()}`]),
      frame(4, ['link.list extra']),
      frame(5, [`addr.add dev=${hex('lo')} addr=${hex('10.0.0.1')}`]),
      frame(6, [`sysctl.set key=${hex('net.ipv4.//.x')} value=${hex('1')}`]),
      frame(7, [`link.del name=${hex('pn-nonexist0')} missing_ok=1`]),
      // A link.add is a veth (peer) or a VXLAN device (vxlan_port, 1..65535), never both or neither.
      frame(8, [`link.add name=${hex('pn-x')}`]),
      frame(9, [`link.add name=${hex('pn-x')} peer=${hex('pn-y')} vxlan_port=8472`]),
      frame(10, [`link.add name=${hex('pn-x')} vxlan_port=0`]),
      frame(11, [`link.add name=${hex('pn-x')} vxlan_port=65536`]),
    ])
    const r = spawnSync(binary, [], {input})
    assert.equal(r.status, 0, r.stderr.toString())
    const a = answers(r.stdout)
    assert.deepEqual(a.map((x) => [x.id, x.code]), [[1, -2], [2, -2], [3, -2], [4, -2], [5, -2], [6, -2], [7, 0], [8, -2], [9, -2], [10, -2], [11, -2]])
    assert.match(a[7].body, /needs peer \(veth\) or vxlan_port \(vxlan\)/)
    assert.match(a[8].body, /a vxlan link.add takes no peer/)
    assert.match(a[9].body, /vxlan_port is 1\.\.65535/)
    assert.match(a[10].body, /over its limit/)
    assert.match(a[0].body, /^op 0 \(link\.set name=706e2d\): an unknown key$/)
    assert.match(a[1].body, /over its limit/)
    assert.match(a[2].body, /lowercase hex/)
    assert.match(a[4].body, /addr is not an address with its prefix length/)
    assert.match(a[5].body, /"\.\." component/)
    assert.deepEqual(JSON.parse(a[6].body), {results: [{deleted: false}]})
  })

  it('exits 1 on a malformed header or one over a limit (65537 ops), answering nothing', () => {
    for (const head of ['8 0 1 99999999999999999999\n', `9 0 ${WORKER_LIMITS.ops + 1} 10\n`, '10 4096 1 10\n', '11 0 1\n', 'x'.repeat(200)]) {
      const r = spawnSync(binary, [], {input: Buffer.from(head + 'link.list\n')})
      assert.equal(r.status, 1, head)
      assert.equal(r.stdout.length, 0)
      assert.match(r.stderr.toString(), /^pn-netlink: bad request header/)
    }
  })

  it('a netns it cannot enter fails op 0 with its reason (no errno: not the kernel answering for the op)', () => {
    const r = spawnSync(binary, [], {input: frame(3, ['link.list'], '/run/netns/pn-does-not-exist')})
    const [a] = answers(r.stdout)
    assert.deepEqual(JSON.parse(a.body), {results: [], error: {index: 0, reason: 'cannot enter the netns /run/netns/pn-does-not-exist: No such file or directory'}})
  })
})
