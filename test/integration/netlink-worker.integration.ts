/**
 * The agent's kernel worker (native/pn-netlink.c behind src/exec/netlink-worker.ts) against the
 * real tools it stands in for: the same command lines, run once through the worker and once
 * through ip/tc/bpftool on twin devices in `pn-` namespaces, must leave the same kernel state and
 * answer with the same exit codes and the output pn reads. A command outside its grammar goes to
 * the real tool, and a killed worker is replaced on the next command.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {NETLINK_BINARY} from '../../src/entry/native.js'
import {NetlinkWorker, WorkerRunner} from '../../src/exec/netlink-worker.js'
import {RecordingRunner, type RunOptions} from '../../src/exec/runner.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, tryInNs, uniqueName} from '../helpers/netns.js'

type Json = Record<string, unknown>

/** Drop what differs between twin devices by construction (names, MACs, indexes, ids). */
function normalise(x: unknown, drop: string[] = []): unknown {
  if (Array.isArray(x)) return x.map((y) => normalise(y, drop))
  if (x && typeof x === 'object') {
    const out: Json = {}
    for (const [k, v] of Object.entries(x as Json)) {
      if (['ifindex', 'link_index', 'link_netnsid', 'address', 'ifname', 'dev', 'prefered_life_time', 'valid_life_time', 'link', ...drop].includes(k)) continue
      out[k] = normalise(v, drop)
    }
    return out
  }
  return x
}

describe('kernel worker (pn-netlink) against ip, tc and bpftool', function () {
  this.timeout(120_000)
  let host: string
  let podA: string
  let podB: string
  let worker: NetlinkWorker
  let runner: WorkerRunner
  let spawned: RecordingRunner
  const bpffs = path.join('/run/pn/bpffs', uniqueName('nlw'))
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-nlw-'))
  const prog = path.join(bpffs, 'prog_pass')
  const mapW = path.join(bpffs, 'map_w')
  const mapT = path.join(bpffs, 'map_t')

  /** Through the worker only (fails the test if the worker did not take it). */
  async function viaWorker(file: string, args: string[], opts: RunOptions = {}) {
    const before = spawned.records.length
    const r = await runner.run(file, args, {allowFailure: true, ...opts})
    assert.equal(spawned.records.length, before, `${file} ${args.join(' ')} was spawned, not run by the worker`)
    return r
  }

  /** The real tool, in the host namespace. */
  function viaTool(file: string, args: string[], input = '', ns = host) {
    const r = spawnSync('ip', ['netns', 'exec', ns, file, ...args], {input, encoding: 'utf8'})
    return {exitCode: r.status ?? 1, stdout: r.stdout, stderr: r.stderr}
  }

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    host = createNamespace('nlh').name
    podA = createNamespace('nla').name
    podB = createNamespace('nlb').name
    mkdirSync('/run/pn/bpffs', {recursive: true})
    if (execFileSync('stat', ['-f', '-c', '%T', '/run/pn/bpffs'], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', '/run/pn/bpffs'])
    mkdirSync(bpffs, {recursive: true})
    // A tc program that passes everything, and two hash maps (one per side of the comparison).
    const src = path.join(tmp, 'pass.c')
    writeFileSync(src, '__attribute__((section("tc"), used)) int prog_pass(void *skb) { return 0; }\nchar _license[] __attribute__((section("license"), used)) = "GPL";\n')
    execFileSync('clang', ['-O2', '-target', 'bpf', '-c', src, '-o', path.join(tmp, 'pass.o')])
    execFileSync('bpftool', ['prog', 'load', path.join(tmp, 'pass.o'), prog, 'type', 'classifier'])
    for (const m of [mapW, mapT]) execFileSync('bpftool', ['map', 'create', m, 'type', 'hash', 'key', '4', 'value', '8', 'entries', '16', 'name', 'pn_nlw'])
    worker = new NetlinkWorker(NETLINK_BINARY)
    // Commands the worker does not take are recorded (and really run, read-only or not).
    spawned = new RecordingRunner((argv, opts) => {
      const r = spawnSync(argv[0], argv.slice(1), {input: opts.input ?? '', encoding: 'utf8'})
      return {exitCode: r.status ?? 1, stdout: r.stdout, stderr: r.stderr}
    })
    runner = new WorkerRunner(spawned, worker)
  })

  after(async () => {
    await worker?.stop()
    cleanupNamespaces()
    rmSync(bpffs, {recursive: true, force: true})
    rmSync(tmp, {recursive: true, force: true})
  })

  const hostNs = () => `/run/netns/${host}`
  const vethLines = (lxc: string, pod: string, mac: string, hostRoute: string) => [
    `link add name ${lxc} address ${mac} mtu 1450 txqueuelen 1000 type veth peer name eth0 address 02:00:00:00:00:01 mtu 1450 netns /run/netns/${pod}`,
    `link set dev ${lxc} up`,
    `route replace ${hostRoute}/32 dev ${lxc} scope link`,
  ]
  const podLines = [
    'link set dev eth0 up',
    'addr add 10.1.2.3/32 dev eth0',
    'addr add fd00::3/128 dev eth0 nodad',
    'route add 10.1.0.1/32 dev eth0 scope link',
    'route add fd00::1/128 dev eth0 scope link',
    'route add default via 10.1.0.1 dev eth0 mtu 1400',
    'route add ::/0 via fd00::1 dev eth0 mtu 1400',
  ]

  it('creates the same veth pair, addresses and routes as ip -batch', async () => {
    assert.equal((await viaWorker('ip', ['-batch', '-'], {netns: hostNs(), input: vethLines('lxcw', podA, '02:00:00:00:01:01', '10.1.2.3').join('\n') + '\n'})).exitCode, 0)
    assert.equal(viaTool('ip', ['-batch', '-'], vethLines('lxct', podB, '02:00:00:00:01:02', '10.1.2.4').join('\n') + '\n').exitCode, 0)
    assert.equal((await viaWorker('ip', ['-batch', '-'], {netns: `/run/netns/${podA}`, input: podLines.join('\n') + '\n'})).exitCode, 0)
    assert.equal(viaTool('ip', ['-batch', '-'], podLines.join('\n') + '\n', podB).exitCode, 0)
    for (const what of [['-j', '-d', 'link', 'show', 'dev', 'eth0'], ['-j', 'addr', 'show', 'dev', 'eth0'], ['-j', 'route', 'show'], ['-j', '-6', 'route', 'show']]) {
      assert.deepEqual(normalise(JSON.parse(inNs(podA, ['ip', ...what]))), normalise(JSON.parse(inNs(podB, ['ip', ...what]))), `ip ${what.join(' ')} differs`)
    }
    for (const what of [['-j', '-d', 'link', 'show', 'dev'], ['-j', 'route', 'show', 'dev']]) {
      const [w, t] = ['lxcw', 'lxct'].map((dev) => normalise(JSON.parse(inNs(host, ['ip', ...what, dev])), ['dst']))
      assert.deepEqual(w, t, `ip ${what.join(' ')} differs`)
    }
  })

  it('answers ip -j -d link show dev with the fields and values ip prints', async () => {
    // Peer in another netns (link_index), peer in the same netns (link), no peer (lo), missing.
    inNs(host, ['ip', 'link', 'add', 'pn_x1', 'type', 'veth', 'peer', 'name', 'pn_x2'])
    for (const [dev, ns] of [['lxcw', hostNs()], ['eth0', `/run/netns/${podA}`], ['pn_x1', hostNs()], ['lo', hostNs()]] as const) {
      const mine = JSON.parse((await viaWorker('ip', ['-j', '-d', 'link', 'show', 'dev', dev], {netns: ns})).stdout) as Json[]
      const real = JSON.parse(inNs(ns.replace('/run/netns/', ''), ['ip', '-j', '-d', 'link', 'show', 'dev', dev])) as Json[]
      assert.equal(mine.length, 1)
      for (const [k, v] of Object.entries(mine[0])) assert.deepEqual(v, real[0][k], `${dev}: ${k}`)
      for (const k of ['ifindex', 'ifname', 'mtu', 'address', 'flags', 'operstate', 'linkinfo']) assert.ok(k in mine[0] || !(k in real[0]), `${dev}: ${k} missing`)
      assert.equal('link' in mine[0] || 'link_index' in mine[0], 'link' in real[0] || 'link_index' in real[0], `${dev}: peer field`)
    }
    const missing = await viaWorker('ip', ['-j', '-d', 'link', 'show', 'dev', 'pn_nope'], {netns: hostNs()})
    const real = viaTool('ip', ['-j', '-d', 'link', 'show', 'dev', 'pn_nope'])
    assert.deepEqual([missing.exitCode, missing.stderr], [real.exitCode, real.stderr])
  })

  it('attaches a pinned program with tc -batch as tc does (same filter, same label)', async () => {
    const lines = (dev: string) => `qdisc add dev ${dev} clsact\nfilter replace dev ${dev} ingress pref 1 handle 1 bpf da object-pinned ${prog}\n`
    assert.equal((await viaWorker('tc', ['-batch', '-'], {netns: hostNs(), input: lines('lxcw')})).exitCode, 0)
    assert.equal(viaTool('tc', ['-batch', '-'], lines('lxct')).exitCode, 0)
    const show = (dev: string) => JSON.parse(inNs(host, ['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress']))
    assert.deepEqual(show('lxcw'), show('lxct'))
    assert.equal(show('lxcw')[1].options.bpf_name, 'prog_pass:[*fsobj]')
    // A second qdisc add fails the same way, on the same line.
    const again = await viaWorker('tc', ['-batch', '-'], {netns: hostNs(), input: lines('lxcw')})
    const realAgain = viaTool('tc', ['-batch', '-'], lines('lxct'))
    assert.deepEqual([again.exitCode, again.stderr], [realAgain.exitCode, realAgain.stderr])
    // Detach as tc does; the filter is gone from both.
    assert.equal((await viaWorker('tc', ['filter', 'del', 'dev', 'lxcw', 'ingress', 'pref', '1', 'handle', '1', 'bpf'], {netns: hostNs()})).exitCode, 0)
    assert.equal(viaTool('tc', ['filter', 'del', 'dev', 'lxct', 'ingress', 'pref', '1', 'handle', '1', 'bpf']).exitCode, 0)
    assert.deepEqual(show('lxcw'), show('lxct'))
  })

  it('writes map entries like bpftool batch, and reports the failing line the same way in JSON', async () => {
    const lines = (m: string) => [
      `map update pinned ${m} key hex 01 00 00 00 value hex 11 22 33 44 55 66 77 88`,
      `map update pinned ${m} key hex 02 00 00 00 value hex 01 00 00 00 00 00 00 00`,
      `map delete pinned ${m} key hex 02 00 00 00`,
    ].join('\n') + '\n'
    const mine = await viaWorker('bpftool', ['batch', 'file', '-'], {input: lines(mapW)})
    const real = viaTool('bpftool', ['batch', 'file', '-'], lines(mapT))
    assert.deepEqual([mine.exitCode, mine.stdout], [real.exitCode, real.stdout])
    const dump = (m: string) => JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', m], {encoding: 'utf8'}))
    assert.deepEqual(dump(mapW), dump(mapT))
    // A delete of a missing key stops the batch: same JSON per line, same kind of exit.
    const failing = (m: string) => `map delete pinned ${m} key hex 09 00 00 00\nmap delete pinned ${m} key hex 01 00 00 00\n`
    const jm = await viaWorker('bpftool', ['-j', 'batch', 'file', '-'], {input: failing(mapW)})
    const jr = viaTool('bpftool', ['-j', 'batch', 'file', '-'], failing(mapT))
    assert.notEqual(jm.exitCode, 0)
    assert.notEqual(jr.exitCode, 0)
    const strip = (o: {command: string[]; output: unknown}[]) => o.map((x) => ({...x, command: x.command.map((w) => w.replace(mapW, 'M').replace(mapT, 'M'))}))
    assert.deepEqual(strip(JSON.parse(jm.stdout)), strip(JSON.parse(jr.stdout)))
    assert.deepEqual(dump(mapW), dump(mapT))
  })

  it('fails like ip: the failed batch line, a missing device, a missing netns', async () => {
    const batch = 'link set dev lxcw up\nlink add name lxcw type veth peer name pn_zz\n'
    const mine = await viaWorker('ip', ['-batch', '-'], {netns: hostNs(), input: batch})
    const real = viaTool('ip', ['-batch', '-'], batch.replace(/lxcw/g, 'lxct'))
    assert.deepEqual([mine.exitCode, mine.stderr], [real.exitCode, real.stderr])
    assert.match(mine.stderr, /Command failed -:2/)
    const del = await viaWorker('ip', ['link', 'del', 'dev', 'pn_nope'], {netns: hostNs()})
    const realDel = viaTool('ip', ['link', 'del', 'dev', 'pn_nope'])
    assert.deepEqual([del.exitCode, del.stderr], [realDel.exitCode, realDel.stderr])
    const gone = await viaWorker('ip', ['-batch', '-'], {netns: '/run/netns/pn-does-not-exist', input: 'link set dev lo up\n'})
    assert.equal(gone.exitCode, 1)
    assert.match(gone.stderr, /pn-does-not-exist/)
    // Without allowFailure the runner throws the error every runner throws.
    await assert.rejects(runner.run('ip', ['link', 'del', 'dev', 'pn_nope'], {netns: hostNs()}), (e: Error & {code?: string}) => e.code === 'PN_COMMAND_FAILED' && /Cannot find device/.test(e.message))
  })

  it('leaves a command outside its grammar to the real tool, and does none of a batch it cannot fully do', async () => {
    const before = spawned.records.length
    const r = await runner.run('ip', ['-batch', '-'], {netns: hostNs(), input: 'link set dev pn_x1 up\nlink set dev pn_x1 alias pn-test\n'})
    assert.equal(r.exitCode, 0)
    assert.equal(spawned.records.length, before + 1, 'the batch was not handed to ip')
    assert.deepEqual(spawned.records.at(-1)!.argv.slice(-3), ['ip', '-batch', '-'])
    assert.equal((JSON.parse(inNs(host, ['ip', '-j', 'link', 'show', 'dev', 'pn_x1'])) as Json[])[0].ifalias, 'pn-test')
  })

  it('is replaced after it dies: the next command starts a new worker', async () => {
    await viaWorker('ip', ['-j', '-d', 'link', 'show', 'dev', 'lo'], {netns: hostNs()})
    const pid = worker.pid!
    process.kill(pid, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 100))
    const r = await viaWorker('ip', ['-j', '-d', 'link', 'show', 'dev', 'lo'], {netns: hostNs()})
    assert.equal(r.exitCode, 0)
    assert.notEqual(worker.pid, pid)
    assert.equal(tryInNs(host, ['ip', 'link', 'show', 'lxcw']).status, 0)
  })
})
