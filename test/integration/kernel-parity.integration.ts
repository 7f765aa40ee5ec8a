/**
 * The tools backend (ip through a spawning Runner) and the native backend (the pn-netlink
 * worker) must leave the same kernel state for the same ops. Each case runs one op list (or a
 * whole flow: setupVeth/deleteVeth of a pod, IPv4 and dual stack with host routes) through
 * each backend, in twin `pn-` namespaces (a "node" netns and a pod netns per backend), then
 * compares what ip shows: links, addresses, routes of every table, permanent and proxy
 * neighbours, the sysctls written. Normalised: ifindexes, peer indexes and netns ids (they
 * differ by construction); nothing else. Queries answer alike (the native results are a subset
 * of the tools backend's ip JSON) and failures are the same KernelError (index, errno, extack,
 * code).
 * A node in routing mode bpf adds what the datapath holds: the tc filters on every device, the
 * pins under the node's bpffs root and the contents of every pn map (decoded; the endpoint map
 * entries go through the tools backend's bpftool batch on one side and the addon's batch syscall
 * on the other), after ADDs, a service apply and a DEL.
 */
import assert from 'node:assert/strict'
import {NETLINK_BINARY} from '../../src/entry/native.js'
import {deleteVeth, hostIfnameFor, setupVeth, type SetupVethOptions} from '../../src/datapath/veth.js'
import {NetlinkWorker} from '../../src/exec/netlink-worker.js'
import {SpawnRunner} from '../../src/exec/runner.js'
import type {ApplyOptions, KernelBackend} from '../../src/kernel/backend.js'
import {KernelError} from '../../src/kernel/errors.js'
import {NativeBackend} from '../../src/kernel/native.js'
import type {KernelOp, KernelResult} from '../../src/kernel/ops.js'
import {ToolsBackend} from '../../src/kernel/tools.js'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs, isRoot} from '../helpers/netns.js'
import {spawnSync} from 'node:child_process'
import {pn} from '../helpers/cli.js'
import {add, cleanupHarness, createNode, del, destroyNode, type CniNode} from './cni-harness.js'

type Json = Record<string, unknown>
const DROP = new Set(['ifindex', 'link_index', 'link_netnsid', 'preferred_life_time', 'valid_life_time'])

function normalise(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(normalise)
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x as Json).filter(([k]) => !DROP.has(k)).map(([k, v]) => [k, normalise(v)]))
  return x
}

/** A backend whose ops run in `netns` unless an op list names another (a flow's "node" netns). */
function within(kernel: KernelBackend, netns: string): KernelBackend {
  return {apply: (ops: readonly KernelOp[], o: ApplyOptions = {}) => kernel.apply(ops, {...o, netns: o.netns ?? netns})}
}

/**
 * Everything ip shows of a netns that the ops touch. Routes and neighbours sorted: routes to one
 * prefix on several devices (fe80::/64, multicast) list in the order the kernel made them, which
 * follows when each device's link-local address came up.
 */
function state(ns: string, sysctls: string[] = []): Json {
  const j = (argv: string[]) => normalise(JSON.parse(inNs(ns, ['ip', '-j', ...argv]) || '[]'))
  const sorted = (argv: string[]) => (j(argv) as unknown[]).map((x) => JSON.stringify(x)).sort().map((x) => JSON.parse(x) as unknown)
  return {
    links: j(['-d', 'link', 'show']),
    addrs: j(['addr', 'show']),
    routes4: sorted(['-4', 'route', 'show', 'table', 'all']),
    routes6: sorted(['-6', 'route', 'show', 'table', 'all']),
    neigh: sorted(['neigh', 'show', 'nud', 'permanent']),
    proxy: sorted(['neigh', 'show', 'proxy']),
    sysctls: sysctls.map((k) => `${k}=${inNs(ns, ['sysctl', '-n', k]).trim()}`),
  }
}

/** IPv6 addresses leave "tentative" (DAD) and link-locals appear on their own: wait for both to settle. */
async function settled(...nss: string[]): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (nss.every((ns) => inNs(ns, ['ip', '-6', 'addr', 'show', 'tentative']).trim() === '')) break
    await new Promise((r) => setTimeout(r, 100))
  }
  // A link's operstate follows its carrier through the kernel's linkwatch, which batches
  // non-urgent events for up to a second.
  await new Promise((r) => setTimeout(r, 1200))
}

/** Random MACs (and the link-local addresses made from them) left out: a case that lets the kernel pick them. */
function withoutMacs(s: Json): Json {
  const text = JSON.stringify(s, (k, v) => ((k === 'address' && typeof v === 'string' && /^[0-9a-f:]{17}$/.test(v)) || k === 'lladdr' ? undefined : v))
  return JSON.parse(text.replace(/fe80::[0-9a-f:]+/g, 'fe80::X')) as Json
}

describe('kernel backends: tools and native leave the same state', function () {
  this.timeout(120_000)
  let worker: NetlinkWorker
  let tools: ToolsBackend
  let native: NativeBackend
  /** Per case: a node netns and a pod netns for each backend. */
  let ns: {tools: {node: string; pod: string}; native: {node: string; pod: string}}
  const path = (n: string) => `/run/netns/${n}`

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
    tools = new ToolsBackend(new SpawnRunner())
    worker = new NetlinkWorker(NETLINK_BINARY)
    native = new NativeBackend(worker, tools)
  })
  beforeEach(() => {
    ns = {tools: {node: createNamespace('kpt').name, pod: createNamespace('kpp').name}, native: {node: createNamespace('kpn').name, pod: createNamespace('kpq').name}}
  })
  afterEach(() => cleanupNamespaces())
  after(() => worker?.stop())

  /** The same op lists (built per side: they name that side's pod netns) through both backends. */
  async function both(lists: (pod: string) => {netns: 'node' | 'pod'; ops: KernelOp[]}[]): Promise<{tools: KernelResult[][]; native: KernelResult[][]}> {
    const out = {tools: [] as KernelResult[][], native: [] as KernelResult[][]}
    for (const side of ['tools', 'native'] as const) {
      const kernel = side === 'tools' ? tools : native
      for (const l of lists(path(ns[side].pod))) out[side].push(await kernel.apply(l.ops, {netns: path(ns[side][l.netns])}))
    }
    return out
  }

  function assertSameState(sysctls: {node?: string[]; pod?: string[]} = {}, randomMacs = false): void {
    const norm = randomMacs ? withoutMacs : (x: Json) => x
    for (const where of ['node', 'pod'] as const) {
      assert.deepEqual(norm(state(ns.native[where], sysctls[where])), norm(state(ns.tools[where], sysctls[where])), `${where} netns differs`)
    }
  }

  it('op lists: veth pairs (peer in another netns and in the same), MTU, up, addresses, routes, neighbours, sysctls, deletes', async () => {
    await both((pod) => [
      {netns: 'node', ops: [
        {kind: 'link.add', type: 'veth', name: 'pn_host', address: '02:00:00:00:0a:01', mtu: 1500, txqueuelen: 1000, peer: {name: 'pn_net', address: '02:00:00:00:0a:02', mtu: 1500}},
        {kind: 'link.set', name: 'pn_host', up: true},
        {kind: 'link.set', name: 'pn_net', up: true, mtu: 1450},
        {kind: 'link.set', name: 'pn_host', mtu: 1450},
        {kind: 'addr.add', dev: 'pn_host', address: '10.1.0.1/32', scope: 'link', replace: true},
        {kind: 'addr.add', dev: 'pn_host', address: 'fd00:1::1/128', scope: 'link', nodad: true, replace: true},
        {kind: 'addr.add', dev: 'pn_host', address: '10.9.0.1/24'},
        {kind: 'addr.del', dev: 'pn_host', address: '10.9.0.1/24'},
        {kind: 'route.add', dst: '10.1.0.0/24', dev: 'pn_host', via: '10.1.0.1', src: '10.1.0.1', replace: true},
        {kind: 'route.add', dst: 'fd00:1::/64', dev: 'pn_host', src: 'fd00:1::1', replace: true},
        {kind: 'link.add', type: 'veth', name: 'lxc1', address: '02:00:00:00:0b:01', mtu: 1450, txqueuelen: 1000, peer: {name: 'eth0', address: '02:00:00:00:0b:02', mtu: 1450, netns: pod}},
        {kind: 'link.set', name: 'lxc1', up: true},
        {kind: 'route.add', dst: '10.1.0.5/32', dev: 'lxc1', scope: 'link', replace: true},
        {kind: 'route.add', dst: 'fd00:1::5/128', dev: 'lxc1', scope: 'link', replace: true},
        {kind: 'neigh.add', dev: 'lxc1', dst: 'fd00:1::1', proxy: true},
        {kind: 'neigh.add', dev: 'lxc1', dst: 'fd00:1::5', lladdr: '02:00:00:00:0b:02', permanent: true, replace: true},
        {kind: 'sysctl.set', key: 'net.ipv4.conf.lxc1.rp_filter', value: '0'},
        {kind: 'sysctl.set', key: 'net.ipv6.conf.lxc1.proxy_ndp', value: '1'},
        {kind: 'link.add', type: 'veth', name: 'pn_tmp0', peer: {name: 'pn_tmp1'}},
        {kind: 'link.set', name: 'pn_tmp0', up: true},
        {kind: 'route.add', dst: '10.7.0.0/16', dev: 'pn_tmp0'},
        {kind: 'route.del', dst: '10.7.0.0/16', dev: 'pn_tmp0'},
        // A cluster route (pn's protocol, the cluster agent's --auto-direct-routes): kept, so both sides' route lists show proto 112.
        {kind: 'route.add', dst: '10.6.0.0/24', dev: 'pn_host', via: '10.1.0.1', replace: true, proto: 'pn'},
        {kind: 'route.del', dst: '10.8.0.0/16', dev: 'pn_tmp0', missingOk: true},
        {kind: 'link.del', name: 'pn_tmp0'},
        {kind: 'link.del', name: 'pn_tmp1', missingOk: true},
      ]},
      {netns: 'pod', ops: [
        {kind: 'link.set', name: 'eth0', up: true},
        {kind: 'addr.add', dev: 'eth0', address: '10.1.0.5/32'},
        {kind: 'addr.add', dev: 'eth0', address: 'fd00:1::5/128', nodad: true},
        {kind: 'route.add', dst: '10.1.0.1/32', dev: 'eth0', scope: 'link'},
        {kind: 'route.add', dst: 'fd00:1::1/128', dev: 'eth0', scope: 'link'},
        {kind: 'route.add', dst: '0.0.0.0/0', via: '10.1.0.1', dev: 'eth0', mtu: 1400},
        {kind: 'route.add', dst: '::/0', via: 'fd00:1::1', dev: 'eth0', mtu: 1400},
        {kind: 'neigh.add', dev: 'eth0', dst: '10.1.0.1', lladdr: '02:00:00:00:0b:01', permanent: true},
        {kind: 'sysctl.set', key: 'net.ipv4.conf.eth0.rp_filter', value: '0'},
      ]},
    ])
    await settled(ns.tools.node, ns.tools.pod, ns.native.node, ns.native.pod)
    assertSameState({node: ['net.ipv4.conf.lxc1.rp_filter', 'net.ipv6.conf.lxc1.proxy_ndp'], pod: ['net.ipv4.conf.eth0.rp_filter']})
  })

  it('a VXLAN device (tunnel mode\'s pn_vxlan): collect metadata, port 8472, learning off, MTU, up — the same through either backend', async () => {
    await both(() => [
      {netns: 'node', ops: [
        {kind: 'link.add', type: 'vxlan', name: 'pn_vxlan', address: '02:00:00:00:0d:01', mtu: 1450, dstport: 8472},
        {kind: 'link.set', name: 'pn_vxlan', up: true},
        {kind: 'sysctl.set', key: 'net.ipv4.conf.pn_vxlan.rp_filter', value: '0'},
      ]},
    ])
    await settled(ns.tools.node, ns.native.node)
    assertSameState({node: ['net.ipv4.conf.pn_vxlan.rp_filter']})
    const vx = (JSON.parse(inNs(ns.native.node, ['ip', '-j', '-d', 'link', 'show', 'pn_vxlan'])) as {linkinfo: {info_kind: string; info_data: Json}}[])[0]
    assert.equal(vx.linkinfo.info_kind, 'vxlan')
    assert.deepEqual([vx.linkinfo.info_data.external, vx.linkinfo.info_data.port, vx.linkinfo.info_data.learning], [true, 8472, false])
  })

  it('queries answer alike: every field of a native result is the tools backend\'s (ip\'s) value', async () => {
    const node = path(ns.native.node)
    await native.apply([
      {kind: 'link.add', type: 'veth', name: 'lxc2', mtu: 1450, peer: {name: 'eth0', netns: path(ns.native.pod)}},
      {kind: 'link.add', type: 'veth', name: 'pn_a', peer: {name: 'pn_b'}},
      {kind: 'link.set', name: 'lxc2', up: true},
      {kind: 'addr.add', dev: 'pn_a', address: '10.2.0.1/24'},
      {kind: 'addr.add', dev: 'pn_a', address: 'fd00:2::1/64', nodad: true},
      {kind: 'link.set', name: 'pn_a', up: true},
      {kind: 'route.add', dst: '10.3.0.0/16', via: '10.2.0.9', dev: 'pn_a'},
      {kind: 'route.add', dst: '10.2.0.7/32', dev: 'lxc2', scope: 'link'},
    ], {netns: node})
    await settled(ns.native.node)
    const queries: KernelOp[] = [
      {kind: 'link.get', name: 'lxc2'}, {kind: 'link.get', name: 'pn_a'}, {kind: 'link.get', name: 'pn_none'}, {kind: 'link.list'},
      {kind: 'addr.list', dev: 'pn_a'}, {kind: 'addr.list'}, {kind: 'addr.list', dev: 'pn_none'},
      {kind: 'route.list', family: 4}, {kind: 'route.list', family: 4, table: 'all'}, {kind: 'route.list', family: 6, table: 'all'}, {kind: 'route.list', family: 4, exact: '10.3.0.0/16'},
    ]
    const [mine, theirs] = [await native.apply(queries, {netns: node}), await tools.apply(queries, {netns: node})]
    const subset = (a: unknown, b: unknown, where: string): void => {
      if (Array.isArray(a)) {
        assert.ok(Array.isArray(b) && a.length === b.length, `${where}: length`)
        a.forEach((x, i) => subset(x, (b as unknown[])[i], `${where}[${i}]`))
      } else if (a && typeof a === 'object') for (const [k, v] of Object.entries(a as Json)) subset(v, (b as Json)?.[k], `${where}.${k}`)
      else assert.deepEqual(a, b, where)
    }
    queries.forEach((q, i) => subset(mine[i], theirs[i], `${q.kind} #${i}`))
  })

  it('failures are the same KernelError: index, errno, pn code', async () => {
    const setup: KernelOp[] = [{kind: 'link.add', type: 'veth', name: 'pn_x', peer: {name: 'pn_y'}}]
    const failing: KernelOp[][] = [
      [{kind: 'link.set', name: 'pn_x', up: true}, {kind: 'link.add', type: 'veth', name: 'pn_x', address: '02:00:00:00:0c:01', peer: {name: 'pn_z'}}, {kind: 'link.set', name: 'pn_y', up: true}],
      [{kind: 'link.set', name: 'pn_x', up: true}, {kind: 'addr.add', dev: 'pn_none', address: '10.4.0.1/32'}],
      [{kind: 'addr.add', dev: 'pn_x', address: '10.4.0.2/32'}, {kind: 'addr.add', dev: 'pn_x', address: '10.4.0.2/32'}],
      [{kind: 'route.del', dst: '10.6.0.0/16', dev: 'pn_x'}],
      [{kind: 'link.del', name: 'pn_none'}],
    ]
    for (const [i, ops] of failing.entries()) {
      const got: Record<string, unknown>[] = []
      for (const side of ['tools', 'native'] as const) {
        const node = path(ns[side].node)
        if (i === 0) await (side === 'tools' ? tools : native).apply(setup, {netns: node})
        await (side === 'tools' ? tools : native).apply(ops, {netns: node}).then(
          () => assert.fail(`${side}: list ${i} did not fail`),
          (e: unknown) => {
            assert.ok(e instanceof KernelError, `${side}: list ${i}: ${String(e)}`)
            got.push({index: e.index, errno: e.errno, extack: e.extack, code: e.code, op: e.op})
          },
        )
      }
      // iproute2 prints the kernel's extended ack or the errno, not both: when it printed the
      // ack, only the native backend knows the errno (the ack is the same).
      if (got[0].errno === undefined && got[0].extack !== undefined) got[1].errno = undefined
      assert.deepEqual(got[1], got[0], `list ${i}: native differs from tools`)
    }
    await settled(ns.tools.node, ns.native.node)
    assertSameState({}, true)
  })

  for (const [title, pod] of [
    ['IPv4', {ips: ['10.1.0.23'], routerIps: ['10.1.0.1']}],
    ['dual stack, host routes (proxy NDP, a permanent neighbour, their sysctls)', {ips: ['10.1.0.24', 'fd00:1::24'], routerIps: ['10.1.0.1', 'fd00:1::1'], hostRoutes: true}],
  ] as const) {
    it(`a whole flow, ${title}: setupVeth then deleteVeth leave the same state through either backend`, async () => {
      const results: Json[] = []
      const host = hostIfnameFor('parity1', 'eth0')
      const sysctls = [`net.ipv4.conf.${host}.rp_filter`, ...('hostRoutes' in pod ? [`net.ipv6.conf.${host}.proxy_ndp`, `net.ipv6.neigh.${host}.proxy_delay`] : [])]
      for (const side of ['tools', 'native'] as const) {
        const kernel = within(side === 'tools' ? tools : native, path(ns[side].node))
        const opts: SetupVethOptions = {containerId: 'parity1', ifname: 'eth0', netns: path(ns[side].pod), mtu: 1450, routeMtu: 1400, ...pod, ips: [...pod.ips], routerIps: [...pod.routerIps]}
        const r = await setupVeth(new SpawnRunner(), opts, kernel)
        results.push({...r, hostMac: undefined, podMac: undefined, hostIfindex: undefined, podIfindex: undefined, netns: undefined})
      }
      assert.deepEqual(results[1], results[0])
      await settled(ns.tools.node, ns.tools.pod, ns.native.node, ns.native.pod)
      // The flow's MACs are random per run: compared without them.
      assertSameState({node: sysctls}, true)
      for (const side of ['tools', 'native'] as const) {
        const kernel = within(side === 'tools' ? tools : native, path(ns[side].node))
        assert.deepEqual(await deleteVeth(new SpawnRunner(), {containerId: 'parity1', ifname: 'eth0', netns: path(ns[side].pod)}, kernel), {deleted: true, hostIfname: host, hostSide: true})
      }
      assertSameState()
    })
  }
})

describe('kernel backends: whole CNI flows with PN_KERNEL=tools and native leave the same state', function () {
  this.timeout(180_000)
  const nodes: Record<'tools' | 'native', CniNode | undefined> = {tools: undefined, native: undefined}
  const pods: Record<'tools' | 'native', string[]> = {tools: [], native: []}

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
  })
  after(() => {
    for (const n of Object.values(nodes)) if (n) destroyNode(n)
    for (const p of [...pods.tools, ...pods.native]) deleteNamespace(p)
    cleanupHarness()
  })

  it('node init, then ADD of two dual-stack pods and DEL of one: the nodes and pods look the same', async () => {
    const traces: Record<string, string> = {}
    const podIps = {tools: new Map<string, string>(), native: new Map<string, string>()}
    for (const side of ['tools', 'native'] as const) {
      const node = (nodes[side] = createNode({kind: 'pn-client', podCidr: '10.61.0.0/24', podCidr6: 'fd00:61::/64', tag: side === 'tools' ? 'kft' : 'kfn'}))
      const env = {PN_TRACE_EXEC: '1', ...(side === 'tools' ? {PN_KERNEL: 'tools'} : {})}
      for (const cid of ['parityA', 'parityB']) {
        const pod = createNamespace(side === 'tools' ? 'kfp' : 'kfq').name
        pods[side].push(pod)
        const r = add(node, '1.0.0', cid, pod, {extraEnv: env})
        assert.equal(r.status, 0, `${side} ADD ${cid}: ${r.stdout} ${r.stderr}`)
        traces[side] = (traces[side] ?? '') + r.stderr
        for (const ip of (r.json.ips as {address: string}[]).map((x) => x.address.split('/')[0])) podIps[side].set(ip, `${cid}-ipv${ip.includes(':') ? 6 : 4}`)
      }
    }
    // Each side ran as asked: the native one applied its veth through the worker, the tools one through ip.
    assert.match(traces.native, /netlink: create veth lxc/)
    assert.doesNotMatch(traces.native, /exec: .*\bip -batch/)
    assert.match(traces.tools, /exec: .*\bip -batch/)
    assert.doesNotMatch(traces.tools, /netlink: /)
    await settled(nodes.tools!.ns, nodes.native!.ns, ...pods.tools, ...pods.native)
    // The pod IPs are picked per node (the node names differ): each side's are named by pod, and
    // the lists they order (routes, neighbours) are sorted after that.
    const named = (side: 'tools' | 'native', ns: string) => {
      let text = JSON.stringify(withoutMacs(state(ns)))
      for (const [ip, name] of podIps[side]) text = text.replace(new RegExp(`(?<![0-9a-f:.])${ip.replaceAll('.', '\\.')}(?![0-9a-f:.])`, 'g'), name)
      const st = JSON.parse(text) as Record<string, unknown[]>
      for (const k of ['routes4', 'routes6', 'neigh', 'proxy']) st[k] = st[k].map((x) => JSON.stringify(x)).sort()
      return st
    }
    const compare = (when: string) => {
      assert.deepEqual(named('native', nodes.native!.ns), named('tools', nodes.tools!.ns), `node netns differs ${when}`)
      for (const i of [0, 1]) assert.deepEqual(named('native', pods.native[i]), named('tools', pods.tools[i]), `pod ${i} differs ${when}`)
    }
    compare('after ADD')
    for (const side of ['tools', 'native'] as const) {
      const r = del(nodes[side]!, '1.0.0', 'parityA', `/run/netns/${pods[side][0]}`, {extraEnv: side === 'tools' ? {PN_KERNEL: 'tools'} : {}})
      assert.equal(r.status, 0, `${side} DEL: ${r.stdout} ${r.stderr}`)
    }
    await settled(nodes.tools!.ns, nodes.native!.ns)
    compare('after DEL')
  })
})

describe('kernel backends: a bpf node (tc hooks, pins, maps, a service apply) through each backend', function () {
  this.timeout(180_000)
  const nodes: Record<'tools' | 'native', CniNode | undefined> = {tools: undefined, native: undefined}
  const pods: Record<'tools' | 'native', string[]> = {tools: [], native: []}
  const MAPS = ['pn_endpoints', 'pn_lxc', 'pn_ipcache', 'pn_lb4_services', 'pn_lb4_backends']

  before(function () {
    assert.ok(isRoot(), 'integration tests run as root (CI runs them as root with netns + eBPF)')
  })
  after(() => {
    for (const n of Object.values(nodes)) if (n) destroyNode(n)
    for (const p of [...pods.tools, ...pods.native]) deleteNamespace(p)
    cleanupHarness()
  })

  /** ifindexes, MACs, program ids and netns ids differ by construction; the pod IPs are named by pod. */
  function datapath(side: 'tools' | 'native', ips: Map<string, string>): Json {
    const node = nodes[side]!
    const devs = (JSON.parse(inNs(node.ns, ['ip', '-j', 'link', 'show'])) as {ifname: string}[]).map((l) => l.ifname).sort()
    const filters = Object.fromEntries(devs.flatMap((d) => (['ingress', 'egress'] as const).map((dir) => [`${d} ${dir}`, JSON.parse(inNs(node.ns, ['tc', '-j', 'filter', 'show', 'dev', d, dir]) || '[]') as unknown])))
    const pins = spawnSync('find', [node.bpffsRoot, '-mindepth', '1'], {encoding: 'utf8'}).stdout.split('\n').filter(Boolean).map((p) => p.slice(node.bpffsRoot.length)).sort()
    const maps = Object.fromEntries(MAPS.map((m) => {
      const r = pn(['bpf', 'map', 'dump', m, '--state-dir', node.stateDir, '--json'], {netns: node.ns})
      assert.equal(r.status, 0, `${side} map dump ${m}: ${r.stdout} ${r.stderr}`)
      return [m, (r.json as {result: {entries: unknown[]}}).result.entries]
    }))
    let text = JSON.stringify({filters, pins, maps}, (k, v) => (/ifindex|^id$|^link_netnsid$/i.test(k) || (typeof v === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(v)) ? undefined : v))
    for (const [ip, name] of ips) text = text.replace(new RegExp(`(?<![0-9a-f:.])${ip.replaceAll('.', '\\.')}(?![0-9a-f:.])`, 'g'), name)
    const out = JSON.parse(text) as Json
    const maps2 = out.maps as Record<string, unknown[]>
    for (const m of MAPS) maps2[m] = maps2[m].map((e) => JSON.stringify(e)).sort()
    return out
  }

  it('node init, ADD of two pods, a service over them, DEL of one: filters, pins and map contents are the same', async () => {
    const ips = {tools: new Map<string, string>(), native: new Map<string, string>()}
    for (const side of ['tools', 'native'] as const) {
      const node = (nodes[side] = createNode({kind: 'pn-client', routing: 'bpf', podCidr: '10.62.0.0/24', tag: side === 'tools' ? 'kbt' : 'kbn'}))
      const env: Record<string, string> = side === 'tools' ? {PN_KERNEL: 'tools'} : {}
      const backends: string[] = []
      let trace = ''
      for (const cid of ['bpfparA', 'bpfparB']) {
        const pod = createNamespace(side === 'tools' ? 'kbp' : 'kbq').name
        pods[side].push(pod)
        const r = add(node, '1.0.0', cid, pod, {extraEnv: {...env, PN_TRACE_EXEC: '1'}})
        assert.equal(r.status, 0, `${side} ADD ${cid}: ${r.stdout} ${r.stderr}`)
        trace += r.stderr
        const ip = (r.json.ips as {address: string}[])[0].address.split('/')[0]
        ips[side].set(ip, cid)
        backends.push(`${ip}:8080`)
      }
      // Each side ran as asked: tc and bpftool processes for the tools, none for the native side.
      if (side === 'tools') assert.match(trace, /exec: .*\btc -batch -[\s\S]*exec: .*\bbpftool -j batch file -|exec: .*\bbpftool -j batch file -[\s\S]*exec: .*\btc -batch -/)
      else assert.doesNotMatch(trace, /exec: .*\b(tc|bpftool|ip) /)
      const svc = pn(['service', 'apply', '-', '--state-dir', node.stateDir, '--json'], {netns: node.ns, input: JSON.stringify([{frontend: '10.96.62.10:80/tcp', backends}]), env})
      assert.equal(svc.status, 0, `${side} service apply: ${svc.stdout} ${svc.stderr}`)
    }
    const after = (when: string) => assert.deepEqual(datapath('native', ips.native), datapath('tools', ips.tools), `the datapath differs ${when}`)
    after('after ADD and the service apply')
    const add0 = datapath('native', ips.native) as {maps: Record<string, string[]>; filters: Record<string, unknown[]>}
    assert.equal(add0.maps.pn_endpoints.length >= 2, true, 'both pods are in pn_endpoints')
    assert.ok(Object.entries(add0.filters).some(([k, v]) => k.startsWith('lxc') && v.length > 0), 'a pod device carries a filter')
    for (const side of ['tools', 'native'] as const) {
      const r = del(nodes[side]!, '1.0.0', 'bpfparA', `/run/netns/${pods[side][0]}`, {extraEnv: side === 'tools' ? {PN_KERNEL: 'tools'} : {}})
      assert.equal(r.status, 0, `${side} DEL: ${r.stdout} ${r.stderr}`)
    }
    after('after DEL')
  })
})
