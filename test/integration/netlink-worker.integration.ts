/**
 * The agent's kernel worker (native/pn-netlink.c behind the NativeBackend, src/kernel/native.ts)
 * on real devices in `pn-` namespaces: an apply is one request; its results carry the values ip
 * and tc show for the same objects (in pn's schema: a subset of their JSON); a failure names the
 * failing op's index, its errno and the kernel's extended ack, and ops after it are not applied;
 * tc hooks as tc makes them; a killed worker is replaced on the next apply. The same op lists
 * through the tools backend and this one: test/integration/kernel-parity.integration.ts.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {NETLINK_BINARY} from '../../src/entry/native.js'
import {NetlinkWorker} from '../../src/exec/netlink-worker.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {applyOne} from '../../src/kernel/backend.js'
import {KernelError} from '../../src/kernel/errors.js'
import {NativeBackend} from '../../src/kernel/native.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {ToolsBackend} from '../../src/kernel/tools.js'
import {cleanupNamespaces, createNamespace, inNs, isRoot, tryInNs, uniqueName} from '../helpers/netns.js'

type Json = Record<string, unknown>

/** Every field of `mine` has the value `real` has (pn's schema is a subset of the tool's JSON). */
function subsetOf(mine: unknown, real: unknown, where: string): void {
  if (Array.isArray(mine)) {
    assert.ok(Array.isArray(real), `${where}: not a list in the tool's JSON`)
    assert.equal(mine.length, (real as unknown[]).length, `${where}: length`)
    mine.forEach((m, i) => subsetOf(m, (real as unknown[])[i], `${where}[${i}]`))
  } else if (mine && typeof mine === 'object') {
    for (const [k, v] of Object.entries(mine as Json)) subsetOf(v, (real as Json)?.[k], `${where}.${k}`)
  } else assert.deepEqual(mine, real, where)
}

describe('kernel worker (pn-netlink) on real devices', function () {
  this.timeout(120_000)
  let host: string
  let pod: string
  let worker: NetlinkWorker
  let spawned: RecordingRunner
  let kernel: NativeBackend
  const bpffs = path.join('/run/pn/bpffs', uniqueName('nlw'))
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-nlw-'))
  const prog = path.join(bpffs, 'prog_pass')
  const hostNs = () => `/run/netns/${host}`
  const podNs = () => `/run/netns/${pod}`

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    host = createNamespace('nlh').name
    pod = createNamespace('nlp').name
    mkdirSync('/run/pn/bpffs', {recursive: true})
    if (execFileSync('stat', ['-f', '-c', '%T', '/run/pn/bpffs'], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', '/run/pn/bpffs'])
    mkdirSync(bpffs, {recursive: true})
    const src = path.join(tmp, 'pass.c')
    writeFileSync(src, '__attribute__((section("tc"), used)) int prog_pass(void *skb) { return 0; }\nchar _license[] __attribute__((section("license"), used)) = "GPL";\n')
    execFileSync('clang', ['-O2', '-target', 'bpf', '-c', src, '-o', path.join(tmp, 'pass.o')])
    execFileSync('bpftool', ['prog', 'load', path.join(tmp, 'pass.o'), prog, 'type', 'classifier'])
    worker = new NetlinkWorker(NETLINK_BINARY)
    // The injected backend (map and prog ops) records; nothing here should reach it.
    spawned = new RecordingRunner()
    kernel = new NativeBackend(worker, new ToolsBackend(spawned))
  })

  after(async () => {
    await worker?.stop()
    cleanupNamespaces()
    rmSync(bpffs, {recursive: true, force: true})
    rmSync(tmp, {recursive: true, force: true})
  })

  it('applies a veth with its peer in the pod netns, addresses and routes as one request; the queries answer what ip shows', async () => {
    const ops: KernelOp[] = [
      {kind: 'link.add', type: 'veth', name: 'lxcw', address: '02:00:00:00:01:01', mtu: 1450, txqueuelen: 1000, peer: {name: 'eth0', address: '02:00:00:00:00:01', mtu: 1450, netns: podNs()}},
      {kind: 'link.set', name: 'lxcw', up: true},
      {kind: 'route.add', dst: '10.1.2.3/32', dev: 'lxcw', scope: 'link', replace: true},
      {kind: 'sysctl.set', key: 'net.ipv4.conf.lxcw.rp_filter', value: '0'},
      {kind: 'link.get', name: 'lxcw'},
      {kind: 'route.list', family: 4},
    ]
    const r = await kernel.apply(ops, {netns: hostNs()})
    assert.deepEqual(r.slice(0, 4), ops.slice(0, 4).map((o) => ({kind: o.kind})))
    assert.equal(spawned.records.length, 0, 'a process was spawned')
    assert.equal(inNs(host, ['sysctl', '-n', 'net.ipv4.conf.lxcw.rp_filter']).trim(), '0')
    subsetOf((r[4] as {link: unknown}).link, JSON.parse(inNs(host, ['ip', '-j', '-d', 'link', 'show', 'dev', 'lxcw']))[0], 'link.get lxcw')
    subsetOf((r[5] as {routes: unknown}).routes, JSON.parse(inNs(host, ['ip', '-4', '-j', 'route', 'show'])), 'route.list')
    const podOps: KernelOp[] = [
      {kind: 'link.set', name: 'eth0', up: true},
      {kind: 'addr.add', dev: 'eth0', address: '10.1.2.3/32'},
      {kind: 'addr.add', dev: 'eth0', address: 'fd00::3/128', nodad: true},
      {kind: 'route.add', dst: '10.1.0.1/32', dev: 'eth0', scope: 'link'},
      {kind: 'route.add', dst: 'fd00::1/128', dev: 'eth0', scope: 'link'},
      {kind: 'route.add', dst: '0.0.0.0/0', via: '10.1.0.1', dev: 'eth0', mtu: 1400},
      {kind: 'route.add', dst: '::/0', via: 'fd00::1', dev: 'eth0', mtu: 1400},
    ]
    await kernel.apply(podOps, {netns: podNs()})
    // The kernel adds eth0's IPv6 link-local address on its own once the link is up: wait for
    // it, so the worker and ip below read the same addresses.
    for (let i = 0; i < 50 && !inNs(pod, ['ip', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']).includes('fe80'); i++) await new Promise((res) => setTimeout(res, 100))
    const queries: KernelOp[] = [
      {kind: 'link.list'},
      {kind: 'addr.list', dev: 'eth0'},
      {kind: 'addr.list'},
      {kind: 'route.list', family: 4, table: 'all'},
      {kind: 'route.list', family: 6, exact: '::/0'},
    ]
    const p: unknown[] = [...podOps.map((o) => ({kind: o.kind})), ...(await kernel.apply(queries, {netns: podNs()}))]
    subsetOf((p[7] as {links: unknown}).links, JSON.parse(inNs(pod, ['ip', '-j', '-d', 'link', 'show'])), 'link.list')
    subsetOf((p[8] as {links: unknown}).links, JSON.parse(inNs(pod, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])), 'addr.list eth0')
    subsetOf((p[9] as {links: unknown}).links, JSON.parse(inNs(pod, ['ip', '-j', 'addr', 'show'])), 'addr.list')
    subsetOf((p[10] as {routes: unknown}).routes, JSON.parse(inNs(pod, ['ip', '-4', '-j', 'route', 'show', 'table', 'all'])), 'route.list table all')
    subsetOf((p[11] as {routes: unknown}).routes, JSON.parse(inNs(pod, ['ip', '-6', '-j', 'route', 'show', 'exact', '::/0'])), 'route.list exact ::/0')
    const eth0 = (p[7] as unknown as {links: Json[]}).links.find((l) => l.ifname === 'eth0')!
    assert.equal(eth0.link_index, (r[4] as unknown as {link: Json}).link.ifindex, 'the pod side names its peer by ifindex (another netns)')
    assert.ok(tryInNs(pod, ['ping', '-c', '1', '-W', '1', '10.1.2.3']).status === 0)
  })

  it('fails at the failing op: EEXIST on a taken name (PN_LINK_EXISTS, its index), nothing after it applied', async () => {
    const ops: KernelOp[] = [
      {kind: 'link.set', name: 'lxcw', mtu: 1400},
      {kind: 'link.add', type: 'veth', name: 'lxcw', peer: {name: 'pn_zz'}},
      {kind: 'link.set', name: 'lxcw', mtu: 1300},
    ]
    await assert.rejects(kernel.apply(ops, {netns: hostNs()}), (e: KernelError) => {
      assert.ok(e instanceof KernelError)
      assert.deepEqual([e.code, e.index, e.errno, e.op], ['PN_LINK_EXISTS', 1, 'EEXIST', ops[1]])
      return true
    })
    assert.equal(JSON.parse(inNs(host, ['ip', '-j', 'link', 'show', 'dev', 'lxcw']))[0].mtu, 1400, 'op 0 applied, op 2 not')
    assert.equal(tryInNs(host, ['ip', 'link', 'show', 'pn_zz']).status, 1)
  })

  it('fails with ENODEV for an absent device (PN_LINK_NOT_FOUND), and with the kernel\'s extended ack when it gives one', async () => {
    await assert.rejects(applyOne(kernel, {kind: 'addr.add', dev: 'pn_nope', address: '10.9.0.1/32'}, {netns: hostNs()}), (e: KernelError) => e.code === 'PN_LINK_NOT_FOUND' && e.errno === 'ENODEV' && e.index === 0)
    await assert.rejects(applyOne(kernel, {kind: 'link.del', name: 'pn_nope'}, {netns: hostNs()}), (e: KernelError) => e.code === 'PN_LINK_NOT_FOUND' && e.errno === 'ENODEV')
    assert.deepEqual(await applyOne(kernel, {kind: 'link.del', name: 'pn_nope', missingOk: true}, {netns: hostNs()}), {kind: 'link.del', deleted: false})
    assert.deepEqual(await applyOne(kernel, {kind: 'link.get', name: 'pn_nope'}, {netns: hostNs()}), {kind: 'link.get'})
    assert.deepEqual(await applyOne(kernel, {kind: 'addr.list', dev: 'pn_nope'}, {netns: hostNs()}), {kind: 'addr.list', links: []})
    // A gateway the device cannot reach: the kernel says why in its extended ack.
    await assert.rejects(applyOne(kernel, {kind: 'route.add', dst: '10.50.0.0/16', via: '10.99.99.99', dev: 'lxcw'}, {netns: hostNs()}), (e: KernelError) => {
      assert.ok(e instanceof KernelError)
      assert.ok(e.extack && e.extack.length > 0, 'no extended ack')
      assert.ok(e.errno, 'no errno')
      assert.match(e.message, new RegExp(`^add route 10.50.0.0/16 via 10.99.99.99 dev lxcw in ${hostNs()}: ${e.extack}$`))
      return true
    })
    // A route that is not there: ESRCH, or nothing with missingOk.
    await assert.rejects(applyOne(kernel, {kind: 'route.del', dst: '10.77.0.0/16', dev: 'lxcw'}, {netns: hostNs()}), (e: KernelError) => e.errno === 'ESRCH')
    assert.deepEqual(await applyOne(kernel, {kind: 'route.del', dst: '10.77.0.0/16', dev: 'lxcw', missingOk: true}, {netns: hostNs()}), {kind: 'route.del'})
    // A sysctl of an absent device: ENOENT → PN_LINK_NOT_FOUND (as the tools backend says it).
    await assert.rejects(applyOne(kernel, {kind: 'sysctl.set', key: 'net.ipv4.conf.pn_nope.rp_filter', value: '0'}, {netns: hostNs()}), (e: KernelError) => e.code === 'PN_LINK_NOT_FOUND' && e.errno === 'ENOENT')
    // A netns that is not there: op 0 fails with the worker's reason.
    await assert.rejects(kernel.apply([{kind: 'link.list'}], {netns: '/run/netns/pn-does-not-exist'}), (e: KernelError) => e.code === 'PN_COMMAND_FAILED' && /cannot enter the netns \/run\/netns\/pn-does-not-exist/.test(e.message))
  })

  it('attaches a pinned program as tc does (same filter, same label); lists, detaches; absent hooks are empty or {deleted: false}', async () => {
    inNs(host, ['ip', 'link', 'add', 'pn_t1', 'type', 'veth', 'peer', 'name', 'pn_t2'])
    const r = await kernel.apply([
      {kind: 'qdisc.add', dev: 'lxcw'},
      {kind: 'tc.attach', dev: 'lxcw', direction: 'ingress', pref: 1, handle: 1, pinned: prog},
      {kind: 'tc.list', dev: 'lxcw', direction: 'ingress'},
      {kind: 'tc.list', dev: 'lxcw', direction: 'egress'},
      {kind: 'tc.list', dev: 'pn_t1', direction: 'ingress'},
      {kind: 'tc.list', dev: 'pn_nope', direction: 'ingress'},
    ], {netns: hostNs()})
    inNs(host, ['tc', 'qdisc', 'add', 'dev', 'pn_t1', 'clsact'])
    inNs(host, ['tc', 'filter', 'replace', 'dev', 'pn_t1', 'ingress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'object-pinned', prog])
    const show = (dev: string) => JSON.parse(inNs(host, ['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress'])) as Json[]
    assert.deepEqual(show('lxcw'), show('pn_t1'))
    assert.equal((show('lxcw')[1].options as Json).bpf_name, 'prog_pass:[*fsobj]')
    const progId = ((show('lxcw')[1].options as Json).prog as Json).id
    assert.deepEqual(r[2], {kind: 'tc.list', filters: [{pref: 1, kind: 'bpf', handle: 1, prog: {id: progId, name: 'prog_pass', tag: ((show('lxcw')[1].options as Json).prog as Json).tag}}]})
    assert.deepEqual([r[3], r[4], r[5]], [{kind: 'tc.list', filters: []}, {kind: 'tc.list', filters: []}, {kind: 'tc.list', filters: []}])
    await assert.rejects(applyOne(kernel, {kind: 'qdisc.add', dev: 'lxcw'}, {netns: hostNs()}), (e: KernelError) => e.errno === 'EEXIST' && e.code === 'PN_COMMAND_FAILED')
    const d = await kernel.apply([
      {kind: 'tc.detach', dev: 'lxcw', direction: 'ingress', pref: 1, handle: 1},
      {kind: 'tc.detach', dev: 'lxcw', direction: 'ingress', pref: 1, handle: 1, missingOk: true},
      {kind: 'tc.detach', dev: 'pn_t2', direction: 'ingress', pref: 1, handle: 1, missingOk: true},
      {kind: 'qdisc.del', dev: 'lxcw'},
      {kind: 'qdisc.del', dev: 'lxcw', missingOk: true},
      {kind: 'qdisc.del', dev: 'pn_nope', missingOk: true},
    ], {netns: hostNs()})
    assert.deepEqual(d.map((x) => ('deleted' in x ? x.deleted : undefined)), [true, false, false, true, false, false])
    assert.deepEqual(JSON.parse(inNs(host, ['tc', '-j', 'qdisc', 'show', 'dev', 'lxcw'])).filter((q: Json) => q.kind === 'clsact'), [])
    await assert.rejects(applyOne(kernel, {kind: 'tc.attach', dev: 'pn_t1', direction: 'egress', pref: 1, handle: 1, pinned: path.join(bpffs, 'nope')}, {netns: hostNs()}), (e: KernelError) => /cannot open the pinned program/.test(e.message))
  })

  it('is replaced after it dies: the next apply starts a new worker', async () => {
    await applyOne(kernel, {kind: 'link.get', name: 'lo'}, {netns: hostNs()})
    const pid = worker.pid!
    process.kill(pid, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 100))
    const r = await applyOne(kernel, {kind: 'link.get', name: 'lxcw'}, {netns: hostNs()})
    assert.equal(r.link?.ifname, 'lxcw')
    assert.notEqual(worker.pid, pid)
  })
})
