/** Convergence (src/cluster/converge.ts): the cluster's nodes and endpoints → a node's kernel ops, only the differences. */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {openClusterStore} from '../../src/cluster/store.js'
import {appliedFromKernel, convergeNode, serviceTableToApply, type ConvergeSelf, type DesiredCluster, type NodeApplied} from '../../src/cluster/converge.js'
import {ClusterKeys, encodeShard, servicesDigest, shardOf, type ClusterEndpoint, type ClusterNode} from '../../src/cluster/layout.js'
import {ClusterState} from '../../src/cluster/state.js'
import {parseService} from '../../src/service/model.js'
import {decodeIpcacheInfo, decodeIpcacheKey, encodeIpcacheInfo, encodeIpcacheKey, IPCACHE_F_LOCAL} from '../../src/datapath/bpf/maps/ipcache.js'
import {RecordingBackend} from '../../src/kernel/backend.js'
import type {KernelOp} from '../../src/kernel/ops.js'

const MAP = '/sys/fs/bpf/pn/maps/pn_ipcache'
const self: ConvergeSelf = {name: 'n1', uplink: 'eth0', bpffsRoot: '/sys/fs/bpf/pn', autoDirectRoutes: true, podCidrs: ['10.1.1.0/24']}

const n = (name: string, ips: string[], cidrs: string[], reach: ClusterNode['reach'] = 'direct'): ClusterNode => ({name, nodeIps: ips, podCidrs: cidrs, reach, registeredAt: '2026-01-01T00:00:00Z'})
const e = (ip: string, node: string, identity: number | null = null): ClusterEndpoint => ({ip, node, containerId: `c-${ip}`, labels: {}, identity})

function cluster(nodes: ClusterNode[], endpoints: ClusterEndpoint[]): DesiredCluster {
  return {nodes: new Map(nodes.map((x) => [x.name, x])), endpoints: new Map(endpoints.map((x) => [x.ip, x]))}
}

const empty: NodeApplied = {ipcache: [], routes: []}

/** Ops in words, with the map entries decoded (what a reader of a golden test wants to see). */
function words(ops: KernelOp[]): string[] {
  return ops.map((op) => {
    switch (op.kind) {
      case 'map.update': {
        assert.equal(op.map, MAP)
        const v = decodeIpcacheInfo(op.value)
        return `ipcache ${decodeIpcacheKey(op.key).prefix} = id ${v.identity} flags ${v.flags} node ${v.nodeIp ?? '-'}`
      }
      case 'map.delete':
        assert.equal(op.missingOk, true)
        return `ipcache delete ${decodeIpcacheKey(op.key).prefix}`
      case 'route.add':
        assert.equal(op.replace, true)
        assert.equal(op.proto, 'pn', 'pn marks the routes it manages with its route protocol')
        return `route ${op.dst} via ${op.via} dev ${op.dev}`
      case 'route.del':
        assert.equal(op.missingOk, true)
        return `route delete ${op.dst} dev ${op.dev}`
      default:
        return `unexpected ${op.kind}`
    }
  })
}

/** Apply a plan through a RecordingBackend, as an agent would, and return what it recorded. */
async function run(c: DesiredCluster, applied: NodeApplied, me = self) {
  const plan = convergeNode(c, applied, me)
  const backend = new RecordingBackend()
  if (plan.ops.length > 0) await backend.apply(plan.ops)
  return {plan, recorded: backend.applied.flatMap((b) => b.ops)}
}

describe('cluster convergence (pure)', () => {
  const three = [n('n1', ['192.168.1.1'], ['10.1.1.0/24']), n('n2', ['192.168.1.2', 'fd00::2'], ['10.1.2.0/24', 'fd00:10:2::/64']), n('n3', ['192.168.1.3'], ['10.1.3.0/24'], 'bgp')]

  it('programs remote endpoints into pn_ipcache with their node IP, and routes to direct peers\' pod CIDRs', async () => {
    const c = cluster(three, [e('10.1.1.5', 'n1'), e('10.1.2.5', 'n2', 4242), e('fd00:10:2::5', 'n2'), e('10.1.3.5', 'n3')])
    const {plan, recorded} = await run(c, empty)
    assert.deepEqual(words(recorded), [
      'ipcache 10.1.2.5/32 = id 4242 flags 0 node 192.168.1.2',
      'ipcache 10.1.3.5/32 = id 0 flags 0 node 192.168.1.3',
      'ipcache fd00:10:2::5/128 = id 0 flags 0 node fd00::2',
      'route 10.1.2.0/24 via 192.168.1.2 dev eth0',
      'route fd00:10:2::/64 via fd00::2 dev eth0',
    ])
    assert.deepEqual(plan.summary, {ipcacheAdded: 3, ipcacheUpdated: 0, ipcacheDeleted: 0, routesAdded: 2, routesReplaced: 0, routesDeleted: 0})
    // The keys are the datapath's own encoding.
    assert.deepEqual((recorded[0] as {key: Buffer}).key, encodeIpcacheKey('10.1.2.5/32'))
  })

  it('converged is no op at all: a second pass over what the first applied, and a full resync, change nothing', async () => {
    const c = cluster(three, [e('10.1.2.5', 'n2'), e('fd00:10:2::5', 'n2'), e('10.1.3.5', 'n3')])
    const first = await run(c, empty)
    const second = await run(c, first.plan.applied)
    assert.deepEqual(second.recorded, [])
    assert.deepEqual(second.plan.summary, {ipcacheAdded: 0, ipcacheUpdated: 0, ipcacheDeleted: 0, routesAdded: 0, routesReplaced: 0, routesDeleted: 0})
    // The same entries as the kernel would dump them (other spelling of the IPv6 address, entries in another order).
    const dumped: NodeApplied = {
      ipcache: [...first.plan.applied.ipcache].reverse().map((x) => (x.prefix.startsWith('fd00') ? {...x, prefix: 'fd00:10:2:0:0:0:0:5/128', nodeIp: 'fd00:0::2'} : x)),
      routes: first.plan.applied.routes.map((r) => (r.dst.startsWith('fd00') ? {...r, dst: 'fd00:10:2:0::/64'} : r)),
    }
    assert.deepEqual((await run(c, dumped)).recorded, [])
  })

  it('changes only what differs: one endpoint added, one moved, one gone, one identity assigned', async () => {
    const before = cluster(three, [e('10.1.2.5', 'n2'), e('10.1.2.6', 'n2'), e('10.1.3.5', 'n3'), e('10.1.3.6', 'n3')])
    const {plan} = await run(before, empty)
    const after = cluster(three, [e('10.1.2.5', 'n2'), e('10.1.2.6', 'n3') /* moved */, e('10.1.3.5', 'n3', 77) /* identity */, e('10.1.3.7', 'n3') /* new */])
    const next = await run(after, plan.applied)
    assert.deepEqual(words(next.recorded), [
      'ipcache delete 10.1.3.6/32',
      'ipcache 10.1.2.6/32 = id 0 flags 0 node 192.168.1.3',
      'ipcache 10.1.3.5/32 = id 77 flags 0 node 192.168.1.3',
      'ipcache 10.1.3.7/32 = id 0 flags 0 node 192.168.1.3',
    ])
    assert.deepEqual(next.plan.summary, {ipcacheAdded: 1, ipcacheUpdated: 2, ipcacheDeleted: 1, routesAdded: 0, routesReplaced: 0, routesDeleted: 0})
  })

  it('a dead node (its key gone with its lease) loses its routes and its endpoints\' entries, even if their keys linger', async () => {
    const c = cluster(three, [e('10.1.2.5', 'n2'), e('10.1.3.5', 'n3')])
    const {plan} = await run(c, empty)
    const dead = cluster(three.filter((x) => x.name !== 'n2'), [e('10.1.2.5', 'n2'), e('10.1.3.5', 'n3')])
    const next = await run(dead, plan.applied)
    assert.deepEqual(words(next.recorded), ['ipcache delete 10.1.2.5/32', 'route delete 10.1.2.0/24 dev eth0', 'route delete fd00:10:2::/64 dev eth0'])
  })

  it('never touches the node\'s own entries (IPCACHE_F_LOCAL), nor publishes over a local prefix', async () => {
    const applied: NodeApplied = {ipcache: [{prefix: '10.1.1.5/32', identity: 0, flags: IPCACHE_F_LOCAL}, {prefix: '10.1.1.9/32', identity: 0, flags: IPCACHE_F_LOCAL}], routes: []}
    // n2 claims 10.1.1.5 (stale or wrong): this node's pod wins; its own published endpoint is not remote.
    const c = cluster(three, [e('10.1.1.5', 'n2'), e('10.1.1.6', 'n1')])
    const {plan, recorded} = await run(c, applied)
    assert.deepEqual(words(recorded), ['route 10.1.2.0/24 via 192.168.1.2 dev eth0', 'route fd00:10:2::/64 via fd00::2 dev eth0'])
    assert.deepEqual(plan.applied.ipcache.filter((x) => x.flags & IPCACHE_F_LOCAL).map((x) => x.prefix), ['10.1.1.5/32', '10.1.1.9/32'])
    // An empty cluster removes remote entries only.
    const gone = await run(cluster([], []), {ipcache: [...applied.ipcache, {prefix: '10.1.2.5/32', identity: 0, flags: 0, nodeIp: '192.168.1.2'}], routes: []})
    assert.deepEqual(words(gone.recorded), ['ipcache delete 10.1.2.5/32'])
  })

  it('routes: a changed next hop is one replace; without auto direct routes every managed route goes; bgp and tunnel peers, own and duplicate CIDRs get none', async () => {
    const c = cluster(three, [])
    const {plan} = await run(c, empty)
    const moved = cluster([three[0], n('n2', ['192.168.1.22', 'fd00::2'], ['10.1.2.0/24', 'fd00:10:2::/64']), three[2]], [])
    const next = await run(moved, plan.applied)
    assert.deepEqual(words(next.recorded), ['route 10.1.2.0/24 via 192.168.1.22 dev eth0'])
    assert.equal(next.plan.summary.routesReplaced, 1)
    const off = await run(moved, next.plan.applied, {...self, autoDirectRoutes: false})
    assert.deepEqual(words(off.recorded), ['route delete 10.1.2.0/24 dev eth0', 'route delete fd00:10:2::/64 dev eth0'])
    const odd = cluster([three[0], n('n4', ['192.168.1.4'], ['10.1.1.0/24', '10.1.4.0/24', 'fd00:10:4::/64']), n('n5', ['192.168.1.5'], ['10.1.4.0/24']), n('n6', ['192.168.1.6'], ['10.1.6.0/24'], 'tunnel')], [])
    // n4's first CIDR is this node's own; its IPv6 CIDR has no IPv6 next hop; n5 repeats n4's block (first wins).
    assert.deepEqual(words((await run(odd, empty)).recorded), ['route 10.1.4.0/24 via 192.168.1.4 dev eth0'])
  })

  it('parts: an ipcache-only diff never walks the nodes (no route work), keeps the routes as applied, and matches the full diff\'s ipcache ops', async () => {
    /** A nodes map that counts full walks (the route diff sorts all nodes; the ipcache diff only looks up its endpoints' nodes). */
    class CountingNodes extends Map<string, ClusterNode> {
      walks = 0
      override values() {
        this.walks++
        return super.values()
      }
    }
    const nodes = new CountingNodes(three.map((x) => [x.name, x]))
    const before: DesiredCluster = {nodes, endpoints: new Map([e('10.1.2.5', 'n2')].map((x) => [x.ip, x]))}
    const first = convergeNode(before, empty, self)
    assert.equal(nodes.walks, 1, 'the full diff walks the nodes once (routes)')
    const after: DesiredCluster = {nodes, endpoints: new Map([e('10.1.2.5', 'n2'), e('10.1.3.9', 'n3')].map((x) => [x.ip, x]))}
    const plan = convergeNode(after, first.applied, self, {ipcache: true, routes: false})
    assert.equal(nodes.walks, 1, 'an endpoint-only diff does no route work')
    assert.deepEqual(words(plan.ops), ['ipcache 10.1.3.9/32 = id 0 flags 0 node 192.168.1.3'])
    assert.deepEqual(plan.applied.routes, first.applied.routes, 'the routes stay as applied')
    assert.deepEqual(plan.ops, convergeNode(after, first.applied, self).ops, 'same ops as the full diff when only endpoints changed')
    // Routes only: the ipcache as applied, untouched, even if the endpoints changed meanwhile.
    const gone = cluster([three[0]], [e('10.1.2.5', 'n2')])
    const routesOnly = convergeNode(gone, plan.applied, self, {ipcache: false, routes: true})
    assert.deepEqual(words(routesOnly.ops), ['route delete 10.1.2.0/24 dev eth0', 'route delete fd00:10:2::/64 dev eth0'])
    assert.deepEqual(routesOnly.applied.ipcache, plan.applied.ipcache)
  })

  it('an endpoint on a node with only other-family addresses points at its first node IP', async () => {
    const c = cluster([n('n7', ['192.168.1.7'], ['fd00:10:7::/64'], 'tunnel')], [e('fd00:10:7::5', 'n7')])
    assert.deepEqual(words((await run(c, empty)).recorded), ['ipcache fd00:10:7::5/128 = id 0 flags 0 node 192.168.1.7'])
  })

  it('from a followed store: each update converges the node, a dead peer is cleaned up (directory backend, recording kernel)', async function () {
    this.timeout(20_000)
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-converge-'))
    let clock = Date.now()
    const store = openClusterStore(dir, {now: () => clock})
    try {
      await store.init()
      const me = await store.registerNode({name: 'n1', nodeIps: ['192.168.1.1'], podCidrs: ['10.1.1.0/24'], reach: 'direct'})
      const peer = await store.registerNode({name: 'n2', nodeIps: ['192.168.1.2'], podCidrs: ['10.1.2.0/24'], reach: 'direct'}, {ttlSeconds: 2})
      const kernel = new RecordingBackend()
      let applied: NodeApplied = empty
      const f = await store.follow({
        onUpdate: (state) => {
          const plan = convergeNode(state, applied, self)
          if (plan.ops.length > 0) void kernel.apply(plan.ops)
          applied = plan.applied
        },
      })
      const first = convergeNode(f.state, applied, self)
      await kernel.apply(first.ops)
      applied = first.applied
      await store.publishEndpoint(e('10.1.2.5', 'n2'), peer)
      const until = async (cond: () => boolean) => {
        for (let i = 0; i < 250 && !cond(); i++) await new Promise((r) => setTimeout(r, 20))
        assert.ok(cond())
      }
      await until(() => applied.ipcache.length === 1)
      // The peer dies: no keep-alive, the clock passes its TTL.
      await peer.close({revoke: false})
      clock += 2500
      await until(() => applied.ipcache.length === 0 && applied.routes.length === 0)
      await f.close()
      await me.close()
      assert.deepEqual(words(kernel.applied.flatMap((b) => b.ops)), [
        'route 10.1.2.0/24 via 192.168.1.2 dev eth0',
        'ipcache 10.1.2.5/32 = id 0 flags 0 node 192.168.1.2',
        'ipcache delete 10.1.2.5/32',
        'route delete 10.1.2.0/24 dev eth0',
      ])
    } finally {
      await store.close()
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('hands the service table over only whole, and only when its digest changed', () => {
    const keys = new ClusterKeys('/pn')
    const table = [parseService('10.96.0.10:80', ['10.1.2.5:8080']), parseService('10.96.0.11:53/udp', ['10.1.3.5:53'])]
    const state = ClusterState.fromEntries(keys, 1, [])
    // No table yet: the empty table, once.
    const none = serviceTableToApply(state.services())
    assert.deepEqual(none, {apply: true, services: [], digest: servicesDigest([])})
    assert.deepEqual(serviceTableToApply(state.services(), servicesDigest([])), {apply: false, reason: 'unchanged'})
    // The shards arrive in one revision with the table key.
    const shards = new Map<number, typeof table>()
    for (const s of table) shards.set(shardOf(s), [...(shards.get(shardOf(s)) ?? []), s])
    state.applyEvents(2, [
      ...[...shards].map(([i, list]) => ({type: 'put' as const, key: keys.shard(i), value: encodeShard(list), revision: 2})),
      {type: 'put', key: keys.table, value: JSON.stringify({digest: servicesDigest(table), count: 2, writtenAt: 'x'}), revision: 2},
    ])
    const d = serviceTableToApply(state.services(), servicesDigest([]))
    assert.equal(d.apply, true)
    assert.deepEqual(d.apply && new Set(d.services.map((s) => s.frontend.vip)), new Set(['10.96.0.10', '10.96.0.11']))
    assert.deepEqual(serviceTableToApply(state.services(), servicesDigest(table)), {apply: false, reason: 'unchanged'})
    // A shard without the table key's agreement (hand-edited, torn): not applied.
    state.applyEvents(3, [{type: 'delete', key: keys.shard(shardOf(table[0])), revision: 3}])
    assert.deepEqual(serviceTableToApply(state.services(), servicesDigest(table)), {apply: false, reason: 'inconsistent'})
  })

  it('reads what is applied back from the kernel: every ipcache entry, and exactly the routes marked with pn\'s protocol; converging from it changes nothing', async () => {
    const c = cluster(three, [e('10.1.2.5', 'n2'), e('fd00:10:2::5', 'n2')])
    const {plan} = await run(c, {ipcache: [{prefix: '10.1.1.5/32', identity: 0, flags: IPCACHE_F_LOCAL}], routes: []})
    // As the kernel would answer map.dump and route.list after the ops ran (plus routes of others).
    const dump = plan.applied.ipcache.map((x) => ({key: encodeIpcacheKey(x.prefix), value: encodeIpcacheInfo(x)}))
    const routes = [
      {dst: '10.1.2.0/24', gateway: '192.168.1.2', dev: 'eth0', protocol: '112'},
      {dst: 'fd00:10:2::/64', gateway: 'fd00::2', dev: 'eth0', protocol: '112'},
      {dst: 'default', gateway: '192.168.1.254', dev: 'eth0', protocol: 'dhcp'},
      {dst: '10.1.1.0/24', dev: 'pn_host'}, // the node's own pod CIDR
      {dst: '10.1.5.0/24', gateway: '192.168.1.5', dev: 'eth0', protocol: '112'}, // a peer that left: stale, pn's
      {dst: '10.1.6.0/24', gateway: '192.168.1.6', dev: 'eth0'}, // same shape, made by hand (boot): not pn's
      {dst: '10.1.3.0/24', gateway: '192.168.1.3', dev: 'eth0', protocol: 'bird'}, // bird's (n3 is reached by BGP)
      {dst: '10.1.4.0/24', gateway: '192.168.1.4', dev: 'eth1', protocol: '112'}, // another device: not the uplink
      {dst: '192.168.1.0/24', dev: 'eth0', scope: 'link', protocol: 'kernel'},
    ]
    const applied = appliedFromKernel(dump, routes, self)
    assert.deepEqual(applied.routes.map((r) => `${r.dst} via ${r.via}`), ['10.1.2.0/24 via 192.168.1.2', 'fd00:10:2::/64 via fd00::2', '10.1.5.0/24 via 192.168.1.5'])
    assert.deepEqual(applied.ipcache.map((x) => x.prefix).sort(), ['10.1.1.5/32', '10.1.2.5/32', 'fd00:10:2::5/128'])
    // The stale route goes; nothing else changes (no delete and re-add of what is right, nobody else's route touched).
    assert.deepEqual(words((await run(c, applied)).recorded), ['route delete 10.1.5.0/24 dev eth0'])
    assert.deepEqual(appliedFromKernel(dump, routes, {...self, autoDirectRoutes: false}).routes, [])
  })
})
