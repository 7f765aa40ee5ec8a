import assert from 'node:assert/strict'
import {RecordingRunner} from '../../src/exec/runner.js'
import {PnError} from '../../src/errors.js'
import {deleteVeth, hostIfnameFor, setupVeth} from '../../src/datapath/veth.js'
import {RecordingBackend, applyOne} from '../../src/kernel/backend.js'
import {KernelError, pnCode} from '../../src/kernel/errors.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {ToolsBackend, renderArgv, renderLine, toolError} from '../../src/kernel/tools.js'

const NETNS = '/proc/self/ns/net'
const HOST = hostIfnameFor('pod1', 'eth0')

/** A backend that answers link.get for the host side like the kernel would after the create. */
function recorder(): RecordingBackend {
  return new RecordingBackend((op) =>
    op.kind === 'link.get' && op.name === HOST ? {kind: 'link.get', link: {ifindex: 7, ifname: HOST, mtu: 1500, address: '02:00:00:00:00:01', link_index: 2}} : undefined,
  )
}

/** The applied ops with the random MACs replaced by their role, so the sequence is a fixed golden. */
function golden(b: RecordingBackend, macs: Record<string, string>): unknown[] {
  const named = JSON.stringify(b.applied, (_k, v) => (typeof v === 'string' && macs[v] ? macs[v] : v))
  return JSON.parse(named) as unknown[]
}

describe('kernel ops (golden op sequences of the veth connector)', () => {
  it('setupVeth, IPv4: the pair and its link-up, the sysctl, then the pod side in its netns, then a read of the host side', async () => {
    const b = recorder()
    const r = await setupVeth(new RecordingRunner(), {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1450, ips: ['10.0.1.23'], routerIps: ['10.0.1.1'], routeMtu: 1400}, b)
    assert.deepEqual(golden(b, {[r.hostMac]: 'HOSTMAC', [r.podMac]: 'PODMAC'}), [
      {ops: [
        {kind: 'link.add', type: 'veth', name: HOST, address: 'HOSTMAC', mtu: 1450, txqueuelen: 1000, peer: {name: 'eth0', address: 'PODMAC', mtu: 1450, netns: NETNS}},
        {kind: 'link.set', name: HOST, up: true},
      ]},
      {ops: [{kind: 'sysctl.set', key: `net.ipv4.conf.${HOST}.rp_filter`, value: '0'}]},
      {netns: NETNS, ops: [
        {kind: 'link.set', name: 'eth0', up: true},
        {kind: 'addr.add', dev: 'eth0', address: '10.0.1.23/32'},
        {kind: 'route.add', dst: '10.0.1.1/32', dev: 'eth0', scope: 'link'},
        {kind: 'route.add', dst: '0.0.0.0/0', via: '10.0.1.1', dev: 'eth0', mtu: 1400},
      ]},
      {ops: [{kind: 'link.get', name: HOST}]},
    ])
    assert.equal(r.hostIfindex, 7)
    assert.equal(r.podIfindex, 2)
  })

  it('setupVeth, dual stack: both addresses (IPv6 without DAD), both router routes, then both defaults', async () => {
    const b = recorder()
    await setupVeth(new RecordingRunner(), {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23', 'fd00:0:1::17'], routerIps: ['10.0.1.1', 'fd00:0:1::1']}, b)
    assert.equal(b.applied[0].ops.length, 2, 'no host routes or neighbours in bpf routing')
    assert.deepEqual(b.applied[2], {netns: NETNS, ops: [
      {kind: 'link.set', name: 'eth0', up: true},
      {kind: 'addr.add', dev: 'eth0', address: '10.0.1.23/32'},
      {kind: 'route.add', dst: '10.0.1.1/32', dev: 'eth0', scope: 'link'},
      {kind: 'addr.add', dev: 'eth0', address: 'fd00:0:1::17/128', nodad: true},
      {kind: 'route.add', dst: 'fd00:0:1::1/128', dev: 'eth0', scope: 'link'},
      {kind: 'route.add', dst: '0.0.0.0/0', via: '10.0.1.1', dev: 'eth0', mtu: 1500},
      {kind: 'route.add', dst: '::/0', via: 'fd00:0:1::1', dev: 'eth0', mtu: 1500},
    ]})
  })

  it('setupVeth, host-routes dual stack: host routes, proxy NDP for the router and a permanent neighbour in the create batch; proxy sysctls', async () => {
    const b = recorder()
    const r = await setupVeth(new RecordingRunner(), {containerId: 'pod1', ifname: 'eth0', netns: NETNS, mtu: 1500, ips: ['10.0.1.23', 'fd00:0:1::17'],
      routerIps: ['10.0.1.1', 'fd00:0:1::1'], hostRoutes: true}, b)
    const g = golden(b, {[r.hostMac]: 'HOSTMAC', [r.podMac]: 'PODMAC'}) as {ops: KernelOp[]}[]
    assert.deepEqual(g[0].ops.slice(2), [
      {kind: 'route.add', replace: true, dst: '10.0.1.23/32', dev: HOST, scope: 'link'},
      {kind: 'route.add', replace: true, dst: 'fd00:0:1::17/128', dev: HOST, scope: 'link'},
      {kind: 'neigh.add', proxy: true, dst: 'fd00:0:1::1', dev: HOST},
      {kind: 'neigh.add', replace: true, dst: 'fd00:0:1::17', lladdr: 'PODMAC', dev: HOST, permanent: true},
    ])
    assert.deepEqual(g[1].ops, [
      {kind: 'sysctl.set', key: `net.ipv4.conf.${HOST}.rp_filter`, value: '0'},
      {kind: 'sysctl.set', key: `net.ipv6.conf.${HOST}.proxy_ndp`, value: '1'},
      {kind: 'sysctl.set', key: `net.ipv6.neigh.${HOST}.proxy_delay`, value: '0'},
    ])
    assert.deepEqual(r.hostRoutes, ['10.0.1.23/32', 'fd00:0:1::17/128'])
  })

  it('deleteVeth: the host side (missing is fine); when it is gone, a veth left in the pod netns', async () => {
    const gone = new RecordingBackend((op) => (op.kind === 'link.del' ? {kind: 'link.del', deleted: false} : op.kind === 'link.get' ? {kind: 'link.get', link: {ifindex: 2, ifname: 'eth0', mtu: 1500, address: 'x', linkinfo: {info_kind: 'veth'}}} : undefined))
    const r = await deleteVeth(new RecordingRunner(), {containerId: 'pod1', ifname: 'eth0', netns: NETNS}, gone)
    assert.deepEqual(gone.applied, [
      {ops: [{kind: 'link.del', name: HOST, missingOk: true}]},
      {netns: NETNS, ops: [{kind: 'link.get', name: 'eth0'}]},
      {netns: NETNS, ops: [{kind: 'link.del', name: 'eth0', missingOk: true}]},
    ])
    assert.deepEqual(r, {deleted: false, hostIfname: HOST})
    const present = new RecordingBackend()
    assert.deepEqual(await deleteVeth(new RecordingRunner(), {containerId: 'pod1', ifname: 'eth0', netns: NETNS}, present), {deleted: true, hostIfname: HOST, hostSide: true})
    assert.deepEqual(present.applied, [{ops: [{kind: 'link.del', name: HOST, missingOk: true}]}])
  })
})

describe('kernel ops: the tools backend', () => {
  it('renders each change to its ip -batch line and each query to its argv', () => {
    const lines: [KernelOp, string][] = [
      [{kind: 'link.add', type: 'veth', name: 'lxc1', address: '02:00:00:00:00:01', mtu: 1450, txqueuelen: 1000, peer: {name: 'eth0', address: '02:00:00:00:00:02', mtu: 1450, netns: '/run/netns/p'}},
        'link add name lxc1 address 02:00:00:00:00:01 mtu 1450 txqueuelen 1000 type veth peer name eth0 address 02:00:00:00:00:02 mtu 1450 netns /run/netns/p'],
      [{kind: 'link.add', type: 'veth', name: 'pn_host', peer: {name: 'pn_net'}}, 'link add name pn_host type veth peer name pn_net'],
      // Tunnel mode's device (src/datapath/tunnel.ts): collect metadata, Cilium's port, no learning.
      [{kind: 'link.add', type: 'vxlan', name: 'pn_vxlan', address: '02:00:00:00:00:05', mtu: 1450, dstport: 8472},
        'link add name pn_vxlan address 02:00:00:00:00:05 mtu 1450 type vxlan external dstport 8472 nolearning'],
      [{kind: 'link.set', name: 'eth0', up: true}, 'link set dev eth0 up'],
      [{kind: 'link.set', name: 'eth0', up: false}, 'link set dev eth0 down'],
      [{kind: 'addr.add', dev: 'eth0', address: '10.0.1.23/32'}, 'addr add 10.0.1.23/32 dev eth0'],
      [{kind: 'addr.add', dev: 'eth0', address: 'fd00::17/128', nodad: true}, 'addr add fd00::17/128 dev eth0 nodad'],
      [{kind: 'route.add', dst: '10.0.1.1/32', dev: 'eth0', scope: 'link'}, 'route add 10.0.1.1/32 dev eth0 scope link'],
      [{kind: 'route.add', dst: '0.0.0.0/0', via: '10.0.1.1', dev: 'eth0', mtu: 1400}, 'route add default via 10.0.1.1 dev eth0 mtu 1400'],
      [{kind: 'route.add', dst: '::/0', via: 'fd00::1', dev: 'eth0', mtu: 1400}, 'route add ::/0 via fd00::1 dev eth0 mtu 1400'],
      [{kind: 'route.add', replace: true, dst: '10.0.1.23/32', dev: 'lxc1', scope: 'link'}, 'route replace 10.0.1.23/32 dev lxc1 scope link'],
      [{kind: 'route.add', replace: true, dst: '10.2.0.0/24', via: '192.168.1.2', dev: 'eth0', proto: 'pn'}, 'route replace 10.2.0.0/24 via 192.168.1.2 dev eth0 proto 112'],
      [{kind: 'neigh.add', proxy: true, dst: 'fd00::1', dev: 'lxc1'}, 'neigh add proxy fd00::1 dev lxc1'],
      [{kind: 'neigh.add', replace: true, dst: 'fd00::17', lladdr: '02:00:00:00:00:02', dev: 'lxc1', permanent: true}, 'neigh replace fd00::17 lladdr 02:00:00:00:00:02 dev lxc1 nud permanent'],
      // The host devices' forms (src/datapath/host.ts).
      [{kind: 'link.add', type: 'veth', name: 'pn_host', address: '02:00:00:00:00:03', mtu: 1450, txqueuelen: 1000, peer: {name: 'pn_net', address: '02:00:00:00:00:04', mtu: 1450}},
        'link add name pn_host address 02:00:00:00:00:03 mtu 1450 txqueuelen 1000 type veth peer name pn_net address 02:00:00:00:00:04 mtu 1450'],
      [{kind: 'link.set', name: 'pn_net', mtu: 1400}, 'link set dev pn_net mtu 1400'],
      [{kind: 'addr.add', replace: true, address: '10.0.1.1/32', dev: 'pn_host', scope: 'link'}, 'addr replace 10.0.1.1/32 dev pn_host scope link'],
      [{kind: 'addr.add', replace: true, address: 'fd00:1::1/128', dev: 'pn_host', scope: 'link', nodad: true}, 'addr replace fd00:1::1/128 dev pn_host scope link nodad'],
      [{kind: 'addr.del', address: '10.0.1.1/32', dev: 'pn_host'}, 'addr del 10.0.1.1/32 dev pn_host'],
      [{kind: 'route.add', replace: true, dst: '10.0.1.0/24', via: '10.0.1.1', dev: 'pn_host', src: '10.0.1.1'}, 'route replace 10.0.1.0/24 via 10.0.1.1 dev pn_host src 10.0.1.1'],
      [{kind: 'route.add', replace: true, dst: 'fd00:1::/64', dev: 'pn_host', src: 'fd00:1::1'}, 'route replace fd00:1::/64 dev pn_host src fd00:1::1'],
      [{kind: 'route.del', dst: '10.0.1.0/24', dev: 'pn_host'}, 'route del 10.0.1.0/24 dev pn_host'],
    ]
    for (const [op, line] of lines) assert.equal(renderLine(op), line)
    assert.deepEqual(renderArgv({kind: 'link.get', name: 'lxc1'}), {file: 'ip', args: ['-j', '-d', 'link', 'show', 'dev', 'lxc1']})
    assert.deepEqual(renderArgv({kind: 'link.list'}), {file: 'ip', args: ['-j', '-d', 'link', 'show']})
    assert.deepEqual(renderArgv({kind: 'link.del', name: 'lxc1'}), {file: 'ip', args: ['link', 'del', 'dev', 'lxc1']})
    assert.deepEqual(renderArgv({kind: 'addr.list', dev: 'pn_host'}), {file: 'ip', args: ['-j', 'addr', 'show', 'dev', 'pn_host']})
    assert.deepEqual(renderArgv({kind: 'addr.list'}), {file: 'ip', args: ['-j', 'addr', 'show']})
    assert.deepEqual(renderArgv({kind: 'route.list', family: 6, table: 'all'}), {file: 'ip', args: ['-6', '-j', 'route', 'show', 'table', 'all']})
    assert.deepEqual(renderArgv({kind: 'route.list', family: 4, exact: '10.0.1.0/24'}), {file: 'ip', args: ['-4', '-j', 'route', 'show', 'exact', '10.0.1.0/24']})
    assert.throws(() => renderLine({kind: 'link.get', name: 'x'}))
  })

  it('runs consecutive changes as one ip -batch per netns, sysctls through /proc/sys, queries and deletes as one command each', async () => {
    const runner = new RecordingRunner((argv) => (argv.includes('-j') ? {stdout: '[{"ifindex":3,"ifname":"a","mtu":1500,"address":"x"}]'} : undefined))
    const results = await new ToolsBackend(runner).apply([
      {kind: 'link.set', name: 'a', up: true},
      {kind: 'addr.add', dev: 'a', address: '10.0.0.1/32'},
      {kind: 'sysctl.set', key: 'net.ipv4.conf.a/1.rp_filter', value: '0'},
      {kind: 'link.get', name: 'a'},
      {kind: 'link.del', name: 'b'},
    ])
    assert.deepEqual(runner.records, [
      {argv: ['ip', '-batch', '-'], input: 'link set dev a up\naddr add 10.0.0.1/32 dev a\n'},
      {argv: ['tee', '/proc/sys/net/ipv4/conf/a.1/rp_filter'], input: '0\n'},
      {argv: ['ip', '-j', '-d', 'link', 'show', 'dev', 'a']},
      {argv: ['ip', 'link', 'del', 'dev', 'b']},
    ])
    assert.deepEqual(results.map((r) => r.kind), ['link.set', 'addr.add', 'sysctl.set', 'link.get', 'link.del'])
    assert.equal((results[3] as {link?: {ifindex: number}}).link?.ifindex, 3)
    const inNs = new RecordingRunner()
    await new ToolsBackend(inNs).apply([{kind: 'sysctl.set', key: 'net.ipv4.ip_forward', value: '1'}, {kind: 'sysctl.set', key: 'net.ipv6.conf.all.forwarding', value: '1'}], {netns: NETNS})
    assert.deepEqual(inNs.records.map((r) => r.argv), [['nsenter', `--net=${NETNS}`, '--', 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']])
  })

  it('an absent link: link.get answers undefined, link.del {deleted: false} only with missingOk, else ENODEV → PN_LINK_NOT_FOUND', async () => {
    const runner = new RecordingRunner((argv) => ({exitCode: 1, stderr: argv.includes('-j') ? 'Device "lxc1" does not exist.' : 'Cannot find device "lxc1"'}))
    const b = new ToolsBackend(runner)
    assert.equal((await applyOne(b, {kind: 'link.get', name: 'lxc1'})).link, undefined)
    assert.equal((await applyOne(b, {kind: 'link.del', name: 'lxc1', missingOk: true})).deleted, false)
    assert.deepEqual((await applyOne(b, {kind: 'addr.list', dev: 'lxc1'})).links, [])
    await assert.rejects(b.apply([{kind: 'link.get', name: 'x'}, {kind: 'link.del', name: 'lxc1'}]), (e: KernelError) =>
      e instanceof KernelError && e instanceof PnError && e.index === 1 && e.errno === 'ENODEV' && e.code === 'PN_LINK_NOT_FOUND' && e.message === 'delete link lxc1: No such device')
    // Any other failure of a query is an error, not "absent".
    const broken = new RecordingRunner(() => ({exitCode: 1, stderr: 'nsenter: cannot open /x: No such file or directory'}))
    await assert.rejects(applyOne(new ToolsBackend(broken), {kind: 'link.get', name: 'lxc1'}, {netns: '/x'}), (e: KernelError) =>
      e.code === 'PN_COMMAND_FAILED' && e.errno === undefined && /show link lxc1 in \/x: nsenter: cannot open/.test(e.message))
  })

  it('a failed create: the probe finds our name taken by another link (not our MAC) → EEXIST at index 0 → PN_LINK_EXISTS', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv.includes('-batch')) return {exitCode: 2, stderr: 'RTNETLINK answers: File exists\nCommand failed -:1'}
      if (argv.join(' ') === 'ip -j -d link show') return {stdout: '[{"ifindex":9,"ifname":"lxc1","mtu":1500,"address":"02:aa:aa:aa:aa:aa"}]'}
      return undefined
    })
    const ops: KernelOp[] = [
      {kind: 'link.add', type: 'veth', name: 'lxc1', address: '02:00:00:00:00:01', peer: {name: 'eth0', netns: NETNS}},
      {kind: 'link.set', name: 'lxc1', up: true},
    ]
    await assert.rejects(new ToolsBackend(runner).apply(ops), (e: KernelError) =>
      e.index === 0 && e.errno === 'EEXIST' && e.code === 'PN_LINK_EXISTS' && e.message === `create veth lxc1 (peer eth0 in ${NETNS}): File exists`)
    // Only JSON queries after the batch: `ip -j …`.
    assert.ok(runner.records.slice(1).every((r) => r.argv.includes('-j')), JSON.stringify(runner.records))
  })

  it('a failed batch whose first op took effect: the first absent effect is the failing op, an absent device ENODEV', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv.includes('-batch')) return {exitCode: 2, stderr: 'Cannot find device "lxc9"\nCommand failed -:2'}
      if (argv.join(' ') === 'ip -j -d link show') return {stdout: '[{"ifindex":9,"ifname":"lxc1","mtu":1500,"address":"x","flags":["UP"]}]'}
      return undefined
    })
    await assert.rejects(new ToolsBackend(runner).apply([{kind: 'link.set', name: 'lxc1', up: true}, {kind: 'route.add', dst: '10.0.0.5/32', dev: 'lxc9', scope: 'link'}]),
      (e: KernelError) => e.index === 1 && e.errno === 'ENODEV' && e.code === 'PN_LINK_NOT_FOUND')
  })

  it('an add of something already there: the tool says EEXIST, state shows it present → that add is the failing op', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv.includes('-batch')) return {exitCode: 2, stderr: 'RTNETLINK answers: File exists\nCommand failed -:2'}
      if (argv.join(' ') === 'ip -j -d link show') return {stdout: '[{"ifindex":2,"ifname":"eth0","mtu":1500,"address":"x","flags":["UP"]}]'}
      if (argv.join(' ') === 'ip -j addr show dev eth0') return {stdout: '[{"addr_info":[{"local":"10.0.0.5","prefixlen":32}]}]'}
      if (argv.join(' ') === 'ip -4 -j route show exact 10.0.0.1/32') return {stdout: '[]'}
      return undefined
    })
    await assert.rejects(new ToolsBackend(runner).apply([
      {kind: 'link.set', name: 'eth0', up: true},
      {kind: 'addr.add', dev: 'eth0', address: '10.0.0.5/32'},
      {kind: 'route.add', dst: '10.0.0.1/32', dev: 'eth0', scope: 'link'},
    ]), (e: KernelError) => e.index === 1 && e.errno === 'EEXIST' && e.code === 'PN_COMMAND_FAILED' && e.message === 'add address 10.0.0.5/32 on eth0: File exists')
  })

  it('a route add whose prefix is there through another device: EEXIST on that route, not on the address before it', async () => {
    // What `pn veth create` meets when the pod already routes the router IP elsewhere (veth.integration).
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.slice(argv.indexOf('--') + 1).join(' ')
      if (cmd === 'ip -batch -') return {exitCode: 2, stderr: 'RTNETLINK answers: File exists\nCommand failed -:3'}
      if (cmd === 'ip -j -d link show') return {stdout: '[{"ifindex":2,"ifname":"eth0","mtu":1500,"address":"x","flags":["UP"]},{"ifindex":3,"ifname":"d0","mtu":1500,"address":"y"}]'}
      if (cmd === 'ip -j addr show dev eth0') return {stdout: '[{"addr_info":[{"local":"10.63.1.60","prefixlen":32}]}]'}
      if (cmd === 'ip -4 -j route show exact 10.63.1.1/32') return {stdout: '[{"dst":"10.63.1.1","dev":"d0","scope":"link"}]'}
      return {stdout: '[]'}
    })
    await assert.rejects(new ToolsBackend(runner).apply([
      {kind: 'link.set', name: 'eth0', up: true},
      {kind: 'addr.add', dev: 'eth0', address: '10.63.1.60/32'},
      {kind: 'route.add', dst: '10.63.1.1/32', dev: 'eth0', scope: 'link'},
      {kind: 'route.add', dst: '0.0.0.0/0', via: '10.63.1.1', dev: 'eth0'},
    ], {netns: NETNS}), (e: KernelError) => e.index === 2 && e.errno === 'EEXIST' && e.code === 'PN_COMMAND_FAILED' &&
      e.message === `add route 10.63.1.1/32 dev eth0 in ${NETNS}: File exists`)
  })

  it('a route.del that may find nothing runs alone (`ip route del`) and takes ESRCH as done; in a batch it is a line', async () => {
    const runner = new RecordingRunner((argv) => (argv[1] === 'route' ? {exitCode: 2, stderr: 'RTNETLINK answers: No such process'} : undefined))
    const b = new ToolsBackend(runner)
    assert.deepEqual(await b.apply([{kind: 'route.del', dst: '10.0.1.0/24', dev: 'pn_host', missingOk: true}]), [{kind: 'route.del'}])
    assert.deepEqual(await b.apply([{kind: 'route.del', dst: '10.0.1.0/24', dev: 'pn_host', missingOk: true}, {kind: 'link.del', name: 'x'}]),
      [{kind: 'route.del'}, {kind: 'link.del', deleted: true}])
    assert.deepEqual(runner.records.map((r) => r.argv), [
      ['ip', 'route', 'del', '10.0.1.0/24', 'dev', 'pn_host'],
      ['ip', 'route', 'del', '10.0.1.0/24', 'dev', 'pn_host'],
      ['ip', 'link', 'del', 'dev', 'x'],
    ])
    const batch = new RecordingRunner()
    await new ToolsBackend(batch).apply([{kind: 'route.del', dst: '10.0.1.0/24', dev: 'pn_host'}, {kind: 'addr.del', address: '10.0.1.1/32', dev: 'pn_host'}])
    assert.deepEqual(batch.records, [{argv: ['ip', '-batch', '-'], input: 'route del 10.0.1.0/24 dev pn_host\naddr del 10.0.1.1/32 dev pn_host\n'}])
  })

  it('a delete of a route that is already gone, in a batch: the tool says ESRCH, state shows it gone → that delete is the failing op', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv.includes('-batch')) return {exitCode: 2, stderr: 'RTNETLINK answers: No such process\nCommand failed -:1'}
      if (argv.join(' ') === 'ip -j -d link show') return {stdout: '[{"ifindex":4,"ifname":"pn_host","mtu":1500,"address":"x","flags":["UP"]}]'}
      if (argv.join(' ') === 'ip -j addr show dev pn_host') return {stdout: '[{"addr_info":[{"local":"10.0.1.1","prefixlen":32}]}]'}
      return {stdout: '[]'}
    })
    await assert.rejects(new ToolsBackend(runner).apply([
      {kind: 'route.del', dst: '10.0.9.0/24', dev: 'pn_host'},
      {kind: 'addr.del', address: '10.0.1.1/32', dev: 'pn_host'},
    ]), (e: KernelError) => e.index === 0 && e.errno === 'ESRCH' && e.message === 'delete route 10.0.9.0/24 dev pn_host: No such process')
  })

  it('an interrupted request starts nothing more', async () => {
    const runner = new RecordingRunner()
    const ac = new AbortController()
    ac.abort('SIGINT')
    await assert.rejects(new ToolsBackend(runner).apply([{kind: 'link.set', name: 'a', up: true}], {signal: ac.signal}), {code: 'PN_INTERRUPTED'})
    assert.equal(runner.records.length, 0)
  })

  it('errors: iproute2 error text → errno and extack (the one reader); errno → pn code (the one mapping)', () => {
    assert.deepEqual(toolError('RTNETLINK answers: File exists\nCommand failed -:1'), {errno: 'EEXIST', extack: undefined, text: 'RTNETLINK answers: File exists'})
    assert.deepEqual(toolError('Error: Nexthop has invalid gateway.\nCommand failed -:3'), {errno: undefined, extack: 'Nexthop has invalid gateway', text: 'Error: Nexthop has invalid gateway.'})
    assert.equal(toolError('Cannot find device "x"').errno, 'ENODEV')
    assert.equal(toolError('RTNETLINK answers: Operation not permitted').errno, 'EPERM')
    const add: KernelOp = {kind: 'link.add', type: 'veth', name: 'a', peer: {name: 'b'}}
    assert.equal(pnCode(add, 'EEXIST'), 'PN_LINK_EXISTS')
    assert.equal(pnCode({kind: 'route.add', dst: '10.0.0.0/8', dev: 'a'}, 'EEXIST'), 'PN_COMMAND_FAILED')
    assert.equal(pnCode({kind: 'link.del', name: 'a'}, 'ENODEV'), 'PN_LINK_NOT_FOUND')
    assert.equal(pnCode({kind: 'sysctl.set', key: 'net.ipv4.conf.a.rp_filter', value: '0'}, 'ENOENT'), 'PN_LINK_NOT_FOUND')
    assert.equal(pnCode(add, 'EPERM'), 'PN_NOT_ROOT')
    assert.equal(pnCode(add, undefined), 'PN_COMMAND_FAILED')
  })
})
