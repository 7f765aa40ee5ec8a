import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {connectEndpoint} from '../../src/endpoint/connect.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {PnError} from '../../src/errors.js'
import type {KernelError} from '../../src/kernel/errors.js'
import {deleteVeth, hostIfnameFor, podAddressing, setupVeth} from '../../src/datapath/veth.js'
import {renderLine} from '../../src/kernel/tools.js'

const NETNS = '/proc/self/ns/net' // a real netns handle that needs no root
const MAC = '[0-9a-f]{2}(:[0-9a-f]{2}){5}'

function linkJson(ifname: string, ifindex: number, peerIndex: number): string {
  return JSON.stringify([{ifindex, ifname, mtu: 1450, address: '02:00:00:00:00:01', link_index: peerIndex, linkinfo: {info_kind: 'veth'}}])
}

describe('veth connector (golden argv)', () => {
  it('names the host side lxc + 12 hex of sha256(containerId:ifname)', () => {
    const name = hostIfnameFor('c1', 'eth0')
    assert.match(name, /^lxc[0-9a-f]{12}$/)
    assert.equal(name.length, 15)
    assert.equal(hostIfnameFor('c1', 'eth0'), name)
    assert.notEqual(hostIfnameFor('c1', 'eth1'), name)
    assert.equal(hostIfnameFor('abc', 'eth0'), 'lxcb133159de544') // printf abc:eth0 | sha256sum
  })

  it('creates the pair in the pod netns and configures the seed routing table in 4 processes', async () => {
    const host = hostIfnameFor('pod1', 'eth0')
    const runner = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    const r = await setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1450, ips: ['10.0.1.23'], routerIps: ['10.0.1.1'], routeMtu: 1400})
    assert.equal(runner.records.length, 4)
    const [create, sysctl, pod, read] = runner.records
    assert.deepEqual(create.argv, ['ip', '-batch', '-'])
    const lines = create.input!.trimEnd().split('\n')
    assert.match(lines[0], new RegExp(`^link add name ${host} address ${MAC} mtu 1450 txqueuelen 1000 type veth peer name eth0 address ${MAC} mtu 1450 netns ${NETNS}$`))
    assert.equal(lines[1], `link set dev ${host} up`)
    assert.equal(lines.length, 2)
    // the sysctl is written in process, through the runner (recorded as `tee`), not by a sysctl process
    assert.deepEqual(sysctl.argv, ['tee', `/proc/sys/net/ipv4/conf/${host}/rp_filter`])
    assert.equal(sysctl.input!.trim(), '0')
    assert.deepEqual(pod.argv, ['nsenter', `--net=${NETNS}`, '--', 'ip', '-batch', '-'])
    assert.deepEqual(pod.input!.trimEnd().split('\n'), [
      'link set dev eth0 up',
      'addr add 10.0.1.23/32 dev eth0',
      'route add 10.0.1.1/32 dev eth0 scope link',
      'route add default via 10.0.1.1 dev eth0 mtu 1400',
    ])
    assert.deepEqual(read.argv, ['ip', '-j', '-d', 'link', 'show', 'dev', host])
    assert.equal(r.hostIfindex, 7)
    assert.equal(r.podIfindex, 2)
    assert.deepEqual(r.addresses, ['10.0.1.23/32'])
    assert.deepEqual(r.routes, [{dst: '10.0.1.1/32', scope: 'link'}, {dst: '0.0.0.0/0', gw: '10.0.1.1', mtu: 1400}])
    assert.notEqual(r.hostMac, r.podMac)
    assert.match(r.hostMac, /^[0-9a-f][26ae]:/) // locally administered unicast
  })

  it('adds host routes in host-routes mode, in the same batch as the pair', async () => {
    const host = hostIfnameFor('pod1', 'eth0')
    const runner = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    const r = await setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23'], routerIps: ['10.0.1.1'], hostRoutes: true})
    assert.equal(runner.records[0].input!.trimEnd().split('\n')[2], `route replace 10.0.1.23/32 dev ${host} scope link`)
    assert.deepEqual(r.hostRoutes, ['10.0.1.23/32'])
  })

  it('host-routes mode, IPv6: proxy NDP for the router and a permanent neighbour for the pod on the lxc', async () => {
    const host = hostIfnameFor('pod1', 'eth0')
    const runner = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    const r = await setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23', 'fd00:0:1::17'],
      routerIps: ['10.0.1.1', 'fd00:0:1::1'], hostRoutes: true})
    const lines = runner.records[0].input!.trimEnd().split('\n')
    assert.ok(lines.includes(`route replace fd00:0:1::17/128 dev ${host} scope link`), lines.join('\n'))
    assert.ok(lines.includes(`neigh add proxy fd00:0:1::1 dev ${host}`), lines.join('\n'))
    assert.ok(lines.includes(`neigh replace fd00:0:1::17 lladdr ${r.podMac} dev ${host} nud permanent`), lines.join('\n'))
    const written = new Map(runner.records.filter((x) => x.argv[0] === 'tee').map((x) => [x.argv[1], x.input!.trim()]))
    assert.equal(written.get(`/proc/sys/net/ipv6/conf/${host}/proxy_ndp`), '1', [...written.keys()].join(' '))
    assert.equal(written.get(`/proc/sys/net/ipv6/neigh/${host}/proxy_delay`), '0', [...written.keys()].join(' '))
    // IPv4 only, or routing bpf: none of it.
    const v4 = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    await setupVeth(v4, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23'], routerIps: ['10.0.1.1', 'fd00:0:1::1'], hostRoutes: true})
    assert.doesNotMatch(v4.records[0].input!, /neigh/)
    const bpf = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    await setupVeth(bpf, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['fd00:0:1::17'], routerIps: ['fd00:0:1::1']})
    assert.doesNotMatch(bpf.records[0].input!, /neigh/)
  })

  it('dual stack: /128 without DAD and ::/0 via the IPv6 router', () => {
    const p = podAddressing({ifname: 'eth0', ips: ['10.0.1.23', 'fd00:0:1::17'], routerIps: ['fd00:0:1::1', '10.0.1.1'], mtu: 1500})
    assert.deepEqual(p.addresses, ['10.0.1.23/32', 'fd00:0:1::17/128'])
    const lines = p.ops.map(renderLine)
    assert.ok(lines.includes('addr add fd00:0:1::17/128 dev eth0 nodad'))
    assert.ok(lines.includes('route add fd00:0:1::1/128 dev eth0 scope link'))
    assert.ok(lines.includes('route add ::/0 via fd00:0:1::1 dev eth0 mtu 1500'))
  })

  it('without --ip only the link is made (no pod batch)', async () => {
    const host = hostIfnameFor('pod1', 'eth0')
    const runner = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: linkJson(host, 7, 2)} : undefined))
    const r = await setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500})
    assert.equal(runner.ran('nsenter'), false)
    assert.deepEqual(r.addresses, [])
  })

  it('removes the pair when configuring the pod side fails; the error names the failing op, found from the kernel state in JSON', async () => {
    // The pod batch stops at the default route; the probes that follow show what took effect.
    const podState: Record<string, string> = {
      'ip -j -d link show': JSON.stringify([{ifindex: 2, ifname: 'eth0', mtu: 1500, address: '02:00:00:00:00:02', flags: ['BROADCAST', 'UP']}]),
      'ip -j addr show dev eth0': JSON.stringify([{ifname: 'eth0', addr_info: [{local: '10.0.1.23', prefixlen: 32}]}]),
      'ip -4 -j route show exact 10.0.1.1/32': JSON.stringify([{dst: '10.0.1.1', dev: 'eth0', scope: 'link'}]),
      'ip -4 -j route show exact 0.0.0.0/0': '[]',
    }
    const runner = new RecordingRunner((argv, opts) => {
      if (!opts.netns) return undefined
      const cmd = argv.slice(argv.indexOf('--') + 1).join(' ')
      if (cmd === 'ip -batch -') return {exitCode: 2, stderr: 'Error: Nexthop has invalid gateway.\nCommand failed -:4'}
      return podState[cmd] === undefined ? {exitCode: 1, stderr: 'unexpected'} : {stdout: podState[cmd]}
    })
    await assert.rejects(
      setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23'], routerIps: ['10.0.1.1']}),
      (e: KernelError) => e.code === 'PN_COMMAND_FAILED' && e.index === 3 && e.op.kind === 'route.add' && e.op.via === '10.0.1.1' &&
        e.extack === 'Nexthop has invalid gateway' && e.message === `add route 0.0.0.0/0 via 10.0.1.1 dev eth0 in ${NETNS}: Nexthop has invalid gateway`,
    )
    const last = runner.records.at(-1)!
    assert.deepEqual(last.argv, ['ip', 'link', 'del', 'dev', hostIfnameFor('pod1', 'eth0')])
  })

  it('reports a host-side name collision as PN_LINK_EXISTS and deletes nothing', async () => {
    const host = hostIfnameFor('pod1', 'eth0')
    const runner = new RecordingRunner((argv) => {
      if (argv.includes('-batch')) return {exitCode: 2, stderr: 'RTNETLINK answers: File exists\nCommand failed -:1'}
      if (argv.includes('-j')) return {stdout: linkJson(host, 7, 2)}
      return undefined
    })
    await assert.rejects(
      setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500}),
      (e: PnError) => e.code === 'PN_LINK_EXISTS' && /host interface already exists/.test(e.message),
    )
    assert.ok(!runner.records.some((r) => r.argv.includes('del')))
  })

  it('the veth-create flow refuses a missing or non-netns path before running anything (one check, at its entry)', async () => {
    const runner = new RecordingRunner()
    const state = mkdtempSync(path.join(tmpdir(), 'pn-veth-'))
    try {
      const opts = {containerId: 'p', ifname: 'eth0', mtu: 1500, routerIps: [], routeMtu: 1500, hostRoutes: false}
      await assert.rejects(connectEndpoint(runner, state, {...opts, netns: '/nonexistent/ns'}), {code: 'PN_NETNS_NOT_FOUND'})
      await assert.rejects(connectEndpoint(runner, state, {...opts, netns: '/etc/hostname'}), {code: 'PN_NETNS_INVALID'})
      assert.equal(runner.records.length, 0)
    } finally {
      rmSync(state, {recursive: true, force: true})
    }
  })

  it('delete is one `ip link del` and succeeds when the link is gone', async () => {
    const runner = new RecordingRunner(() => ({exitCode: 1, stderr: 'Cannot find device "lxc…"'}))
    const r = await deleteVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: '/nonexistent/ns'})
    assert.equal(r.deleted, false)
    assert.deepEqual(runner.records.map((x) => x.argv), [['ip', 'link', 'del', 'dev', hostIfnameFor('pod1', 'eth0')]])
  })
})
