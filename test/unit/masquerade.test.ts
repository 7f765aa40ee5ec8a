import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {bpfSourceDir} from '../../src/datapath/bpf/compile.js'
import {
  decodeNat4Entry,
  decodeNat4Key,
  decodeNat6Entry,
  decodeNat6Key,
  decodeNodeConfig,
  decodeNonMasqKey,
  decodeTraceEvent,
  encodeNat4Entry,
  encodeNat4Key,
  encodeNat6Entry,
  encodeNat6Key,
  encodeNodeConfig,
  encodeNonMasqKey,
  NAT_F_TCP_CLOSING,
  NAT_F_TCP_SYN,
  NAT_TCP_CLOSE_TIMEOUT,
  NAT_TCP_SYN_TIMEOUT,
  natTcpState,
  NODE_CFG_MASQ,
  snat4Map,
  snat6Map,
  TRACE_EVENT,
  TRACE_XLATE_REV_SNAT,
  TRACE_XLATE_SNAT,
  TRACE_XLATE_SVC,
} from '../../src/datapath/bpf/maps/index.js'
import {iptablesMasqueradeRules, MASQUERADE_DEFAULTS, normalizeNonMasq, parsePortRange} from '../../src/datapath/masquerade.js'
import {appliedFromKernel, convergeNode, type ConvergeSelf, type DesiredCluster} from '../../src/cluster/converge.js'
import type {ClusterNode} from '../../src/cluster/layout.js'
import {decodeNonMasqKey as nonMasqPrefix, encodeNonMasqInfo, nodeIpPrefix, nonMasqMap, NONMASQ_F_NODE, NONMASQ_F_PEER} from '../../src/datapath/bpf/maps/nat.js'
import {PnError} from '../../src/errors.js'

/** A trace event with a translation: xlate kind, orig address and port (an IPv6 one when `orig` has 16 bytes). */
function event(xlate: number, orig: number[], port: number): Buffer {
  const buf = Buffer.alloc(TRACE_EVENT.size)
  const F = TRACE_EVENT.fields
  buf[F.type.offset] = 1
  buf[F.family.offset] = orig.length === 16 ? 6 : 4
  buf[F.proto.offset] = 6
  buf[F.xlate.offset] = xlate
  buf.writeUInt16BE(0x0800, F.ethertype.offset) // host order on LE: only the family matters below
  Buffer.from([203, 0, 113, 9]).copy(buf, F.saddr.offset)
  Buffer.from([198, 51, 100, 7]).copy(buf, F.daddr.offset)
  Buffer.from(orig).copy(buf, F.orig_daddr.offset)
  buf.writeUInt16BE(port, F.orig_dport.offset)
  return buf
}

describe('masquerade (nat.h ↔ TypeScript)', () => {
  it('pn_node_config carries the SNAT address, port range and timeouts after pad, under NODE_CFG_MASQ', () => {
    const c = {uplinkIfindex: 3, uplinkMtu: 1500, flags: NODE_CFG_MASQ, natIp4: '192.0.2.10', natPortMin: 61000, natPortMax: 65535, natTcpTimeout: 21600, natOtherTimeout: 2}
    const buf = encodeNodeConfig(c)
    assert.equal(buf.length, 52) // then tunnel_ifindex (tunnel mode), then nat_ip6
    assert.deepEqual([...buf.subarray(16, 20)], [192, 0, 2, 10], 'nat_ip4 in network order right after pad')
    assert.deepEqual(decodeNodeConfig(buf), c)
    const h = readFileSync(path.join(bpfSourceDir(), 'include/node_config.h'), 'utf8')
    assert.match(h, new RegExp(`#define NODE_CFG_MASQ 0x${NODE_CFG_MASQ.toString(16)}\\b`))
  })

  it('pn_node_config appends the IPv6 SNAT address after tunnel_ifindex: the IPv4 fields keep their offsets', () => {
    const v4 = {uplinkIfindex: 3, uplinkMtu: 1500, flags: NODE_CFG_MASQ, natIp4: '192.0.2.10', natPortMin: 61000, natPortMax: 65535, natTcpTimeout: 21600, natOtherTimeout: 60}
    const c = {...v4, natIp6: 'fd00:172:31::1'}
    const buf = encodeNodeConfig(c)
    assert.deepEqual(buf.subarray(0, 36), encodeNodeConfig(v4).subarray(0, 36), 'the first 36 bytes are the older layout')
    assert.equal(buf.subarray(36, 52).toString('hex'), 'fd000172003100000000000000000001', 'nat_ip6 in network order at 36')
    assert.deepEqual(decodeNodeConfig(buf), c)
    assert.equal(decodeNodeConfig(encodeNodeConfig(v4)).natIp6, undefined, 'all-zero nat_ip6: no IPv6 masquerade')
    // A node with only an IPv6 SNAT address still decodes its NAT settings.
    const only6 = {uplinkIfindex: 3, uplinkMtu: 1500, flags: NODE_CFG_MASQ, natIp6: 'fd00::1', natPortMin: 61000, natPortMax: 61003, natTcpTimeout: 2, natOtherTimeout: 2}
    assert.deepEqual(decodeNodeConfig(encodeNodeConfig(only6)), only6)
    const h = readFileSync(path.join(bpfSourceDir(), 'include/node_config.h'), 'utf8')
    assert.ok(h.indexOf('tunnel_ifindex;') < h.indexOf('nat_ip6[16];'), 'nat_ip6 is the last field in C too')
  })

  it('pn_snat6 keys and entries round-trip with IPv6 addresses; ICMPv6 echo is its own protocol', () => {
    const k = {saddr: '2001:db8::9', daddr: 'fd00:172:31::1', sport: 443, dport: 61234, proto: 'tcp', dir: 'in' as const}
    const kb = encodeNat6Key(k)
    assert.equal(kb.length, 40)
    assert.equal(kb.readUInt16BE(34), 61234)
    assert.equal(kb[36], 6)
    assert.deepEqual(decodeNat6Key(kb), k)
    const echo = {saddr: 'fd00:161::10', daddr: '2001:db8::9', sport: 77, dport: 0, proto: 'icmpv6', dir: 'out' as const}
    assert.equal(encodeNat6Key(echo)[36], 58)
    assert.deepEqual(decodeNat6Key(encodeNat6Key(echo)), echo)
    const e = {lastSeenNs: 123456789012n, packets: 3, toAddr: 'fd00:161::10', toPort: 40000, flags: NAT_F_TCP_CLOSING}
    assert.deepEqual(decodeNat6Entry(encodeNat6Entry(e)), e)
    assert.equal(encodeNat6Entry(e)[34], NAT_F_TCP_CLOSING, 'flags right after to_port')
    assert.deepEqual([snat6Map.type, snat6Map.maxEntries, snat6Map.header], ['lru_hash', 131072, 'nat6.h'])
  })

  it('pn_snat4 keys and entries round-trip (ports and echo ids in network order)', () => {
    const k = {saddr: '203.0.113.9', daddr: '192.0.2.10', sport: 443, dport: 61234, proto: 'tcp', dir: 'in' as const}
    const kb = encodeNat4Key(k)
    assert.equal(kb.readUInt16BE(10), 61234)
    assert.deepEqual(decodeNat4Key(kb), k)
    const icmp = {saddr: '10.1.0.5', daddr: '203.0.113.9', sport: 77, dport: 0, proto: 'icmp', dir: 'out' as const}
    assert.deepEqual(decodeNat4Key(encodeNat4Key(icmp)), icmp)
    const e = {lastSeenNs: 123456789012n, packets: 3, toAddr: '10.1.0.5', toPort: 40000, flags: NAT_F_TCP_SYN}
    assert.deepEqual(decodeNat4Entry(encodeNat4Entry(e)), e)
    assert.equal(encodeNat4Entry(e)[22], NAT_F_TCP_SYN, 'flags in what was the pad after to_port')
    assert.equal(decodeNat4Entry(encodeNat4Entry({...e, flags: undefined})).flags, 0, 'no flags: 0')
  })

  it('a TCP flow\'s IN entry shows its state in a dump (syn-sent, established, closing); OUT entries and UDP show none', () => {
    const entry = (flags: number) => encodeNat4Entry({lastSeenNs: 1n, packets: 1, toAddr: '10.1.0.5', toPort: 40000, flags})
    const inKey = encodeNat4Key({saddr: '203.0.113.9', daddr: '192.0.2.10', sport: 443, dport: 61234, proto: 'tcp', dir: 'in'})
    const state = (k: Buffer, flags: number) => (snat4Map.decode(k, [entry(flags)]).value as {state?: string}).state
    assert.equal(state(inKey, NAT_F_TCP_SYN), 'syn-sent')
    assert.equal(state(inKey, 0), 'established')
    assert.equal(state(inKey, NAT_F_TCP_CLOSING), 'closing')
    assert.equal(state(inKey, NAT_F_TCP_CLOSING | NAT_F_TCP_SYN), 'closing', 'closing wins')
    assert.equal(state(encodeNat4Key({saddr: '10.1.0.5', daddr: '203.0.113.9', sport: 40000, dport: 443, proto: 'tcp', dir: 'out'}), 0), undefined)
    assert.equal(state(encodeNat4Key({saddr: '203.0.113.9', daddr: '192.0.2.10', sport: 53, dport: 61234, proto: 'udp', dir: 'in'}), 0), undefined)
    const v6 = encodeNat6Key({saddr: '2001:db8::9', daddr: 'fd00:172:31::1', sport: 443, dport: 61234, proto: 'tcp', dir: 'in'})
    const e6 = encodeNat6Entry({lastSeenNs: 1n, packets: 1, toAddr: 'fd00:161::10', toPort: 40000, flags: NAT_F_TCP_CLOSING})
    assert.equal((snat6Map.decode(v6, [e6]).value as {state?: string}).state, 'closing')
    assert.equal(natTcpState(0), 'established')
  })

  it('the TCP state flags and the SYN / close timeouts are nat.h\'s (Cilium\'s CT_SYN_TIMEOUT 60 s, CT_CLOSE_TIMEOUT 10 s)', () => {
    const src = readFileSync(path.join(bpfSourceDir(), 'include', 'nat.h'), 'utf8')
    const def = (name: string) => Number(new RegExp(`#define ${name} (\\S+)`).exec(src)?.[1])
    assert.equal(def('NAT_F_TCP_SYN'), NAT_F_TCP_SYN)
    assert.equal(def('NAT_F_TCP_CLOSING'), NAT_F_TCP_CLOSING)
    assert.equal(def('NAT_TCP_SYN_TIMEOUT'), NAT_TCP_SYN_TIMEOUT)
    assert.equal(def('NAT_TCP_CLOSE_TIMEOUT'), NAT_TCP_CLOSE_TIMEOUT)
    assert.deepEqual([NAT_TCP_SYN_TIMEOUT, NAT_TCP_CLOSE_TIMEOUT], [60, 10])
  })

  it('pn_nonmasq keys are LPM prefixes like pn_ipcache', () => {
    const b = encodeNonMasqKey('10.0.0.0/8')
    assert.equal(b.readUInt32LE(0) || b.readUInt32BE(0), 40)
    assert.deepEqual(decodeNonMasqKey(b), {prefix: '10.0.0.0/8'})
    const b6 = encodeNonMasqKey('fd00:160::/28')
    assert.equal(b6.readUInt32LE(0) || b6.readUInt32BE(0), 60)
    assert.equal(b6[4], 2, 'IPv6 family code')
    assert.deepEqual(decodeNonMasqKey(b6), {prefix: 'fd00:160::/28'})
  })

  it('a trace event says which translation orig_* holds: service, SNAT source, or reply destination', () => {
    assert.deepEqual(decodeTraceEvent(event(TRACE_XLATE_SNAT, [10, 1, 0, 5], 40000)).nat, {kind: 'snat', ip: '10.1.0.5', port: 40000})
    assert.deepEqual(decodeTraceEvent(event(TRACE_XLATE_REV_SNAT, [192, 0, 2, 10], 61000)).nat, {kind: 'rev-snat', ip: '192.0.2.10', port: 61000})
    const svc = decodeTraceEvent(event(TRACE_XLATE_SVC, [10, 96, 0, 1], 80))
    assert.deepEqual(svc.service, {ip: '10.96.0.1', port: 80})
    assert.equal(svc.nat, undefined)
    const v6 = [0xfd, 0, 1, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]
    assert.deepEqual(decodeTraceEvent(event(TRACE_XLATE_SNAT, v6, 40000)).nat, {kind: 'snat', ip: 'fd00:161::10', port: 40000})
    const h = readFileSync(path.join(bpfSourceDir(), 'include/trace.h'), 'utf8')
    for (const [name, v] of [['TRACE_XLATE_SVC', TRACE_XLATE_SVC], ['TRACE_XLATE_SNAT', TRACE_XLATE_SNAT], ['TRACE_XLATE_REV_SNAT', TRACE_XLATE_REV_SNAT]] as const) {
      assert.match(h, new RegExp(`#define ${name} ${v}\\b`))
    }
  })

  it('port ranges: FIRST-LAST within 1024-65535, else PN_INVALID_ARGUMENT with a hint', () => {
    assert.deepEqual(parsePortRange('61000-61003', 'x'), {portMin: 61000, portMax: 61003})
    for (const bad of ['61000', '0-100', '65000-64000', '61000-70000', 'a-b']) {
      assert.throws(() => parsePortRange(bad, 'initialise node n'), (e: unknown) => e instanceof PnError && e.code === 'PN_INVALID_ARGUMENT' && /port range/.test(e.message) && !!e.hint)
    }
    assert.ok(MASQUERADE_DEFAULTS.portMin > 60999, 'the default range is above the kernel default ephemeral range')
  })

  it('iptables mode: RETURN for each exception of the family, then one MASQUERADE out of the uplink (ip6tables gets the IPv6 ones)', () => {
    const nonMasq = normalizeNonMasq(['10.2.0.0/16', '10.1.0.0/24', '10.2.0.0/16', 'fd00::/64', 'FD00:0::/64'])
    assert.deepEqual(nonMasq, ['10.1.0.0/24', '10.2.0.0/16', 'fd00::/64'], 'IPv6 CIDRs are accepted and normalised')
    const rules = iptablesMasqueradeRules(nonMasq, 'eth0')
    assert.deepEqual(rules, [['-d', '10.1.0.0/24', '-j', 'RETURN'], ['-d', '10.2.0.0/16', '-j', 'RETURN'], ['-o', 'eth0', '-j', 'MASQUERADE']])
    assert.equal(rules.filter((r) => r.includes('MASQUERADE')).length, 1)
    assert.deepEqual(iptablesMasqueradeRules(nonMasq, 'eth0', 6), [['-d', 'fd00::/64', '-j', 'RETURN'], ['-o', 'eth0', '-j', 'MASQUERADE']])
  })

  describe('other nodes\' IPs are never masqueraded to (the cluster agent\'s pn_nonmasq entries)', () => {
    const node = (name: string, nodeIps: string[]): ClusterNode => ({name, nodeIps, podCidrs: [], reach: 'direct', registeredAt: '2026-01-01T00:00:00Z'})
    const cluster = (nodes: ClusterNode[]): DesiredCluster => ({nodes: new Map(nodes.map((x) => [x.name, x])), endpoints: new Map()})
    const me: ConvergeSelf = {name: 'n1', uplink: 'eth0', bpffsRoot: '/sys/fs/bpf/pn', autoDirectRoutes: false, masquerade: true}
    const words = (ops: ReturnType<typeof convergeNode>['ops']) => ops.map((op) => {
      assert.ok(op.kind === 'map.update' || op.kind === 'map.delete', op.kind)
      assert.equal(op.map, '/sys/fs/bpf/pn/maps/pn_nonmasq')
      const prefix = nonMasqPrefix(op.key).prefix
      return op.kind === 'map.update' ? `add ${prefix} flags ${nonMasqMap.decode(op.key, [op.value]).value.flags}` : `delete ${prefix}`
    })

    it('with BPF masquerade: every other node\'s IPs as host prefixes flagged NONMASQ_F_NODE; the node\'s own never', () => {
      const c = cluster([node('n1', ['192.0.2.1']), node('n2', ['192.0.2.2', 'fd00::2']), node('n3', ['198.51.100.3'])])
      const plan = convergeNode(c, {ipcache: [], routes: []}, me)
      assert.deepEqual(words(plan.ops), ['add 192.0.2.2/32 flags 1', 'add 198.51.100.3/32 flags 1', 'add fd00::2/128 flags 1'])
      assert.deepEqual(plan.applied.nodeIps, ['192.0.2.2/32', '198.51.100.3/32', 'fd00::2/128'])
      // Nothing changed: no op. A node leaves: its IP goes; another's IP changes: one of each.
      assert.deepEqual(convergeNode(c, plan.applied, me).ops, [])
      const later = convergeNode(cluster([node('n1', ['192.0.2.1']), node('n2', ['192.0.2.20', 'fd00::2'])]), plan.applied, me)
      assert.deepEqual(words(later.ops), ['add 192.0.2.20/32 flags 1', 'delete 192.0.2.2/32', 'delete 198.51.100.3/32'])
      // An endpoint-only diff (routes part off) leaves them alone.
      assert.deepEqual(convergeNode(cluster([node('n1', ['192.0.2.1'])]), plan.applied, me, {ipcache: true, routes: false}).ops, [])
    })

    it('without BPF masquerade none are written, and ones left from an earlier run are removed', () => {
      const c = cluster([node('n1', ['192.0.2.1']), node('n2', ['192.0.2.2'])])
      assert.deepEqual(convergeNode(c, {ipcache: [], routes: []}, {...me, masquerade: false}).ops, [])
      assert.deepEqual(words(convergeNode(c, {ipcache: [], routes: [], nodeIps: ['192.0.2.2/32']}, {...me, masquerade: false}).ops), ['delete 192.0.2.2/32'])
    })

    it('read back from the kernel: only the entries flagged NONMASQ_F_NODE are the agent\'s (configuration and peers are not)', () => {
      const entry = (prefix: string, flags: number) => ({key: encodeNonMasqKey(prefix), value: encodeNonMasqInfo(flags)})
      const applied = appliedFromKernel([], [], me, [entry('10.0.0.0/8', 0), entry(nodeIpPrefix('192.0.2.2'), NONMASQ_F_NODE), entry(nodeIpPrefix('192.0.2.9'), NONMASQ_F_PEER), entry(nodeIpPrefix('fd00::2'), NONMASQ_F_NODE)])
      assert.deepEqual(applied.nodeIps, ['192.0.2.2/32', 'fd00::2/128'])
    })
  })
})
