import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {callAgent} from '../../src/agent/client.js'
import {agentSocketPath} from '../../src/agent/paths.js'
import {AgentServer} from '../../src/agent/server.js'
import {decodeRequest, decodeResponse, encodeRequest, encodeResponse, FALLBACK_EXIT, WireError, type WireRequest, type WireResponse} from '../../src/agent/wire.js'
import {PnError} from '../../src/errors.js'
import {KeyedMutex} from '../../src/exec/lockd.js'
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

  async function start(handle: (req: WireRequest) => Promise<WireResponse>, opts: {maxInflight?: number; maxQueued?: number; queueTimeoutMs?: number} = {}): Promise<AgentServer> {
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
