/**
 * The native client (the built dist/native/pn-cni) against a stand-in agent socket, no root: what
 * a request carries to the agent — the CNI_* variables and pn's documented settings, never the
 * test hooks (PN_TEST_HOLD_LOCK_MS, PN_TEST_CHECKPOINT_DELAY_MS, PN_CNI_FAIL_AFTER) or other PN_*
 * variables — while the standalone path (no agent) still gets the whole environment, hooks
 * included, as the interrupt tests rely on. And an agent answer that breaks the wire format's
 * limits is a code-11 error, never a made-up exit code.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {decodeRequest, encodeResponse, type WireRequest} from '../../src/agent/wire.js'

// PN_TEST_NATIVE_DIR: another build of the helpers (scripts/test-native.sh: the sanitizer build).
const CLIENT = path.resolve(process.env.PN_TEST_NATIVE_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native'), 'pn-cni')

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

function runClient(env: Record<string, string>, stdin: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(CLIENT, [], {env})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.stdin.end(stdin)
    child.on('close', (status) => resolve({status, stdout, stderr}))
  })
}

/** A stand-in agent: records each request and answers with `answer` (raw bytes). */
function standIn(socket: string, answer: Buffer): Promise<{server: net.Server; requests: WireRequest[]}> {
  const requests: WireRequest[] = []
  const server = net.createServer({allowHalfOpen: true}, (c) => {
    const chunks: Buffer[] = []
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('end', () => {
      requests.push(decodeRequest(Buffer.concat(chunks)))
      c.end(answer)
    })
  })
  return new Promise((resolve) => server.listen(socket, () => resolve({server, requests})))
}

const HOOKS = {PN_TEST_HOLD_LOCK_MS: '1000', PN_TEST_CHECKPOINT_DELAY_MS: '400', PN_CNI_FAIL_AFTER: 'veth'}

describe('native client: what reaches the agent (built dist/native/pn-cni, stand-in socket)', function () {
  this.timeout(20_000)
  let dir: string

  before(function () {
    assert.ok(existsSync(CLIENT), `${CLIENT} is built by npm run build`)
  })
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-cli-'))
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('forwards CNI_* and the documented PN_* settings, not the test hooks or other PN_* variables', async () => {
    const {server, requests} = await standIn(path.join(dir, 'agent.sock'), encodeResponse({exitCode: 0, stdout: '{"cniVersion":"1.0.0"}\n', stderr: 'agent log\n'}))
    try {
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c1',
        CNI_IFNAME: 'eth0',
        PN_STATE_DIR: dir,
        PN_LOCK_TIMEOUT_MS: '5000',
        PN_TRACE_EXEC: '1',
        PN_POOL: 'etcd://127.0.0.1:2379',
        ...HOOKS,
        PN_SOMETHING_ELSE: 'x',
        PN_CNI_FALLBACK: '/nonexistent',
        HOME: '/root',
      }
      const r = await runClient(env, '{"cniVersion":"1.0.0","name":"pn","type":"pn"}')
      assert.equal(r.status, 0, r.stdout + r.stderr)
      assert.equal(r.stdout, '{"cniVersion":"1.0.0"}\n')
      assert.equal(r.stderr, 'agent log\n')
      assert.equal(requests.length, 1)
      assert.deepEqual(Object.keys(requests[0].env).sort(), ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_IFNAME', 'PN_LOCK_TIMEOUT_MS', 'PN_POOL', 'PN_STATE_DIR', 'PN_TRACE_EXEC'])
      assert.equal(requests[0].env.PN_STATE_DIR, dir)
      assert.equal(requests[0].stdin, '{"cniVersion":"1.0.0","name":"pn","type":"pn"}')
    } finally {
      server.close()
    }
  })

  it('the standalone path (no agent) gets the whole environment, test hooks included', async () => {
    const fallback = path.join(dir, 'standalone')
    writeFileSync(fallback, '#!/bin/sh\nenv | grep "^PN_" | grep -v "_FD=" | sort\n')
    chmodSync(fallback, 0o755)
    const r = await runClient({PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'ADD', PN_STATE_DIR: dir, PN_CNI_FALLBACK: fallback, ...HOOKS}, '{}')
    assert.equal(r.status, 0, r.stdout + r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'PN_CNI_FAIL_AFTER=veth',
      `PN_CNI_FALLBACK=${fallback}`,
      `PN_STATE_DIR=${dir}`,
      'PN_TEST_CHECKPOINT_DELAY_MS=400',
      'PN_TEST_HOLD_LOCK_MS=1000',
    ])
  })

  it('an agent answer with an exit code outside 0..255 is code 11 (it was atoi: an overflow)', async () => {
    const {server} = await standIn(path.join(dir, 'agent.sock'), Buffer.from('11:99999999999,0:,0:,'))
    try {
      const r = await runClient({PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'ADD', PN_STATE_DIR: dir}, '{}')
      assert.equal(r.status, 1)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.code, 11)
      assert.match(doc.msg, /malformed exit code/)
    } finally {
      server.close()
    }
  })

  it('an agent answer whose netstring length is over the limit is code 11, not a read past the buffer', async () => {
    const {server} = await standIn(path.join(dir, 'agent.sock'), Buffer.from('18446744073709551617:0,0:,0:,'))
    try {
      const r = await runClient({PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'ADD', PN_STATE_DIR: dir}, '{}')
      assert.equal(r.status, 1)
      assert.equal(JSON.parse(r.stdout).code, 11)
    } finally {
      server.close()
    }
  })
})
