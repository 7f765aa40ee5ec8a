/**
 * The cluster pool on a real etcd (Debian etcd-server): one etcd per test on 127.0.0.1 with
 * free ports and its data dir in a temp folder, stopped by its pid. `pn pool` runs as separate
 * processes, like operators on different machines.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {pn, pnAsync, type CliResult} from '../helpers/cli.js'

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
}

/** One etcd on loopback; start() again reuses the same ports and data dir (a restart). */
class TestEtcd {
  child?: ChildProcess
  clientPort = 0
  peerPort = 0
  readonly dataDir: string

  constructor(readonly dir: string) {
    this.dataDir = path.join(dir, 'data')
  }

  get location(): string {
    return `etcd://127.0.0.1:${this.clientPort}/pn-test`
  }

  async start(): Promise<void> {
    if (!this.clientPort) {
      this.clientPort = await freePort()
      this.peerPort = await freePort()
    }
    const client = `http://127.0.0.1:${this.clientPort}`
    const peer = `http://127.0.0.1:${this.peerPort}`
    this.child = spawn('etcd', [
      '--name', 'pn-test', '--data-dir', this.dataDir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `pn-test=${peer}`,
    ], {stdio: 'ignore'})
    const end = Date.now() + 30_000
    while (!(await canConnect(this.clientPort))) {
      if (Date.now() > end) throw new Error('etcd did not start within 30 s')
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** Stop by pid (SIGTERM, or SIGKILL to simulate a crash) and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    process.kill(child.pid!, signal)
    await exited
  }
}

describe('cluster pool on etcd (real etcd on loopback)', function () {
  this.timeout(180_000)
  let dir: string
  let etcd: TestEtcd
  const run = (args: string[]): CliResult => pn([...args, '--pool', etcd.location, '--json'])
  const runAsync = (args: string[]) => pnAsync([...args, '--pool', etcd.location, '--json'])

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-etcd-'))
    etcd = new TestEtcd(dir)
    await etcd.start()
  })
  afterEach(async () => {
    await etcd.stop('SIGKILL')
    rmSync(dir, {recursive: true, force: true})
  })

  it('has the file pool semantics: init, alloc, idempotent re-alloc, list, show, release without rewinding the cursor', () => {
    const init = run(['pool', 'init', '--cidr', '10.20.30.40/24', '--mask-size', '26'])
    assert.equal(init.json?.status, 'ok', init.stdout + init.stderr)
    assert.equal(init.json!.result.pool, etcd.location)
    assert.match(init.json!.warnings!.join(), /host bits set/)
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/24', '--mask-size', '26']).json?.error?.code, 'PN_POOL_EXISTS')
    assert.deepEqual(['n1', 'n2', 'n3'].map((n) => run(['pool', 'alloc', n]).json?.result.cidrs[0]), ['10.20.30.0/26', '10.20.30.64/26', '10.20.30.128/26'])
    const again = run(['pool', 'alloc', 'n1'])
    assert.deepEqual([again.json?.result.changed, again.json?.result.cidrs[0]], [false, '10.20.30.0/26'])
    assert.equal(run(['pool', 'show', 'n2']).json?.result.cidrs[0], '10.20.30.64/26')
    assert.equal(run(['pool', 'show', 'zz']).json?.error?.code, 'PN_NODE_UNKNOWN')
    assert.deepEqual(run(['pool', 'release', 'n2']).json?.result.released, ['10.20.30.64/26'])
    assert.equal(run(['pool', 'alloc', 'n4']).json?.result.cidrs[0], '10.20.30.192/26', 'the cursor is not rewound')
    assert.deepEqual(run(['pool', 'list']).json?.result.map((n: {name: string}) => n.name), ['n1', 'n3', 'n4'])
    assert.equal(run(['pool', 'show']).json?.result.clusterCidrs[0].used, 3)
    // a pool that is not there
    const other = pn(['pool', 'alloc', 'n1', '--pool', `etcd://127.0.0.1:${etcd.clientPort}/elsewhere`, '--json'])
    assert.equal(other.json?.error?.code, 'PN_POOL_NOT_FOUND')
  })

  it('20 concurrent pn pool alloc processes get 20 distinct CIDRs (compare-and-swap)', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const runs = await Promise.all(Array.from({length: 20}, (_, i) => runAsync(['pool', 'alloc', `node-${i}`])))
    for (const r of runs) assert.equal(r.json?.status, 'ok', r.stdout + r.stderr)
    const cidrs = runs.map((r) => r.json!.result.cidrs[0])
    assert.equal(new Set(cidrs).size, 20, cidrs.join(' '))
    const list = run(['pool', 'list']).json!.result
    assert.equal(list.length, 20)
    assert.equal(run(['pool', 'show']).json!.result.clusterCidrs[0].nextCandidate, 20)
    for (const n of list) assert.equal(cidrs[Number(n.name.slice(5))], n.cidrs[0])
  })

  it('keeps every allocation across an etcd restart', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const before = ['a', 'b', 'c'].map((n) => run(['pool', 'alloc', n]).json!.result.cidrs[0])
    await etcd.stop('SIGTERM')
    await etcd.start()
    assert.deepEqual(['a', 'b', 'c'].map((n) => run(['pool', 'show', n]).json?.result.cidrs[0]), before)
    const again = run(['pool', 'alloc', 'b'])
    assert.deepEqual([again.json?.result.changed, again.json?.result.cidrs[0]], [false, before[1]])
    assert.equal(run(['pool', 'alloc', 'd']).json?.result.cidrs[0], '10.0.3.0/24')
  })

  it('killing etcd mid-run gives a clear error, no hang, and no corrupted pool', async () => {
    assert.equal(run(['pool', 'init', '--cidr', '10.0.0.0/16', '--mask-size', '24']).json?.status, 'ok')
    const runs = Array.from({length: 12}, (_, i) => runAsync(['pool', 'alloc', `k-${i}`]))
    // Kill it as soon as the first allocation has landed, while the others are in flight.
    await Promise.race(runs)
    await etcd.stop('SIGKILL')
    const results = await Promise.all(runs)
    const ok = results.filter((r) => r.json?.status === 'ok')
    const failed = results.filter((r) => r.json?.status !== 'ok')
    assert.ok(ok.length >= 1)
    assert.ok(failed.length >= 1, 'some allocations were in flight when etcd died')
    for (const r of failed) {
      assert.equal(r.json?.error?.code, 'PN_POOL_UNREACHABLE', r.stdout + r.stderr)
      assert.equal(r.status, 7)
      assert.match(r.json!.error!.message, /etcd unreachable/)
      assert.match(r.json!.error!.hint ?? '', new RegExp(`127\\.0\\.0\\.1:${etcd.clientPort}`))
    }
    // With etcd down, a new command fails the same way, within its deadline.
    const down = run(['pool', 'list'])
    assert.equal(down.json?.error?.code, 'PN_POOL_UNREACHABLE')
    await etcd.start()
    const list = run(['pool', 'list'])
    assert.equal(list.json?.status, 'ok', list.stdout + list.stderr)
    const nodes: {name: string; cidrs: string[]}[] = list.json!.result
    assert.equal(new Set(nodes.map((n) => n.cidrs[0])).size, nodes.length, 'no CIDR twice')
    for (const r of ok) {
      assert.deepEqual(nodes.find((n) => n.name === r.json!.result.node)?.cidrs, r.json!.result.cidrs, 'every reported allocation is kept')
    }
    // Every node can still get its CIDR (the ones that failed included), all distinct.
    const all = Array.from({length: 12}, (_, i) => run(['pool', 'alloc', `k-${i}`]).json?.result.cidrs[0])
    assert.equal(new Set(all).size, 12)
  })

  it('an unreachable etcd is PN_POOL_UNREACHABLE (exit 7), not a hang', async () => {
    await etcd.stop('SIGKILL')
    const r = pn(['pool', 'alloc', 'n1', '--pool', etcd.location, '--json'])
    assert.equal(r.json?.error?.code, 'PN_POOL_UNREACHABLE', r.stdout + r.stderr)
    assert.equal(r.status, 7)
    assert.equal(pn(['pool', 'list', '--pool', 'etcd://127.0.0.1:0x/a', '--json']).json?.error?.code, 'PN_INVALID_ARGUMENT')
  })
})
