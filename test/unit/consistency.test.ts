/**
 * The consistency check, both directions, as a pure function of the facts: map entries, lxc
 * devices, routes and IPs without a record; records without their device, map entries, IPs or
 * routes. The integration test (consistency.integration.ts) runs it against a real kernel.
 */
import assert from 'node:assert/strict'
import type {EndpointRecord} from '../../src/endpoint/store.js'
import type {IpAllocation} from '../../src/ipam/host.js'
import {findInconsistencies, type ConsistencyFacts} from '../../src/node/consistency.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'

function rec(cid: string, endpointId: number, ip: string, hostIfindex: number): EndpointRecord {
  return {
    id: `${cid}:eth0`, containerId: cid, ifname: 'eth0', netns: '/run/netns/x', ips: [ip], routerIps: ['10.0.1.1'],
    hostIfname: hostIfnameFor(cid, 'eth0'), hostMac: '02:00:00:00:00:01', hostIfindex, podIfname: 'eth0', podMac: '02:00:00:00:00:02',
    podIfindex: 2, mtu: 1500, endpointId, bpfAttached: true, createdAt: new Date(0).toISOString(),
  }
}
const alloc = (ip: string, owner: string, state: IpAllocation['state'] = 'confirmed'): IpAllocation =>
  ({ip, family: 4, cidr: '10.0.1.0/24', owner, state, gateway: '10.0.1.1'}) as IpAllocation

/** A healthy bpf node with one endpoint `a` (10.0.1.5 on ifindex 10). */
function healthy(): ConsistencyFacts {
  const a = rec('a', 1, '10.0.1.5', 10)
  return {
    node: {routing: 'bpf', routerIps: ['10.0.1.1']},
    records: [a],
    links: [{ifname: a.hostIfname, ifindex: 10}, {ifname: 'pn_host', ifindex: 4}],
    maps: {
      endpoints: [
        {key: {ip: '10.0.1.5'}, value: {ifindex: 10, endpointId: 1, flags: 0}},
        {key: {ip: '10.0.1.1'}, value: {ifindex: 4, endpointId: 0, flags: 1}},
      ],
      lxc: [{key: {ifindex: 10}, value: {endpointId: 1, ip4: '10.0.1.5'}}],
      ipcache: [{key: {prefix: '10.0.1.5/32'}, value: {flags: 1}}],
    },
    allocations: [alloc('10.0.1.1', 'router', 'reserved'), alloc('10.0.1.5', 'a:eth0')],
    routes: [],
  }
}

describe('consistency check (both directions)', () => {
  it('a healthy node has no findings (the router host entry is not an endpoint)', () => {
    assert.deepEqual(findInconsistencies(healthy()), [])
  })

  it('finds the entries left after `pn endpoint delete` (no --purge) and `cni del`: all three maps', () => {
    const f = healthy()
    f.records = []
    f.links = [{ifname: 'pn_host', ifindex: 4}]
    f.allocations = [alloc('10.0.1.1', 'router', 'reserved')]
    const found = findInconsistencies(f)
    assert.deepEqual(found.map((i) => `${i.kind} ${i.subject}`).sort(), [
      'stale-map-entry pn_endpoints 10.0.1.5', 'stale-map-entry pn_ipcache 10.0.1.5/32', 'stale-map-entry pn_lxc ifindex 10',
    ])
    assert.match(found.find((i) => i.map === 'pn_endpoints')!.problem, /ifindex 10, which no longer exists/)
  })

  it('the live parts of an attachment whose record alone was deleted belong to it (GC keeps them for a valid one)', () => {
    const f = healthy()
    f.records = []
    const found = findInconsistencies(f)
    assert.deepEqual(found.map((i) => `${i.kind} ${i.subject} ${i.attachment}`).sort(), [
      `orphan-ip ip 10.0.1.5 a:eth0`, `orphan-link ${hostIfnameFor('a', 'eth0')} a:eth0`,
      'stale-map-entry pn_endpoints 10.0.1.5 a:eth0', 'stale-map-entry pn_ipcache 10.0.1.5/32 a:eth0', 'stale-map-entry pn_lxc ifindex 10 a:eth0',
    ])
  })

  it('an entry pointing at another ifindex than the record is stale, and the record misses its entry', () => {
    const f = healthy()
    f.maps!.endpoints[0].value.ifindex = 99
    const kinds = findInconsistencies(f).map((i) => i.kind).sort()
    assert.deepEqual(kinds, ['record-without-map-entry', 'stale-map-entry'])
  })

  it('orphan lxc device and orphan IP; an ADD in flight (pending IP) is not an orphan', () => {
    const f = healthy()
    f.links.push({ifname: hostIfnameFor('b', 'eth0'), ifindex: 11}, {ifname: 'lxc0123456789ab', ifindex: 12})
    f.allocations.push(alloc('10.0.1.6', 'b:eth0'))
    const found = findInconsistencies(f).map((i) => `${i.kind} ${i.subject} ${i.attachment ?? ''}`.trim()).sort()
    assert.deepEqual(found, [`orphan-ip ip 10.0.1.6 b:eth0`, `orphan-link ${hostIfnameFor('b', 'eth0')} b:eth0`, 'orphan-link lxc0123456789ab'].sort())
    f.allocations[2] = alloc('10.0.1.6', 'b:eth0', 'pending')
    assert.deepEqual(findInconsistencies(f).map((i) => i.subject), ['lxc0123456789ab'])
  })

  it('records without their device, their IP, their map entries', () => {
    const f = healthy()
    f.links = [{ifname: 'pn_host', ifindex: 4}]
    // Its entries point at a device that is gone: stale too (GC's teardown of the record removes them).
    assert.deepEqual(findInconsistencies(f).map((i) => i.kind).sort(), ['record-without-link', 'stale-map-entry', 'stale-map-entry', 'stale-map-entry'])
    const g = healthy()
    g.maps!.lxc = []
    assert.deepEqual(findInconsistencies(g).map((i) => i.kind), ['record-without-map-entry'])
    assert.match(findInconsistencies(g)[0].problem, /pn_lxc 10/)
    // An address no one holds (`pn veth create --ip` without IPAM) is fine; one IPAM holds for another attachment is not.
    g.maps = healthy().maps
    g.allocations = [alloc('10.0.1.1', 'router', 'reserved')]
    assert.deepEqual(findInconsistencies(g), [])
    g.allocations.push(alloc('10.0.1.5', 'other:eth0', 'pending'))
    const clash = findInconsistencies(g)
    assert.deepEqual(clash.map((i) => i.kind), ['record-without-ip'])
    assert.match(clash[0].problem, /IPAM holds 10\.0\.1\.5 for other:eth0, not for a:eth0/)
  })

  it('host-routes mode: map entries are stale, routes are checked both ways', () => {
    const f = healthy()
    f.node.routing = 'host-routes'
    f.records[0].bpfAttached = false
    const a = f.records[0].hostIfname
    f.routes = [{dst: '10.0.1.9/32', dev: a}]
    const found = findInconsistencies(f).map((i) => `${i.kind} ${i.subject}`).sort()
    assert.deepEqual(found, [
      'record-without-route endpoint 1 (a:eth0)', 'stale-map-entry pn_endpoints 10.0.1.5', 'stale-map-entry pn_ipcache 10.0.1.5/32',
      'stale-map-entry pn_lxc ifindex 10', `stale-route route 10.0.1.9/32 dev ${a}`,
    ])
    f.maps = undefined
    f.routes = [{dst: '10.0.1.5/32', dev: a}]
    assert.deepEqual(findInconsistencies(f), [])
  })
})
