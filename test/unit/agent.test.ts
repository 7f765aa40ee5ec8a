import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {callAgent} from '../../src/agent/client.js'
import {lockAgentInstance, writeAgentPidFile} from '../../src/agent/instance.js'
import {agentLockHolder, resolveGroup} from '../../src/agent/lifecycle.js'
import {agentPidFile, agentSocketPath} from '../../src/agent/paths.js'
import {AgentServer, authorizePeer, HANGUP} from '../../src/agent/server.js'
import {agentSyscalls} from '../../src/agent/syscalls.js'
import {requestEnv, TEST_HOOK_VARS} from '../../src/entry/agent-main.js'
import {decodeRequest, decodeResponse, encodeRequest, encodeResponse, FALLBACK_EXIT, WireError, type WireRequest, type WireResponse} from '../../src/agent/wire.js'
import {PnError} from '../../src/errors.js'
import {KeyedMutex} from '../../src/exec/keyed-mutex.js'
import {REPO_ROOT} from '../helpers/cli.js'

const CLIENT = path.join(REPO_ROOT, 'dist/native/pn-cni')
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

describe('agent wire format', () => {
  it('round-trips a request with any bytes (newlines, commas, colons, non-ASCII) in env and stdin', () => {
    const req: WireRequest = {netnsIno: '4026531840', env: {CNI_COMMAND: 'ADD', CNI_ARGS: 'A=1;B=x,y:z', PN_X: 'line1\nline2', EMPTY: ''}, stdin: '{"name":"n","é":"ü"}\n'}
    assert.deepEqual(decodeRequest(encodeRequest(req)), req)
    const resp: WireResponse = {exitCode: 7, stdout: '{"code":7}\n', stderr: 'a,b:c'}
    assert.deepEqual(decodeResponse(encodeResponse(resp)), resp)
  })

  it('tells a truncated request (more bytes may come) from a malformed one', () => {
    const whole = encodeRequest({netnsIno: '1', env: {CNI_COMMAND: 'DEL'}, stdin: '{}'})
    for (const cut of [3, 10, whole.length - 1]) {
      assert.throws(() => decodeRequest(whole.subarray(0, cut)), (e: WireError) => e instanceof WireError && e.incomplete, `cut at ${cut}`)
    }
    assert.throws(() => decodeRequest(Buffer.from('GET / HTTP/1.1\r\n\r\n')), (e: WireError) => !e.incomplete && /bad magic/.test(e.message))
    assert.throws(() => decodeRequest(Buffer.from('PNCNI/1\n1:1,1:1,3:ABC,2:{},')), /without '='/)
    assert.throws(() => decodeRequest(Buffer.concat([whole, Buffer.from('x')])), /trailing bytes/)
    assert.throws(() => decodeRequest(Buffer.from('PNCNI/1\n1:1;')), /does not end with a comma/)
    assert.throws(() => decodeRequest(Buffer.from('PNCNI/1\nx:1,')), /malformed netstring/)
  })
})

describe('keyed mutex', () => {
  it('serialises one key in arrival order and lets other keys through', async () => {
    const m = new KeyedMutex()
    const order: string[] = []
    const hold = async (key: string, tag: string, ms: number) => {
      const release = await m.lock(key)
      order.push(`${tag}+`)
      await sleep(ms)
      order.push(`${tag}-`)
      release()
    }
    await Promise.all([hold('a', 'a1', 20), hold('a', 'a2', 1), hold('b', 'b1', 1)])
    // b1 ran while a1 held 'a'; a2 started only after a1 ended.
    assert.ok(order.indexOf('b1-') < order.indexOf('a1-'), order.join(' '))
    assert.ok(order.indexOf('a1-') < order.indexOf('a2+'), order.join(' '))
    assert.equal(m.size, 0)
  })
})

describe('agent server', () => {
  let dir: string
  let server: AgentServer | undefined
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pn-agent-unit-'))
  })
  afterEach(async () => {
    await server?.close({abort: true})
    server = undefined
    rmSync(dir, {recursive: true, force: true})
  })

  const refuse = (_req: WireRequest | undefined, err: PnError): WireResponse => ({exitCode: 1, stdout: JSON.stringify({code: err.cniCode, msg: err.message, details: err.code}), stderr: ''})
  const request = (env: Record<string, string>, netnsIno = '1'): WireRequest => ({netnsIno, env, stdin: '{}'})

  type Opts = {maxInflight?: number; maxQueued?: number; queueTimeoutMs?: number; maxConnections?: number; idleTimeoutMs?: number; maxRequestBytes?: number; group?: number; hangupCheckMs?: number}
  async function start(handle: (req: WireRequest, signal: AbortSignal) => Promise<WireResponse>, opts: Opts = {}): Promise<AgentServer> {
    server = new AgentServer({stateDir: dir, netnsIno: '1', handle, refuse, ...opts})
    await server.listen()
    return server
  }

  it('serves over its socket (0600), serialises one attachment and runs different pods in parallel', async () => {
    let running = 0
    let peak = 0
    const perKey = new Map<string, number>()
    await start(async (req) => {
      const key = `${req.env.CNI_CONTAINERID}:${req.env.CNI_IFNAME}`
      perKey.set(key, (perKey.get(key) ?? 0) + 1)
      assert.equal(perKey.get(key), 1, `two requests for ${key} at once`)
      running++
      peak = Math.max(peak, running)
      await sleep(30)
      running--
      perKey.set(key, perKey.get(key)! - 1)
      return {exitCode: 0, stdout: `done ${key}\n`, stderr: ''}
    })
    assert.equal(statSync(agentSocketPath(dir)).mode & 0o777, 0o600)
    const calls = ['p1', 'p1', 'p1', 'p2', 'p3'].map((cid) => callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_IFNAME: 'eth0'})))
    const out = await Promise.all(calls)
    assert.deepEqual(out.map((o) => o.stdout), ['done p1:eth0\n', 'done p1:eth0\n', 'done p1:eth0\n', 'done p2:eth0\n', 'done p3:eth0\n'])
    assert.ok(peak >= 2, `different pods never ran in parallel (peak ${peak})`)
    assert.equal(server!.stats().served, 5)
  })

  it('answers code 11 (PN_AGENT_BUSY) past its queue, never hangs', async () => {
    let unblock!: () => void
    const blocked = new Promise<void>((r) => (unblock = r))
    await start(async () => {
      await blocked
      return {exitCode: 0, stdout: 'ok', stderr: ''}
    }, {maxInflight: 1, maxQueued: 2})
    const calls = [1, 2, 3, 4, 5].map((i) => callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD', CNI_CONTAINERID: `c${i}`, CNI_IFNAME: 'eth0'})))
    // One runs and two wait in the queue; later ones are refused at once.
    const refused = await Promise.race([Promise.any(calls), sleep(5000).then(() => undefined)])
    assert.ok(refused, 'no answer while the queue was full')
    assert.equal(JSON.parse(refused.stdout).code, 11)
    assert.equal(JSON.parse(refused.stdout).details, 'PN_AGENT_BUSY')
    unblock()
    const all = await Promise.all(calls)
    assert.equal(all.filter((r) => r.exitCode === 0).length, 3)
    assert.equal(all.filter((r) => r.exitCode === 1 && JSON.parse(r.stdout).code === 11).length, 2)
  })

  it('answers code 11 after the queue timeout', async () => {
    await start(async () => {
      await sleep(300)
      return {exitCode: 0, stdout: 'ok', stderr: ''}
    }, {maxInflight: 1, queueTimeoutMs: 50})
    const [a, b] = await Promise.all([
      callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0'})),
      callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'b', CNI_IFNAME: 'eth0'})),
    ])
    assert.equal(a.exitCode, 0)
    assert.equal(JSON.parse(b.stdout).code, 11)
  })

  it('sends a request from another network namespace back to the standalone path', async () => {
    await start(async () => ({exitCode: 0, stdout: 'served', stderr: ''}))
    const r = await callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD'}, '999'))
    assert.equal(r.exitCode, FALLBACK_EXIT)
    assert.equal(server!.stats().fallbacks, 1)
  })

  it('refuses a second agent on the same socket and replaces a dead one\'s leftover socket file', async () => {
    await start(async () => ({exitCode: 0, stdout: '', stderr: ''}))
    const second = new AgentServer({stateDir: dir, netnsIno: '1', handle: async () => ({exitCode: 0, stdout: '', stderr: ''}), refuse})
    await assert.rejects(second.listen(), (e: PnError) => e.code === 'PN_AGENT_RUNNING')
    await server!.close()
    writeFileSync(agentSocketPath(dir), '')
    await start(async () => ({exitCode: 0, stdout: 'again', stderr: ''}))
    assert.equal((await callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'VERSION'}))).stdout, 'again')
  })

  it('close() removes the socket at once and waits for the requests in flight', async () => {
    let finished = false
    await start(async () => {
      await sleep(150)
      finished = true
      return {exitCode: 0, stdout: 'finished', stderr: ''}
    })
    const inflight = callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'x', CNI_IFNAME: 'eth0'}))
    await sleep(30)
    const closing = server!.close()
    await sleep(10)
    await assert.rejects(callAgent(agentSocketPath(dir), request({CNI_COMMAND: 'ADD'})), (e: PnError) => e.code === 'PN_AGENT_NOT_RUNNING')
    await closing
    assert.equal(finished, true)
    assert.equal((await inflight).stdout, 'finished')
  })
})


/** A raw client: sends `bytes` (then half-closes unless told), collects the answer until EOF. */
function rawCall(socket: string, bytes: Buffer, opts: {end?: boolean} = {}): {sock: net.Socket; answer: Promise<string>} {
  const sock = net.connect({path: socket, allowHalfOpen: true})
  sock.on('error', () => undefined)
  const chunks: Buffer[] = []
  sock.on('data', (d: Buffer) => chunks.push(d))
  // The answer is whole at the agent's EOF (or at close, when this side was destroyed).
  const answer = new Promise<string>((resolve) => {
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'))
    sock.once('end', done)
    sock.once('close', done)
  })
  sock.once('connect', () => (opts.end === false ? sock.write(bytes) : sock.end(bytes)))
  return {sock, answer}
}

describe('agent server hardening', () => {
  let dir: string
  let server: AgentServer | undefined
  const logs: string[] = []
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pn-agent-hard-'))
    logs.length = 0
  })
  afterEach(async () => {
    await server?.close({abort: true})
    server = undefined
    rmSync(dir, {recursive: true, force: true})
  })
  const refuse = (_req: WireRequest | undefined, err: PnError): WireResponse => ({exitCode: 1, stdout: JSON.stringify({code: err.cniCode, msg: err.message, details: err.code}), stderr: ''})
  const req = (env: Record<string, string>): WireRequest => ({netnsIno: '1', env, stdin: '{}'})
  async function start(handle: (req: WireRequest, signal: AbortSignal) => Promise<WireResponse>, opts: Partial<ConstructorParameters<typeof AgentServer>[0]> = {}): Promise<AgentServer> {
    server = new AgentServer({stateDir: dir, netnsIno: '1', handle, refuse, log: (m) => logs.push(m), ...opts})
    await server.listen()
    return server
  }
  const answerOf = (raw: string) => JSON.parse(decodeResponse(Buffer.from(raw)).stdout) as {code: number; msg: string; details: string}

  it('binds in a private directory and renames the socket into place: 0600, no leftover, a stale file replaced', async () => {
    writeFileSync(agentSocketPath(dir), 'stale')
    await start(async () => ({exitCode: 0, stdout: 'ok', stderr: ''}))
    const st = statSync(agentSocketPath(dir))
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(dir).sort(), ['agent.sock'], 'the bind directory is gone')
    assert.equal((await callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'VERSION'}))).stdout, 'ok')
  })

  it('with a group the socket is 0660 and owned by that group', async () => {
    const gid = process.getgid!()
    await start(async () => ({exitCode: 0, stdout: 'ok', stderr: ''}), {group: gid})
    const st = statSync(agentSocketPath(dir))
    assert.equal(st.mode & 0o777, 0o660)
    assert.equal(st.gid, gid)
  })

  it('close() removes only the socket it bound', async () => {
    await start(async () => ({exitCode: 0, stdout: 'ok', stderr: ''}))
    rmSync(agentSocketPath(dir))
    writeFileSync(agentSocketPath(dir), 'someone else\'s')
    await server!.close()
    assert.equal(readFileSync(agentSocketPath(dir), 'utf8'), 'someone else\'s')
  })

  it('authorizes root, the agent\'s own user and members of the group (primary or supplementary); refuses anyone else with PN_NOT_ROOT', () => {
    const peer = (uid: number, gid: number, groups: number[] = []) => ({pid: 42, uid, gid, groups})
    assert.equal(authorizePeer(peer(0, 0), {selfUid: 0}), undefined)
    assert.equal(authorizePeer(peer(1000, 1000), {selfUid: 1000}), undefined)
    assert.equal(authorizePeer(peer(65534, 4242), {selfUid: 0, group: 4242}), undefined)
    assert.equal(authorizePeer(peer(65534, 65534, [4242]), {selfUid: 0, group: 4242}), undefined)
    const denied = authorizePeer(peer(65534, 65534, [1]), {selfUid: 0, group: 4242})
    assert.equal(denied?.code, 'PN_NOT_ROOT')
    assert.match(denied!.message, /^serve agent request from pid 42 \(uid 65534, gid 65534\): root or group 4242 only$/)
    assert.equal(denied!.cniCode, 123)
    assert.match(authorizePeer(peer(65534, 65534), {selfUid: 0})!.message, /root only$/)
  })

  it('checks every connection\'s peer credentials before reading its request', async () => {
    let ran = false
    const seen: number[] = []
    const sys = agentSyscalls()
    // The real SO_PEERCRED, seen as a stranger: the agent's user is made to look like someone else.
    await start(async () => ((ran = true), {exitCode: 0, stdout: 'ran', stderr: ''}), {
      syscalls: {...sys, peercred: (fd) => {
        const real = sys.peercred(fd)
        seen.push(real.pid)
        return {...real, uid: 65534, gid: 65534, groups: []}
      }},
    })
    const r = await callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0'}))
    assert.equal(r.exitCode, 1)
    assert.equal(JSON.parse(r.stdout).details, 'PN_NOT_ROOT')
    assert.equal(ran, false)
    assert.deepEqual(seen, [process.pid], 'SO_PEERCRED names the connecting process')
    assert.equal(server!.stats().refused, 1)
  })

  it('caps open connections: past maxConnections a connection gets code 11 at once', async () => {
    await start(async () => ({exitCode: 0, stdout: 'ok', stderr: ''}), {maxConnections: 2})
    // Two connections that never finish their request hold both places.
    const idle = [rawCall(agentSocketPath(dir), Buffer.from('PNCNI/1\n'), {end: false}), rawCall(agentSocketPath(dir), Buffer.from('PNCNI/1\n'), {end: false})]
    await sleep(100)
    const r = await callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0'}))
    assert.equal(JSON.parse(r.stdout).code, 11)
    assert.equal(JSON.parse(r.stdout).details, 'PN_AGENT_BUSY')
    assert.match(JSON.parse(r.stdout).msg, /2 connections already open/)
    for (const c of idle) c.sock.destroy()
    await sleep(100)
    assert.equal((await callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'VERSION'}))).stdout, 'ok', 'a place is free again once they close')
  })

  it('answers and closes a connection that has not sent its whole request within idleTimeoutMs', async () => {
    await start(async () => ({exitCode: 0, stdout: 'ok', stderr: ''}), {idleTimeoutMs: 150})
    const started = Date.now()
    const {answer} = rawCall(agentSocketPath(dir), encodeRequest(req({CNI_COMMAND: 'ADD'})).subarray(0, 12), {end: false})
    const a = answerOf(await answer)
    assert.equal(a.details, 'PN_CNI_IO')
    assert.match(a.msg, /not complete 150 ms after connecting/)
    assert.ok(Date.now() - started < 3000, 'the connection was closed')
    const deadline = Date.now() + 2000
    while (server!.stats().connections > 0 && Date.now() < deadline) await sleep(20)
    assert.equal(server!.stats().connections, 0, 'the agent closed its end')
  })

  it('refuses a request larger than maxRequestBytes, still lets the client finish writing, and keeps serving', async () => {
    let ran = 0
    await start(async () => ((ran++), {exitCode: 0, stdout: 'ok', stderr: ''}), {maxRequestBytes: 4096})
    const big = encodeRequest({netnsIno: '1', env: {CNI_COMMAND: 'ADD'}, stdin: 'x'.repeat(256 * 1024)})
    const {answer} = rawCall(agentSocketPath(dir), big)
    const a = answerOf(await answer)
    assert.equal(a.details, 'PN_CNI_IO')
    assert.match(a.msg, /larger than 4096 bytes/)
    assert.equal(ran, 0)
    assert.equal((await callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'VERSION'}))).stdout, 'ok')
  })

  it('gives each request its own AbortSignal, aborted when its client hangs up; the others run on', async () => {
    const signals = new Map<string, AbortSignal>()
    let finishB!: () => void
    const bDone = new Promise<void>((r) => (finishB = r))
    await start(async (r, signal) => {
      const cid = r.env.CNI_CONTAINERID
      signals.set(cid, signal)
      if (cid === 'a') await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
      else await bDone
      return {exitCode: 0, stdout: `${cid} ${signal.aborted ? `aborted: ${signal.reason}` : 'done'}`, stderr: ''}
    }, {hangupCheckMs: 20})
    const a = rawCall(agentSocketPath(dir), encodeRequest(req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a', CNI_IFNAME: 'eth0'})))
    const b = callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'b', CNI_IFNAME: 'eth0'}))
    while (signals.size < 2) await sleep(10)
    assert.notEqual(signals.get('a'), signals.get('b'))
    a.sock.destroy() // the runtime killed this client mid-ADD
    while (!signals.get('a')!.aborted) await sleep(10)
    assert.equal(signals.get('a')!.reason, HANGUP)
    assert.equal(signals.get('b')!.aborted, false)
    finishB()
    assert.equal((await b).stdout, 'b done')
    assert.equal(server!.stats().hangups, 1)
    assert.ok(logs.some((l) => /client of ADD a:eth0 hung up: interrupting it/.test(l)), logs.join('\n'))
  })

  it('drops a queued request whose client hung up: it never runs', async () => {
    const ran: string[] = []
    let release!: () => void
    const hold = new Promise<void>((r) => (release = r))
    await start(async (r) => {
      ran.push(r.env.CNI_CONTAINERID)
      if (r.env.CNI_CONTAINERID === 'first') await hold
      return {exitCode: 0, stdout: 'ok', stderr: ''}
    }, {maxInflight: 1, hangupCheckMs: 20})
    const first = callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'first', CNI_IFNAME: 'eth0'}))
    await sleep(50)
    const queued = rawCall(agentSocketPath(dir), encodeRequest(req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'queued', CNI_IFNAME: 'eth0'})))
    await sleep(50)
    assert.equal(server!.stats().queued, 1)
    queued.sock.destroy()
    while (server!.stats().hangups < 1) await sleep(10)
    release()
    await first
    await sleep(50)
    assert.deepEqual(ran, ['first'])
  })

  it('agent stop with abort interrupts every request in flight', async () => {
    const reasons: unknown[] = []
    await start(async (_r, signal) => {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()))
      reasons.push(signal.reason)
      return {exitCode: 0, stdout: '', stderr: ''}
    })
    const calls = ['x', 'y'].map((cid) => callAgent(agentSocketPath(dir), req({CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_IFNAME: 'eth0'})))
    await sleep(50)
    await server!.close({abort: true})
    await Promise.allSettled(calls)
    assert.equal(reasons.length, 2)
    for (const r of reasons) assert.match(String((r as Error).message), /agent stopped/)
  })
})

describe('agent instance', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-agent-inst-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('one agent per state dir: a second lock fails with PN_AGENT_RUNNING until the first is released', async () => {
    const first = lockAgentInstance(dir)
    assert.throws(() => lockAgentInstance(dir), (e: PnError) => e.code === 'PN_AGENT_RUNNING' && /another agent holds .*agent\.lock/.test(e.message))
    assert.equal(await agentLockHolder(dir), process.pid, '/proc/locks names the holder')
    first.release()
    first.release()
    assert.equal(await agentLockHolder(dir), undefined)
    lockAgentInstance(dir).release()
  })

  it('the lock is held by the process: another process cannot take it, and it goes with the process', async () => {
    const held = lockAgentInstance(dir)
    const script = `import('${path.join(REPO_ROOT, 'dist/src/agent/instance.js')}').then((m) => { try { m.lockAgentInstance(${JSON.stringify(dir)}); console.log('taken') } catch (e) { console.log(e.code) } })`
    const other = () => new Promise<string>((resolve) => {
      const c = spawn(process.execPath, ['-e', script])
      let out = ''
      c.stdout.on('data', (d) => (out += d))
      c.on('close', () => resolve(out.trim()))
    })
    assert.equal(await other(), 'PN_AGENT_RUNNING')
    held.release()
    assert.equal(await other(), 'taken')
  })

  it('--group takes a gid or a group name from /etc/group; an unknown name is a clear error', async () => {
    assert.equal(await resolveGroup('64999'), 64999)
    assert.equal(await resolveGroup('root'), 0)
    await assert.rejects(resolveGroup('pn-no-such-group'), (e: PnError) => e.code === 'PN_INVALID_ARGUMENT' && e.message === 'resolve group pn-no-such-group: no such group in /etc/group')
  })

  it('writes the pid file atomically, mode 0600, leaving no temporary file', async () => {
    await writeAgentPidFile(dir, 4242)
    assert.equal(readFileSync(agentPidFile(dir), 'utf8'), '4242\n')
    assert.equal(statSync(agentPidFile(dir)).mode & 0o777, 0o600)
    await writeAgentPidFile(dir, 4343)
    assert.equal(readFileSync(agentPidFile(dir), 'utf8'), '4343\n')
    assert.deepEqual(readdirSync(dir), ['agent.pid'])
  })
})

describe('agent test hooks', () => {
  it('a request\'s test hooks reach the flows only when the agent was started with --test-hooks', () => {
    const env = {CNI_COMMAND: 'ADD', PN_LOCK_TIMEOUT_MS: '5', PN_CNI_FAIL_AFTER: 'ipam', PN_TEST_HOLD_LOCK_MS: '9', PN_TEST_CHECKPOINT_DELAY_MS: '9', PN_TEST_OTHER: '1'}
    assert.deepEqual(requestEnv(env, false), {CNI_COMMAND: 'ADD', PN_LOCK_TIMEOUT_MS: '5'})
    assert.deepEqual(requestEnv(env, true), env)
    assert.deepEqual([...TEST_HOOK_VARS].sort(), ['PN_CNI_FAIL_AFTER', 'PN_TEST_CHECKPOINT_DELAY_MS', 'PN_TEST_HOLD_LOCK_MS'])
  })
})

/** The native client (dist/native/pn-cni) against a fake agent and a fake standalone path. */
describe('native pn-cni client', () => {
  let dir: string
  let server: AgentServer | undefined
  let fallback: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pn-agent-client-'))
    // The standalone path, faked: it proves it got the same env and stdin.
    fallback = path.join(dir, 'standalone')
    writeFileSync(fallback, '#!/bin/sh\necho "standalone $CNI_COMMAND $CNI_CONTAINERID $1"\ncat\nexit 3\n')
    chmodSync(fallback, 0o755)
  })
  afterEach(async () => {
    await server?.close({abort: true})
    server = undefined
    rmSync(dir, {recursive: true, force: true})
  })

  function run(stdin: string, env: Record<string, string>, args: string[] = []): Promise<{status: number; stdout: string; stderr: string}> {
    return new Promise((resolve) => {
      const c = spawn(CLIENT, args, {env: {PATH: process.env.PATH, PN_CNI_FALLBACK: fallback, ...env}})
      let stdout = ''
      let stderr = ''
      c.stdout.on('data', (d) => (stdout += d))
      c.stderr.on('data', (d) => (stderr += d))
      c.on('close', (code) => resolve({status: code ?? -1, stdout, stderr}))
      c.stdin.end(stdin)
    })
  }

  async function fakeAgent(handle: (req: WireRequest) => WireResponse | Promise<WireResponse>): Promise<WireRequest[]> {
    const seen: WireRequest[] = []
    const netnsIno = String(statSync('/proc/self/ns/net').ino)
    server = new AgentServer({stateDir: dir, netnsIno, handle: async (req) => (seen.push(req), handle(req)), refuse: () => ({exitCode: 1, stdout: '', stderr: ''})})
    await server.listen()
    return seen
  }

  it('with no agent, execs the standalone path with the same argv, env and stdin', async () => {
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'n', stateDir: dir})
    const r = await run(conf, {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c9'}, ['arg1'])
    assert.equal(r.status, 3)
    assert.equal(r.stdout, `standalone ADD c9 arg1\n${conf}`)
  })

  it('forwards env (CNI_*, pn settings; not the client\'s own PN_CNI_FALLBACK) and stdin to the agent found through the netconf stateDir, returns its stdout, stderr and exit code', async () => {
    const seen = await fakeAgent(() => ({exitCode: 5, stdout: '{"answer":1}\n', stderr: 'diag\n'}))
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'n', nested: {stateDir: '/elsewhere'}, stateDir: dir, tail: [1, {a: '}'}]})
    const r = await run(conf, {CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '', PN_LOCK_TIMEOUT_MS: '5', OTHER: 'x'})
    assert.equal(r.status, 5)
    assert.equal(r.stdout, '{"answer":1}\n')
    assert.equal(r.stderr, 'diag\n')
    assert.equal(seen.length, 1)
    assert.equal(seen[0].stdin, conf)
    assert.deepEqual(seen[0].env, {CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '', PN_LOCK_TIMEOUT_MS: '5'})
    assert.equal(seen[0].netnsIno, String(statSync('/proc/self/ns/net').ino))
  })

  it('finds the agent through PN_STATE_DIR when the netconf names no stateDir', async () => {
    await fakeAgent(() => ({exitCode: 0, stdout: 'via env\n', stderr: ''}))
    const r = await run(JSON.stringify({cniVersion: '1.0.0', name: 'n', ipam: {stateDir: '/nope'}}), {CNI_COMMAND: 'ADD', PN_STATE_DIR: dir})
    assert.equal(r.stdout, 'via env\n')
  })

  it('falls back when the agent says the request is not its own (another netns or node)', async () => {
    await fakeAgent(() => ({exitCode: FALLBACK_EXIT, stdout: '', stderr: ''}))
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'n', stateDir: dir})
    const r = await run(conf, {CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c2'})
    assert.equal(r.status, 3)
    assert.equal(r.stdout, `standalone CHECK c2 \n${conf}`)
  })

  it('falls back when the socket file is a dead agent\'s leftover (connection refused)', async () => {
    await fakeAgent(() => ({exitCode: 0, stdout: 'never', stderr: ''}))
    // Closing the listener without unlinking: what a SIGKILLed agent leaves behind.
    await new Promise<void>((r) => (server as unknown as {server: {close(cb: () => void): void}}).server.close(() => r()))
    writeFileSync(path.join(dir, 'placeholder'), '')
    const conf = JSON.stringify({cniVersion: '1.0.0', name: 'n', stateDir: dir})
    const r = await run(conf, {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c3'})
    assert.equal(r.status, 3)
    assert.match(r.stdout, /^standalone ADD c3/)
  })

  it('never falls back once the agent took the request: an agent dying mid-request is code 11', async () => {
    // A listener that reads the request and closes without an answer: an agent killed mid-ADD.
    const net = await import('node:net')
    const raw = net.createServer((c) => {
      c.on('data', () => undefined)
      c.on('end', () => c.destroy())
    })
    await new Promise<void>((r) => raw.listen(agentSocketPath(dir), () => r()))
    try {
      const r = await run(JSON.stringify({cniVersion: '1.0.0', name: 'n', stateDir: dir}), {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c4'})
      assert.equal(r.status, 1)
      assert.equal(JSON.parse(r.stdout).code, 11)
      assert.doesNotMatch(r.stdout, /standalone/)
    } finally {
      await new Promise<void>((r) => raw.close(() => r()))
    }
  })

  it('is built from native/pn-cni.c by scripts/build-native.sh', () => {
    assert.match(readFileSync(path.join(REPO_ROOT, 'scripts/build-native.sh'), 'utf8'), /clang -O2 -Wall/)
    assert.ok(statSync(CLIENT).mode & 0o111)
  })
})
