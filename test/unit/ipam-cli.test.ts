/**
 * `pn ipam` as real processes (no root): concurrency, SIGKILL at random moments, and recovery
 * from a lock whose holder was killed. Locks are kernel flocks held by the pn process itself
 * (src/exec/flock.ts), so they die with their owner; these tests prove it end to end.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {verifyIpamState} from '../../src/ipam/host.js'
import {PN_BIN, pn, pnAsync} from '../helpers/cli.js'

const CIDR = '10.77.0.0/22'

/** The ipam/ directory adds up (every bit and link has its owner record and back), no address twice. */
async function validState(stateDir: string): Promise<{allocations: {ip: string; owner: string}[]}> {
  const s = await verifyIpamState(stateDir)
  assert.deepEqual(s.problems, [], 'bitmap, links and owner records agree')
  assert.equal(new Set(s.allocations.map((a) => a.ip)).size, s.allocations.length, 'no address twice')
  return s
}

/** Spawn pn; resolves when it exits; `onStderr` sees stderr as it arrives. */
function spawnPn(args: string[], env: NodeJS.ProcessEnv = {}, onStderr?: (s: string) => void) {
  const child = spawn(process.execPath, [PN_BIN, ...args], {env: {...process.env, NO_COLOR: '1', ...env}})
  let stdout = ''
  child.stdout.on('data', (d) => (stdout += d))
  child.stderr.on('data', (d) => onStderr?.(String(d)))
  const done = new Promise<{code: number | null; signal: NodeJS.Signals | null; stdout: string}>((resolve) =>
    child.on('close', (code, signal) => resolve({code, signal, stdout})),
  )
  return {child, done}
}

describe('pn ipam (CLI processes)', function () {
  this.timeout(120000)
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-ipam-cli-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))
  const base = () => ['--state-dir', dir, '--pod-cidr', CIDR, '--json']

  it('allocates, shows and releases through the JSON envelope, with clear errors', () => {
    const a = pn(['ipam', 'alloc', ...base(), '--owner', 'c1:eth0', '--strategy', 'contiguous'])
    assert.equal(a.status, 0, a.stderr)
    assert.deepEqual([a.json?.status, a.json?.result.allocations[0].ip, a.json?.result.changed], ['ok', '10.77.0.2', true])
    assert.equal(pn(['ipam', 'alloc', ...base(), '--owner', 'c1:eth0']).json?.result.changed, false)
    const taken = pn(['ipam', 'alloc', ...base(), '--ip', '10.77.0.2'])
    assert.deepEqual([taken.status, taken.json?.error?.code], [4, 'PN_IPAM_IP_TAKEN'])
    const out = pn(['ipam', 'alloc', ...base(), '--ip', '10.77.3.255'])
    assert.equal(out.json?.error?.code, 'PN_IPAM_IP_OUT_OF_RANGE')
    assert.equal(pn(['ipam', 'alloc', ...base(), '--expiration', 'soon']).json?.error?.code, 'PN_INVALID_DURATION')
    assert.equal(pn(['ipam', 'show', '--state-dir', dir, '--pod-cidr', '10.0.0.0/33', '--json']).json?.error?.code, 'PN_INVALID_CIDR')
    assert.equal(pn(['ipam', 'show', '--state-dir', dir, '--pod-cidr', '10.0.0.0/24', '--json']).json?.error?.code, 'PN_NODE_CONFLICT')
    assert.equal(pn(['ipam', 'list', '--state-dir', dir, '--json']).json?.error?.code, 'PN_NODE_NOT_INITIALIZED')
    assert.equal(pn(['ipam', 'show', ...base()]).json?.result[0].used, 2)
    const human = pn(['ipam', 'list', '--state-dir', dir, '--pod-cidr', CIDR])
    assert.match(human.stdout, /10\.77\.0\.2\s+c1:eth0\s+confirmed/)
    assert.equal(pn(['ipam', 'release', ...base(), '--owner', 'c1:eth0']).json?.result.changed, true)
    assert.equal(pn(['ipam', 'release', ...base(), '10.77.0.2']).json?.result.changed, false)
  })

  it('expires a pending allocation and confirms another', async () => {
    const c = pn(['ipam', 'alloc', ...base(), '--owner', 'b', '--expiration', '1h'])
    assert.equal(pn(['ipam', 'confirm', ...base(), '--owner', 'b']).json?.result.changed, true)
    const p = pn(['ipam', 'alloc', ...base(), '--owner', 'a', '--expiration', '500ms'])
    assert.equal(p.json?.result.allocations[0].state, 'pending')
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(p.json?.result.allocations[0].expiresAt) + 20 - Date.now())))
    const g = pn(['ipam', 'gc', ...base()])
    assert.deepEqual(g.json?.result.released.map((x: {ip: string}) => x.ip), [p.json?.result.allocations[0].ip])
    const list = pn(['ipam', 'list', ...base()]).json?.result as {owner: string; state: string}[]
    assert.deepEqual(list.filter((x) => x.owner !== 'router').map((x) => [x.owner, x.state]), [['b', 'confirmed']])
    assert.ok(c.json?.result.allocations[0].expiresAt)
  })

  it('50 concurrent allocs get 50 distinct addresses and leave a valid state file', async () => {
    const runs = await Promise.all(Array.from({length: 50}, (_, i) => pnAsync(['ipam', 'alloc', ...base(), '--owner', `c${i}:eth0`])))
    for (const r of runs) assert.equal(r.status, 0, r.stdout + r.stderr)
    const ips = runs.map((r) => r.json?.result.allocations[0].ip as string)
    assert.equal(new Set(ips).size, 50)
    const s = await validState(dir)
    assert.equal(s.allocations.length, 51) // + router
  })

  it('SIGKILL at random moments never leaves a torn file, a leaked or a doubly held address', async () => {
    let killed = 0
    for (let round = 0; round < 6; round++) {
      const procs = Array.from({length: 8}, (_, i) => spawnPn(['ipam', 'alloc', ...base(), '--owner', `r${round}-${i}`]))
      for (const p of procs) {
        const delay = Math.floor(Math.random() * 400)
        setTimeout(() => {
          if (p.child.exitCode === null && p.child.kill('SIGKILL')) killed++
        }, delay)
      }
      await Promise.all(procs.map((p) => p.done))
      const ok = pn(['ipam', 'alloc', ...base(), '--owner', `after-${round}`])
      assert.equal(ok.status, 0, `round ${round}: ${ok.stdout}${ok.stderr}`)
      const s = await validState(dir)
      // Every owner that holds an address is one whose alloc ran; none holds two.
      const owners = s.allocations.map((a) => a.owner).filter((o) => o !== 'router')
      assert.equal(new Set(owners).size, owners.length, 'one address per owner')
    }
    assert.ok(killed > 0, 'some processes were killed')
    assert.deepEqual(readdirSync(dir).filter((f) => !/^(ipam|ipam\.json\.lock|\.ipam\..*\.tmp)$/.test(f)), [])
  })

  it('a lock held by a SIGKILLed process does not block the next caller', async () => {
    pn(['ipam', 'alloc', ...base(), '--owner', 'first'])
    let held!: () => void
    const holding = new Promise<void>((r) => (held = r))
    const holder = spawnPn(['ipam', 'alloc', ...base(), '--owner', 'holder'], {PN_TEST_HOLD_LOCK_MS: '60000'}, (s) => {
      if (s.includes('holding lock')) held()
    })
    await holding
    // While it holds the lock, another caller waits (and would time out).
    const blocked = pn(['ipam', 'alloc', ...base(), '--owner', 'blocked'], {env: {PN_LOCK_TIMEOUT_MS: '300'}})
    assert.equal(blocked.json?.error?.code, 'PN_LOCK_TIMEOUT')
    holder.child.kill('SIGKILL')
    await holder.done
    const t0 = Date.now()
    const next = pn(['ipam', 'alloc', ...base(), '--owner', 'next'], {env: {PN_LOCK_TIMEOUT_MS: '5000'}})
    assert.equal(next.status, 0, next.stdout + next.stderr)
    assert.ok(Date.now() - t0 < 3000, `next alloc took ${Date.now() - t0} ms`)
    const owners = (await validState(dir)).allocations.map((a) => a.owner)
    assert.ok(owners.includes('next') && !owners.includes('holder'))
  })
})
