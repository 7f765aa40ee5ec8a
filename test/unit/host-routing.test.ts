import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {bpfSourceDir} from '../../src/datapath/bpf/compile.js'
import {FIB_FALLBACK_REASONS, TRACE_REASONS} from '../../src/datapath/bpf/drop-reasons.js'
import {readU32} from '../../src/datapath/bpf/maps/layout.js'
import {decodeNodeConfig, encodeNodeConfig} from '../../src/datapath/bpf/maps/node-config.js'
import {hostRoutingItem} from '../../src/node/status.js'

const metric = (reason: string, packets: number, point = 'from-container') => ({key: {reason, point, direction: 'egress'}, value: {packets, bytes: packets * 100}})
const link = (ifindex: number) => ({ifindex, ifname: 'eth0', mtu: 1500, address: '02:00:00:00:00:01'})

describe('BPF host routing (fib.h ↔ TypeScript)', () => {
  it('the fallback range in trace_to_stack() is exactly the TRACE_FIB_* fallbacks of the table', () => {
    const trace = readFileSync(path.join(bpfSourceDir(), 'include/trace.h'), 'utf8')
    const m = /code >= (TRACE_FIB_\w+) && code <= (TRACE_FIB_\w+)/.exec(trace)
    assert.ok(m, 'trace_to_stack() names its range')
    const byName = new Map(TRACE_REASONS.map((r) => [r.name, r.code]))
    const [lo, hi] = [byName.get(m[1])!, byName.get(m[2])!]
    assert.deepEqual(FIB_FALLBACK_REASONS.map((r) => r.code), TRACE_REASONS.filter((r) => r.code >= lo && r.code <= hi).map((r) => r.code))
    assert.ok(FIB_FALLBACK_REASONS.every((r) => r.name.startsWith('TRACE_FIB_') && r.description.startsWith('to the stack')))
    assert.ok(!FIB_FALLBACK_REASONS.some((r) => r.name.startsWith('TRACE_FIB_REDIRECT')), 'redirects are not fallbacks')
  })

  it('pn_node_config round-trips (native routing, and tunnel mode with pn_vxlan after pad)', () => {
    const c = {uplinkIfindex: 7, uplinkMtu: 1450, flags: 0}
    assert.deepEqual(decodeNodeConfig(encodeNodeConfig(c)), c)
    assert.equal(encodeNodeConfig(c).length, 52) // masquerade's nat_* fields follow pad (test/unit/masquerade.test.ts), then tunnel_ifindex, then nat_ip6
    const t = {uplinkIfindex: 7, uplinkMtu: 1500, flags: 2, tunnelIfindex: 9}
    assert.deepEqual(decodeNodeConfig(encodeNodeConfig(t)), t)
    assert.equal(readU32(encodeNodeConfig(t), 32), 9, 'tunnel_ifindex follows the nat fields')
  })

  it('status: counts redirects and names fallbacks by reason; ok when the uplink matches', () => {
    const it = hostRoutingItem(link(7), {key: {index: 0}, value: {uplinkIfindex: 7, uplinkMtu: 1500, flags: 0}}, [
      metric('TRACE_FIB_REDIRECT', 40),
      metric('TRACE_FIB_REDIRECT', 2),
      metric('TRACE_FIB_REDIRECT_NEIGH', 1),
      metric('TRACE_FIB_FRAG_NEEDED', 3),
      metric('TRACE_FIB_NO_ROUTE', 2),
      metric('TRACE_FIB_NO_ROUTE', 9, 'from-netdev'),
      metric('TRACE_TO_STACK', 5),
    ])
    assert.equal(it.state, 'ok')
    assert.deepEqual(it.details, {uplinkIfindex: 7, redirected: 42, redirectedNeigh: 1, fallbacks: ['no_route 2', 'frag_needed 3']})
  })

  it('status: DRIFTED when the configured uplink is another ifindex, or host routing is off', () => {
    const cfg = (i: number) => ({key: {index: 0}, value: {uplinkIfindex: i, uplinkMtu: 1500, flags: 0}})
    const moved = hostRoutingItem(link(9), cfg(7), [])
    assert.equal(moved.state, 'drifted')
    assert.match(moved.problems[0], /names ifindex 7, the uplink eth0 has 9/)
    const off = hostRoutingItem(link(9), cfg(0), [])
    assert.equal(off.state, 'drifted')
    assert.match(off.problems[0], /host routing is off/)
    assert.match(hostRoutingItem(link(9), undefined, []).problems[0], /pn_node_config is missing/)
  })
})
