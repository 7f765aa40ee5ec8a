/**
 * State that survives a crash: a driver process (node, the library from dist/) changes state in a
 * loop and is SIGKILLed after a random delay, again and again. After every kill the state must
 * parse, no address may be held twice, what the driver was told succeeded must still be there
 * (the change in flight may have happened or not, never half), and the next command must bring
 * the rest (IPAM's index; the service maps) back in line with the records (the owner records;
 * the service table). Seeded: the seed is printed, PN_CRASH_SEED=<seed> repeats a run's choices
 * (the kill points also depend on timing).
 */
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {REPO_ROOT, pn} from '../helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot} from '../helpers/netns.js'
import {cleanupHarness, createNode} from './cni-harness.js'
import {mapPath} from '../../src/datapath/bpf/bpffs.js'
import {gcIps, listIps, verifyIpamState, type HostIpamTarget} from '../../src/ipam/host.js'
import {changeServices, readServiceTable, servicesFile} from '../../src/service/apply.js'
import {planRollForward} from '../../src/service/plan.js'
import {backendsOf, decodeTable, emptyTable, serviceKey, type ServiceTable} from '../../src/service/table.js'
import {readFileIfExists} from '../../src/state/files.js'

const BPFFS = '/run/pn/bpffs'
const DIST = path.join(REPO_ROOT, 'dist/src')
const IPAM_ALLOCATIONS = 1000
const IPAM_KILLS = 100
const SERVICE_KILLS = 100

/** mulberry32: small, seedable, good enough to pick operations and delays. */
function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The same generator for the driver processes (compiled to plain JavaScript, so its text runs there as is). */
const PRNG_SRC = `${prng.toString()}
const out = (line) => process.stdout.write(line + '\\n') // a pipe: synchronous, so every line before the kill arrives
`

/**
 * IPAM driver: alloc (pending) + confirm new owners, release held ones, keeping the range about
 * 80% full. Prints `alloc`/`release` before a change and `allocated`/`confirmed`/`released` after.
 */
const IPAM_DRIVER = `
import {allocateIp, confirmIp, listIps, releaseIp} from '${DIST}/ipam/host.js'
${PRNG_SRC}
const [stateDir, seed, run] = process.argv.slice(2)
const rnd = prng(Number(seed))
// Locks are flock(2) held by this process (the addon): a SIGKILL drops them with the process.
const t = {stateDir, podCidrs: ['10.77.0.0/25', 'fd00:77::/121']}
const held = [...new Set((await listIps(t)).filter((a) => a.owner !== 'router').map((a) => a.owner))]
out('ready')
for (let i = 0; ; i++) {
  if (held.length < 20 || (held.length < 100 && rnd() < 0.6)) {
    const owner = 'c' + run + '-' + i + ':eth0'
    out('alloc ' + owner)
    const a = await allocateIp(t, {owner, expirationMs: 600000})
    out('allocated ' + owner + ' ' + a.allocations.map((x) => x.ip).join(','))
    await confirmIp(t, {owner})
    out('confirmed ' + owner)
    held.push(owner)
  } else {
    const owner = held.splice(Math.floor(rnd() * held.length), 1)[0]
    out('release ' + owner)
    await releaseIp(t, {owner})
    out('released ' + owner)
  }
}
`

/**
 * Service driver: upserts, deletes and whole-table replaces on the node's table, through the same
 * library call as \`pn service apply/add/del\`. Prints \`change <json>\` before and \`done\` after.
 */
const SERVICE_DRIVER = `
import {changeServices, readServiceTable} from '${DIST}/service/apply.js'
import {backendsOf, serviceKey} from '${DIST}/service/table.js'
${PRNG_SRC}
const [stateDir, seed] = process.argv.slice(2)
const rnd = prng(Number(seed))
const pick = (n) => Math.floor(rnd() * n)
const table = await readServiceTable(stateDir)
const have = new Set([...table.services.values()].map((s) => serviceKey(s)))
const svc = () => {
  const frontend = {vip: '10.96.' + pick(4) + '.' + (1 + pick(60)), port: 80 + pick(3), proto: rnd() < 0.8 ? 'tcp' : 'udp'}
  const n = 1 + pick(6)
  const backends = []
  const seen = new Set()
  while (backends.length < n) {
    const b = {ip: '10.78.0.' + (2 + pick(200)), port: 8080 + pick(2)}
    if (!seen.has(b.ip + ':' + b.port)) backends.push(b), seen.add(b.ip + ':' + b.port)
  }
  return {frontend, backends}
}
out('ready')
for (;;) {
  const r = rnd()
  let req
  if (r < 0.1) req = {kind: 'replace', services: Array.from({length: 20 + pick(200)}, svc)}
  else if (r < 0.7 || have.size === 0) req = {kind: 'upsert', service: svc()}
  else req = {kind: 'delete', frontends: [[...have][pick(have.size)]]}
  if (req.kind === 'replace') req.services = [...new Map(req.services.map((s) => [s.frontend.vip + ':' + s.frontend.port + '/' + s.frontend.proto, s])).values()]
  out('change ' + JSON.stringify(req))
  await changeServices(stateDir, req)
  out('done')
  if (req.kind === 'replace') {
    have.clear()
    for (const s of req.services) have.add(s.frontend.vip + ':' + s.frontend.port + '/' + s.frontend.proto)
  } else if (req.kind === 'upsert') have.add(req.service.frontend.vip + ':' + req.service.frontend.port + '/' + req.service.frontend.proto)
  else have.delete(req.frontends[0])
}
`

interface DriverRun {
  lines: string[]
  stderr: string
  /** True when the driver was still running (killed), false when it exited on its own (a failure). */
  killed: boolean
}

/** Start `script`, wait for `ready`, SIGKILL it after `delayMs`; its output lines. */
function runAndKill(script: string, args: string[], delayMs: number): Promise<DriverRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    let timer: NodeJS.Timeout | undefined
    let killed = false
    child.stdout.on('data', (d: Buffer) => {
      const first = !stdout.includes('ready\n')
      stdout += d
      if (first && stdout.includes('ready\n')) {
        timer = setTimeout(() => {
          killed = child.exitCode === null
          child.kill('SIGKILL')
        }, delayMs)
      }
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    child.on('error', reject)
    child.on('close', () => {
      clearTimeout(timer)
      resolve({lines: stdout.split('\n').filter((l) => l && l !== 'ready'), stderr, killed})
    })
  })
}

/** Entries of a pinned map as hex key → hex value (bpftool's raw bytes). */
function dumpRaw(file: string): Map<string, string> {
  const entries = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', file], {encoding: 'utf8'})) as {key: string[]; value: string[]}[]
  const hex = (b: string[]) => b.map((x) => x.replace(/^0x/, '')).join('')
  return new Map(entries.map((e) => [hex(e.key), hex(e.value)]))
}

/** What the LB maps hold when they match `table` exactly: the table written from empty. */
function expectedMaps(table: ServiceTable): Map<string, Map<string, string>> {
  const ops = planRollForward(emptyTable(), table)
  const want = new Map<string, Map<string, string>>([['pn_lb4_services', new Map()], ['pn_lb4_backends', new Map()]])
  for (const o of ops.ops.toArray()) {
    assert.equal(o.op, 'update')
    want.get(o.map)!.set(o.key.toString('hex'), o.value!.toString('hex'))
  }
  return want
}

/** frontend → backends (slot order): what a table says, in words. */
function tableView(t: ServiceTable): Map<string, string[]> {
  return new Map([...t.services.values()].map((s) => [serviceKey(s), backendsOf(t, s)]))
}

/** One completed system call of an strace log (-f -y): name, its paths, and the marker text of a `write(1, …)`. */
interface TracedCall {
  name: string
  paths: string[]
  marker?: string
}

/** Parse `strace -f -y -s 4096` output: unfinished/resumed pairs joined, failed calls dropped. */
function parseTrace(text: string): TracedCall[] {
  const unfinished = new Map<string, string>()
  const calls: TracedCall[] = []
  for (const raw of text.split('\n')) {
    // `-o file` prefixes every line with its thread id ("1234 fsync(…"); a terminal gets "[pid 1234] ".
    const m = /^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(.*)$/.exec(raw)!
    const pid = m[1] ?? m[2] ?? '-'
    let line = m[3]
    if (line.endsWith('<unfinished ...>')) {
      unfinished.set(pid, line.slice(0, -'<unfinished ...>'.length))
      continue
    }
    const resumed = /^<\.\.\. (\w+) resumed>(.*)$/.exec(line)
    if (resumed) {
      line = (unfinished.get(pid) ?? `${resumed[1]}(`) + resumed[2]
      unfinished.delete(pid)
    }
    const c = /^(\w+)\((.*)\)\s+=\s+(-?\d+)/.exec(line)
    if (!c || c[3].startsWith('-')) continue
    const name = c[1]
    const args = c[2].trim()
    if (name === 'write') {
      const w = /^1<[^>]*>, "([^"]*)\\n"/.exec(args)
      if (w) calls.push({name, paths: [], marker: w[1]})
      // A command's JSON answer on stdout is its result too.
      else if (/^1<[^>]*>, "\{/.test(args)) calls.push({name, paths: [], marker: 'returned output'})
    } else if (name === 'fsync' || name === 'fdatasync') {
      calls.push({name: 'fsync', paths: [/^\d+<(.*)>$/.exec(args)?.[1] ?? '']})
    } else {
      calls.push({name: name.replace(/at2?$/, ''), paths: [...args.matchAll(/"([^"]*)"/g)].map((x) => x[1])})
    }
  }
  return calls
}

/**
 * Check a traced run against the durability rules: a file renamed into place under `stateDir`
 * was fsync'd first (under its temp name), and the directory of every rename and unlink there
 * is fsync'd before the next `returned` marker (the call's result). `exempt`: names pn leaves
 * to the page cache on purpose. Returns the checked operations (so a test can see it checked some).
 */
function checkDurability(calls: TracedCall[], stateDir: string, exempt: RegExp): {renames: number; unlinks: number} {
  const synced = new Set<string>()
  let owed: {dir: string; what: string}[] = []
  let renames = 0
  let unlinks = 0
  const inState = (p: string) => p.startsWith(stateDir + '/') && !exempt.test(p)
  for (const c of calls) {
    if (c.name === 'fsync') {
      synced.add(c.paths[0])
      owed = owed.filter((o) => o.dir !== c.paths[0])
    } else if (c.name === 'rename') {
      const [from, to] = c.paths.slice(-2)
      if (synced.has(from)) synced.add(to)
      synced.delete(from)
      if (!inState(to)) continue
      renames++
      assert.ok(synced.has(to), `${path.relative(stateDir, from)} renamed to ${path.relative(stateDir, to)} before an fsync of its content`)
      owed.push({dir: path.dirname(to), what: `rename to ${path.relative(stateDir, to)}`})
    } else if (c.name === 'unlink') {
      const p = c.paths.at(-1)!
      synced.delete(p)
      if (!inState(p) || p.endsWith('.tmp')) continue
      unlinks++
      owed.push({dir: path.dirname(p), what: `unlink of ${path.relative(stateDir, p)}`})
    } else if (c.marker?.startsWith('returned')) {
      assert.deepEqual(owed.map((o) => o.what), [], `${c.marker}: returned before the directory fsync of`)
    }
  }
  return {renames, unlinks}
}

/** Run `script` under strace; its calls. */
function traced(script: string, args: string[], tmp: string): TracedCall[] {
  const log = path.join(tmp, `strace-${path.basename(script)}.log`)
  execFileSync('strace', ['-f', '-y', '-s', '4096', '-o', log, '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,write', process.execPath, script, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
  return parseTrace(readFileSync(log, 'utf8'))
}

describe('crash safety: SIGKILL at random points (root)', function () {
  this.timeout(600_000)
  const seed = process.env.PN_CRASH_SEED ? Number(process.env.PN_CRASH_SEED) : Math.floor(Math.random() * 2 ** 31)
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-crash-'))

  before(() => {
    assert.ok(isRoot(), 'integration tests run as root (netns, bpffs, eBPF)')
    console.log(`      crash test seed ${seed} (PN_CRASH_SEED=${seed} repeats its choices)`)
  })
  after(() => rmSync(tmp, {recursive: true, force: true}))

  it('host IPAM: a change returns only after its records and their directory are fsync\'d (syscall order under strace)', () => {
    const script = path.join(tmp, 'ipam-trace.mjs')
    const stateDir = path.join(tmp, 'ipam-trace')
    writeFileSync(script, `
import {allocateIp, confirmIp, releaseIp, reserveRouterIps} from '${DIST}/ipam/host.js'
const t = {stateDir: process.argv[2], podCidrs: ['10.79.0.0/24', 'fd00:79::/120']}
const out = (l) => process.stdout.write(l + '\\n')
await allocateIp(t, {owner: 'a:eth0'}); out('returned create')
await allocateIp(t, {owner: 'b:eth0', expirationMs: 60000}); out('returned alloc')
await confirmIp(t, {owner: 'b:eth0'}); out('returned confirm')
await releaseIp(t, {owner: 'a:eth0'}); out('returned release')
await reserveRouterIps({...t, routerIps: ['10.79.0.254']}); out('returned router')
await releaseIp({...t, bootId: 'another boot'}, {owner: 'b:eth0'}); out('returned after reboot')
`)
    // The index (ips/, pending/, bitmaps) and the journal are left to the page cache: a reboot rebuilds them.
    const n = checkDurability(traced(script, [stateDir], tmp), stateDir, /\/ipam\/(ips|pending)\/|\/ipam\/journal\.json$/)
    assert.ok(n.renames >= 6 && n.unlinks >= 2, `checked ${n.renames} renames and ${n.unlinks} unlinks`)
  })

  it('CNI ADD and DEL: every state write is durable before the answer, the directory fsyncs as one group (syscall order under strace)', () => {
    const node = createNode({podCidr: '10.78.0.0/24', routing: 'bpf', tag: 'crt'})
    try {
      const pod = createNamespace('crtp').name
      const cni = (cmd: string) => {
        const log = path.join(tmp, `strace-cni-${cmd}.log`)
        execFileSync('ip', ['netns', 'exec', node.ns, 'strace', '-f', '-y', '-s', '4096', '-o', log, '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,write',
          process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'cni', cmd, '--container-id', 'dur1', '--netns', `/run/netns/${pod}`, '--state-dir', node.stateDir, '--json'], {stdio: ['ignore', 'pipe', 'pipe']})
        return parseTrace(readFileSync(log, 'utf8'))
      }
      // Left to the page cache on purpose: IPAM's index and journal, lock files, the BPF object cache.
      const exempt = /\/ipam\/(ips|pending)\/|\/ipam\/journal\.json$|\.lock$|\/bpf\//
      const add = cni('add')
      const a = checkDurability(add, node.stateDir, exempt)
      // IPAM alloc + confirm, the endpoint's owner file and record.
      assert.ok(a.renames >= 4, `ADD: checked ${a.renames} renames`)
      const d = checkDurability(cni('del'), node.stateDir, exempt)
      // The endpoint record, its id and owner files, the IPAM record.
      assert.ok(d.unlinks >= 4, `DEL: checked ${d.unlinks} unlinks`)
      // One group: after the last state write the directories are fsync'd back to back, nothing in between.
      const last = add.findLastIndex((c) => c.name === 'rename' && c.paths.at(-1)!.startsWith(node.stateDir))
      const dirSyncs = add.slice(last + 1).filter((c) => c.name === 'fsync' && !c.paths[0].endsWith('.json'))
      assert.ok(dirSyncs.length >= 3, `ADD's final group: ${dirSyncs.map((c) => path.relative(node.stateDir, c.paths[0])).join(', ')}`)
    } finally {
      cleanupNamespaces()
      cleanupHarness()
    }
  })

  it(`host IPAM: ${IPAM_ALLOCATIONS}+ allocations, ${IPAM_KILLS}+ SIGKILLs; after each kill the state parses, no IP is held twice, nothing acknowledged is lost`, async () => {
    const rand = prng(seed)
    const stateDir = path.join(tmp, 'ipam-state')
    const script = path.join(tmp, 'ipam-driver.mjs')
    writeFileSync(script, IPAM_DRIVER)
    const t: HostIpamTarget = {stateDir, podCidrs: ['10.77.0.0/25', 'fd00:77::/121']}
    /** owner → its IPs, as acknowledged to the driver. */
    const model = new Map<string, string>()
    let attempts = 0
    let kills = 0
    let midChange = 0
    let repaired = 0
    for (let run = 0; attempts < IPAM_ALLOCATIONS || kills < IPAM_KILLS; run++) {
      const r = await runAndKill(script, [stateDir, String(Math.floor(rand() * 2 ** 31)), String(run)], Math.floor(rand() * 400))
      assert.ok(r.killed, `driver run ${run} ended on its own: ${r.stderr}`)
      kills++
      let inflight: {op: string; owner: string} | undefined
      for (const line of r.lines) {
        const [op, owner, ips] = line.split(' ')
        if (op === 'alloc' || op === 'release') {
          inflight = {op, owner}
          if (op === 'alloc') attempts++
        } else if (op === 'allocated') {
          model.set(owner, ips)
        } else if (op === 'released') {
          model.delete(owner)
          inflight = undefined
        }
      }
      // The state parses and holds no address twice, before anyone repairs anything.
      const raw = await verifyIpamState(stateDir)
      assert.equal(new Set(raw.allocations.map((a) => a.ip)).size, raw.allocations.length, `run ${run}: an address held twice`)
      // The next command (a read; it finishes an interrupted change under the lock) ...
      const listed = await listIps(t)
      const after = await verifyIpamState(stateDir)
      if (raw.problems.length > 0) repaired++
      // ... leaves bitmaps, links and records agreeing.
      assert.deepEqual(after.problems, [], `run ${run}: index and records disagree after the next command`)
      const byOwner = new Map<string, string>()
      for (const a of listed.filter((x) => x.owner !== 'router')) byOwner.set(a.owner, [byOwner.get(a.owner), a.ip].filter(Boolean).join(','))
      const last = r.lines.at(-1) ?? ''
      if (!/^(confirmed|released) /.test(last)) midChange++ // killed in alloc, confirm or release
      for (const [owner, ips] of model) {
        if (inflight?.owner === owner && inflight.op === 'release') continue
        assert.equal(byOwner.get(owner), ips, `run ${run}: acknowledged allocation of ${owner} lost or changed`)
      }
      for (const owner of byOwner.keys()) {
        if (!model.has(owner)) assert.equal(owner, inflight?.owner, `run ${run}: ${owner} holds addresses nobody was given`)
      }
      // The change in flight either happened or did not: adopt what the state says.
      if (inflight) {
        if (byOwner.has(inflight.owner)) model.set(inflight.owner, byOwner.get(inflight.owner)!)
        else model.delete(inflight.owner)
      }
    }
    const gc = await gcIps(t)
    assert.deepEqual(gc.warnings ?? [], [], 'gc finds nothing left to fix')
    const leftovers: string[] = []
    for (const sub of ['', 'owners', 'ips', 'pending']) leftovers.push(...readdirSync(path.join(stateDir, 'ipam', sub)).filter((f) => f.endsWith('.tmp')))
    assert.deepEqual(leftovers, [], 'no temp file of a killed writer left after gc')
    console.log(`      ${attempts} allocations attempted over ${kills} kills (${midChange} inside a change, ${repaired} left an interrupted change for the next command); ${model.size} owners hold addresses`)
  })

  describe('service table', () => {
    let ns: string
    let stateDir: string
    let root: string

    before(() => {
      mkdirSync(BPFFS, {recursive: true})
      if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
      ns = createNamespace('crash').name
      inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p'])
      inNs(ns, ['ip', 'addr', 'add', '172.31.77.1/24', 'dev', 'eth0'])
      for (const dev of ['eth0', 'eth0p']) inNs(ns, ['ip', 'link', 'set', dev, 'up'])
      stateDir = path.join(tmp, 'svc-state')
      const r = pn(['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', '10.78.0.0/24', '--routing', 'bpf', '--state-dir', stateDir, '--json'], {netns: ns})
      assert.equal(r.status, 0, `node init: ${r.stdout}${r.stderr}`)
      root = (JSON.parse(readFileSync(path.join(stateDir, 'node.json'), 'utf8')) as {bpffsRoot: string}).bpffsRoot
    })

    after(() => {
      if (stateDir) pn(['node', 'reset', '--state-dir', stateDir, '--json'], {netns: ns})
      cleanupNamespaces()
      if (ns) rmSync(path.join(BPFFS, ns), {recursive: true, force: true})
    })

    const mapsMatch = (table: ServiceTable, what: string) => {
      const want = expectedMaps(table)
      for (const [name, entries] of want) {
        const have = dumpRaw(mapPath(root, name))
        assert.deepEqual(new Map([...have].sort()), new Map([...entries].sort()), `${what}: ${name} differs from the table`)
      }
    }

    it('an apply returns only after the table and its directory are fsync\'d (syscall order under strace)', () => {
      const script = path.join(tmp, 'svc-trace.mjs')
      writeFileSync(script, `
import {changeServices} from '${DIST}/service/apply.js'
const out = (l) => process.stdout.write(l + '\\n')
const svc = (vip, ...b) => ({frontend: {vip, port: 80, proto: 'tcp'}, backends: b.map((ip) => ({ip, port: 8080}))})
await changeServices(process.argv[2], {kind: 'upsert', service: svc('10.96.9.1', '10.78.0.5', '10.78.0.6')}); out('returned upsert')
await changeServices(process.argv[2], {kind: 'replace', services: [svc('10.96.9.2', '10.78.0.7')]}); out('returned replace')
await changeServices(process.argv[2], {kind: 'delete', frontends: ['10.96.9.2:80/tcp']}); out('returned delete')
`)
      const n = checkDurability(traced(script, [stateDir], tmp), stateDir, /^$/)
      assert.ok(n.renames >= 6, `checked ${n.renames} renames`)
    })

    it(`${SERVICE_KILLS} applies killed at random points: the table parses, the next command brings the maps in line with it`, async () => {
      assert.ok(existsSync(mapPath(root, 'pn_lb4_services')), `pn_lb4_services pinned under ${root}`)
      const rand = prng(seed ^ 0x5eed)
      const script = path.join(tmp, 'svc-driver.mjs')
      writeFileSync(script, SERVICE_DRIVER)
      let model = new Map<string, string[]>()
      let changes = 0
      let midChange = 0
      let pendingLeft = 0
      for (let kill = 0; kill < SERVICE_KILLS; kill++) {
        const r = await runAndKill(script, [stateDir, String(Math.floor(rand() * 2 ** 31))], Math.floor(rand() * 300))
        assert.ok(r.killed, `driver run ${kill} ended on its own: ${r.stderr}`)
        let inflight: {kind: string; services?: {frontend: {vip: string; port: number; proto: string}; backends: {ip: string; port: number}[]}[]; service?: {frontend: {vip: string; port: number; proto: string}; backends: {ip: string; port: number}[]}; frontends?: string[]} | undefined
        const apply = (m: Map<string, string[]>, req: NonNullable<typeof inflight>) => {
          const fk = (f: {vip: string; port: number; proto: string}) => `${f.vip}:${f.port}/${f.proto}`
          const bk = (b: {ip: string; port: number}[]) => b.map((x) => `${x.ip}:${x.port}`)
          if (req.kind === 'replace') return new Map(req.services!.map((s) => [fk(s.frontend), bk(s.backends)]))
          const next = new Map(m)
          if (req.kind === 'upsert') next.set(fk(req.service!.frontend), bk(req.service!.backends))
          else for (const f of req.frontends!) next.delete(f)
          return next
        }
        for (const line of r.lines) {
          if (line.startsWith('change ')) {
            inflight = JSON.parse(line.slice(7))
            changes++
          } else if (line === 'done') {
            model = apply(model, inflight!)
            inflight = undefined
          }
        }
        if (inflight) midChange++
        // The committed table and any pending one parse.
        const committed = await readServiceTable(stateDir)
        const pendingBuf = await readFileIfExists(`${servicesFile(stateDir)}.pending`)
        if (pendingBuf) {
          decodeTable(pendingBuf, 'pending')
          pendingLeft++
        }
        const sorted = (m: Map<string, string[]>) => new Map([...m].sort())
        const candidates = [model, ...(inflight ? [apply(model, inflight)] : [])].map(sorted)
        // The next command (a delete of nothing: it rolls an interrupted change forward first).
        await changeServices(stateDir, {kind: 'delete', frontends: []})
        const table = await readServiceTable(stateDir)
        const view = sorted(tableView(table))
        assert.ok(candidates.some((c) => JSON.stringify([...c]) === JSON.stringify([...view])), `kill ${kill}: the table is neither the acknowledged state nor the change in flight (committed before: ${tableView(committed).size} services)`)
        assert.ok(!existsSync(`${servicesFile(stateDir)}.pending`), `kill ${kill}: a pending table left after the next command`)
        mapsMatch(table, `kill ${kill}`)
        model = new Map(view)
      }
      // The CLI agrees: `pn service list` shows the table, and applying it again changes nothing.
      const list = pn(['service', 'list', '--state-dir', stateDir, '--json'], {netns: ns})
      assert.equal(list.status, 0, list.stdout + list.stderr)
      const listed = list.json!.result as {frontend: string; backends: {address: string}[]}[]
      assert.deepEqual(new Map(listed.map((s) => [s.frontend, s.backends.map((b) => b.address)])), new Map([...model].sort((a, b) => a[0].localeCompare(b[0], 'en', {numeric: true}))))
      assert.deepEqual(list.json!.warnings, [], 'the maps hold what the table says (no re-apply warning)')
      const specs = listed.map((s) => ({frontend: s.frontend, backends: s.backends.map((b) => b.address)}))
      const file = path.join(tmp, 'again.json')
      writeFileSync(file, JSON.stringify(specs))
      const again = pn(['service', 'apply', file, '--state-dir', stateDir, '--json'], {netns: ns})
      assert.equal(again.status, 0, again.stdout + again.stderr)
      assert.equal(again.json!.result.changed, false)
      mapsMatch(await readServiceTable(stateDir), 'after pn service apply')
      console.log(`      ${SERVICE_KILLS} kills (${midChange} inside a change, ${pendingLeft} left a pending table for the next command), ${changes} changes started; ${model.size} services in the table`)
    })
  })
})
