/**
 * Orchestration as golden command sequences (no root): node init, CNI ADD, CNI DEL and the one
 * teardown run for real against a fake kernel (a runner that answers reads) through the dry-run
 * runner, which records every change. The root integration tests check the same flows against
 * the real kernel; these pin down which commands run, in which order, and how many processes.
 */
import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {cniAdd} from '../../src/cni/add.js'
import {cniDel} from '../../src/cni/del.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import type {CniRequest} from '../../src/cni/request.js'
import {parseCniArgs} from '../../src/cni/env.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {teardownEndpoint} from '../../src/endpoint/teardown.js'
import {DryRunRunner} from '../../src/exec/dry-run.js'
import type {Runner} from '../../src/exec/runner.js'
import {FakeKernel} from '../helpers/fake-kernel.js'
import {writeNodeContext, type NodeContext} from '../../src/node/context.js'
import {initNode} from '../../src/node/init.js'
import {ipamOf} from '../../src/node/ipam.js'
import {listIps} from '../../src/ipam/host.js'
import {listEndpoints} from '../../src/endpoint/store.js'

/** A kernel with an uplink eth0 and nothing else: answers reads, fails nothing. */
const fakeKernel = () => new FakeKernel({uplink: {ifname: 'eth0', mtu: 1450, address: '02:00:00:00:00:ee'}})

/** The records as `tool verb…` heads (the first words that say what changes). */
const heads = (r: DryRunRunner) => r.records.map((x) => (x.argv[0] === 'nsenter' ? x.argv.slice(3) : x.argv).slice(0, 3).join(' '))

describe('flows as golden command sequences (fake kernel, no root)', () => {
  let dir: string
  let bpffsRoot: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-golden-'))
    bpffsRoot = path.join(dir, 'bpffs')
    // Stand-ins for what `pn node init` in bpf mode pins (the attach checks they exist).
    mkdirSync(path.join(bpffsRoot, 'progs'), {recursive: true})
    mkdirSync(path.join(bpffsRoot, 'maps'), {recursive: true})
    writeFileSync(path.join(bpffsRoot, 'progs/from_container'), '')
    for (const m of ['pn_endpoints', 'pn_lxc', 'pn_ipcache', 'pn_metrics']) writeFileSync(path.join(bpffsRoot, 'maps', m), '')
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  const node = (routing: 'bpf' | 'host-routes'): NodeContext => ({
    version: 1, name: 'n1', uplink: 'eth0', podCidrs: ['10.0.1.0/24'], routerIps: ['10.0.1.1'], mtu: 1450, routeMtu: 1450,
    bpffsRoot, routing, createdAt: '2026-01-01T00:00:00.000Z',
  })

  const request = (runner: Runner, command: 'ADD' | 'DEL'): CniRequest => ({
    command,
    conf: parseNetConf(JSON.stringify({cniVersion: '1.0.0', name: 'pn', type: 'pn', stateDir: dir})),
    containerId: 'c1',
    ifname: 'eth0',
    netns: '/proc/self/ns/net',
    args: parseCniArgs(undefined),
    stateDir: dir,
    runner,
    log: () => {},
  })

  it('node init (host-routes): one batch for the pair, one for address + route, the sysctls through /proc/sys (no process)', async () => {
    const runner = new DryRunRunner(fakeKernel())
    const r = await initNode(runner, dir, {name: 'n1', uplink: 'eth0', podCidrs: ['10.0.1.0/24'], routing: 'host-routes'})
    assert.equal(r.node.mtu, 1450, 'the uplink MTU')
    const writes = heads(runner).filter((h) => !h.startsWith('mkdir') && !h.startsWith('mount'))
    assert.deepEqual(writes.slice(0, 2), ['ip -batch -', 'ip -batch -'])
    assert.deepEqual(writes.slice(2), [
      'ip_forward', 'conf/all/rp_filter',
      ...['pn_host', 'pn_net'].flatMap((d) => ['forwarding', 'rp_filter', 'accept_local', 'send_redirects'].map((k) => `conf/${d}/${k}`)),
    ].map((k) => `tee /proc/sys/net/ipv4/${k}`))
    const [devices, addressing] = runner.records.filter((x) => x.argv[1] === '-batch').map((x) => x.input!.trim().split('\n'))
    assert.match(devices[0], /^link add name pn_host address \S+ mtu 1450 txqueuelen 1000 type veth peer name pn_net address \S+ mtu 1450$/)
    assert.deepEqual(devices.slice(1), ['link set dev pn_host up', 'link set dev pn_net up'])
    assert.deepEqual(addressing, ['addr replace 10.0.1.1/32 dev pn_host scope link', 'route replace 10.0.1.0/24 via 10.0.1.1 dev pn_host src 10.0.1.1'])
    assert.equal(runner.records.find((x) => x.argv[1] === '/proc/sys/net/ipv4/ip_forward')!.input, '1\n')
    assert.equal(runner.ran('clang') || runner.ran('bpftool') || runner.ran('tc'), false, 'host-routes mode loads no BPF')
  })

  it('CNI ADD (bpf): veth in one batch, rp_filter without a process, pod addressing, one bpftool batch, qdisc + filter in one tc batch; never clang', async () => {
    await writeNodeContext(dir, node('bpf'))
    const runner = new DryRunRunner(fakeKernel())
    const result = await cniAdd(request(runner, 'ADD'))
    const [address] = (result as {ips: {address: string}[]}).ips.map((i) => i.address)
    assert.match(address, /^10\.0\.1\.\d+\/32$/)
    const ip = address.split('/')[0]
    const lxc = hostIfnameFor('c1', 'eth0')
    assert.deepEqual(heads(runner), [
      'ip -batch -', // lxc<hash> <-> eth0 in the pod netns, lxc up
      `tee /proc/sys/net/ipv4/conf/${lxc}/rp_filter`, // rp_filter=0 on the lxc, written in-process (no sysctl spawn)
      'ip -batch -', // pod: up, /32, router /32 scope link, default via router
      'bpftool -j batch', // pn_endpoints + pn_ipcache + pn_lxc
      'tc -batch -', // a fresh veth: clsact qdisc + from-container filter in one tc process
      `mkdir -p ${path.join(bpffsRoot, 'qdiscs', `${lxc}@0`)}`.split(' ').slice(0, 3).join(' '),
    ])
    assert.equal(runner.records[1].input, '0\n')
    const tcBatch = runner.records.find((r) => r.argv[0] === 'tc')!
    assert.deepEqual(tcBatch.input!.trim().split('\n'), [
      `qdisc add dev ${lxc} clsact`,
      `filter replace dev ${lxc} ingress pref 1 handle 1 bpf da object-pinned ${path.join(bpffsRoot, 'progs', 'from_container')}`,
    ])
    assert.equal(runner.ran('clang'), false)
    const pod = runner.records[2]
    assert.equal(pod.netns, '/proc/self/ns/net')
    assert.deepEqual(pod.input!.trim().split('\n'), [
      'link set dev eth0 up',
      `addr add ${ip}/32 dev eth0`,
      'route add 10.0.1.1/32 dev eth0 scope link',
      'route add default via 10.0.1.1 dev eth0 mtu 1450',
    ])
  })

  it('CNI ADD failing at the BPF step unwinds in reverse: bpf, endpoint, veth, IP', async () => {
    await writeNodeContext(dir, node('bpf'))
    rmSync(path.join(bpffsRoot, 'progs'), {recursive: true}) // the node programs are not loaded
    const runner = new DryRunRunner(fakeKernel())
    await assert.rejects(cniAdd(request(runner, 'ADD')), (e: Error & {code?: string}) => e.code === 'PN_BPF_NOT_LOADED')
    assert.deepEqual(heads(runner).slice(3), ['tc filter del', 'ip link del'], 'detach (nothing attached) then the veth')
    const held = (await listIps(ipamOf(node('bpf'), dir))).map((a) => a.owner)
    assert.deepEqual(held, ['router'], 'the IP was released by the unwind')
    assert.deepEqual(await listEndpoints(dir), [], 'the record was removed')
  })

  it('CNI DEL and the one teardown: veth (its qdisc and filter go with it), map entries by key, record, IP — and nothing when it is all gone', async () => {
    await writeNodeContext(dir, node('bpf'))
    await cniAdd(request(new DryRunRunner(fakeKernel()), 'ADD'))
    const runner = new DryRunRunner(fakeKernel())
    const del = await cniDel(request(runner, 'DEL'))
    assert.equal(del.endpoint, true)
    assert.equal(del.ips.length, 1)
    // Deleting the host veth takes its clsact qdisc and filter along: no tc, and the map
    // entries go by the record's keys in one bpftool batch, without dumping the maps.
    assert.deepEqual(heads(runner), ['ip link del', 'bpftool -j batch'])
    const batch = runner.records.find((r) => r.argv[0] === 'bpftool')!
    assert.deepEqual(
      batch.input!.trim().split('\n').map((l) => l.split(' ').slice(0, 4).join(' ')),
      [
        `map delete pinned ${path.join(bpffsRoot, 'maps', 'pn_endpoints')}`,
        `map delete pinned ${path.join(bpffsRoot, 'maps', 'pn_ipcache')}`,
        `map delete pinned ${path.join(bpffsRoot, 'maps', 'pn_lxc')}`,
      ],
    )
    // The same teardown, a second time: nothing left to remove, no error (DEL may repeat).
    const t = await teardownEndpoint(new DryRunRunner(fakeKernel()), dir, {containerId: 'c1', ifname: 'eth0'}, {bpf: node('bpf'), ipam: ipamOf(node('bpf'), dir)})
    assert.deepEqual([t.endpoint, t.ips, t.errors], [false, [], []])
  })
})
