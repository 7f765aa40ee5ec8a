import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  decodePolicyEpInfo,
  decodePolicyKey,
  decodePolicyValue,
  encodeIpcacheInfo,
  encodeIpcacheKey,
  encodePolicyKey,
  encodePolicyValue,
  portBlocks,
  IPCACHE_F_CIDR,
  IPCACHE_F_LOCAL,
  POLICY_PREFIX_FIXED,
  POLICY_PREFIX_FULL,
} from '../../src/datapath/bpf/maps/index.js'
import {
  encodeEndpointRules,
  endpointPolicyState,
  planCidrIdentities,
  planEndpointPolicy,
  policyMapWrites,
  policyStatesFromDump,
  writeEndpointPolicy,
  writeNodePolicy,
} from '../../src/datapath/bpf/policy.js'
import {RecordingBackend} from '../../src/kernel/backend.js'
import type {KernelOp, MapEntry} from '../../src/kernel/ops.js'
import {bpfSourceDir} from '../../src/datapath/bpf/compile.js'
import {IDENTITY_HOST, IDENTITY_WORLD, type EndpointPolicy, type PolicyMapEntry} from '../../src/policy/types.js'

const rule = (over: Partial<PolicyMapEntry>): PolicyMapEntry => ({direction: 'ingress', identity: 256, protocol: 6, port: 80, endPort: 80, ...over})
const pol = (entries: PolicyMapEntry[], over: Partial<EndpointPolicy> = {}): EndpointPolicy => ({endpointId: 7, ingressEnforced: true, egressEnforced: false, entries, ...over})

/** Does the set of blocks match exactly the ports of [lo, hi]? */
function covered(blocks: {port: number; prefixBits: number}[]): Set<number> {
  const s = new Set<number>()
  for (const b of blocks) {
    const size = 2 ** (16 - b.prefixBits)
    assert.equal(b.port % size, 0, `block ${b.port}/${b.prefixBits} is aligned`)
    for (let p = b.port; p < b.port + size; p++) {
      assert.ok(!s.has(p), `port ${p} in one block only`)
      s.add(p)
    }
  }
  return s
}

describe('policy map: key encoding, range split, diff (no root)', () => {
  it('splits port ranges into aligned blocks that cover exactly the range', () => {
    assert.deepEqual(portBlocks(80, 80), [{port: 80, prefixBits: 16}])
    assert.deepEqual(portBlocks(0, 65535), [{port: 0, prefixBits: 0}])
    assert.deepEqual(portBlocks(8080, 8083), [{port: 8080, prefixBits: 14}])
    assert.equal(portBlocks(1, 65535).length, 16)
    for (const [lo, hi] of [[80, 81], [1000, 2000], [1, 1023], [32768, 60999], [65535, 65535], [5, 6], [3, 1028]]) {
      const blocks = portBlocks(lo, hi)
      const ports = covered(blocks)
      assert.equal(ports.size, hi - lo + 1)
      assert.ok(ports.has(lo) && ports.has(hi) && !ports.has(lo - 1) && !ports.has(hi + 1))
      assert.ok(blocks.length <= 30)
    }
    assert.throws(() => portBlocks(90, 80), /not a range of ports/)
    assert.throws(() => portBlocks(1, 65536), /not a range of ports/)
  })

  it('policy.h uses the contract\'s numbers: reserved identities, flags, prefix lengths', () => {
    const text = readFileSync(path.join(bpfSourceDir(), 'include/policy.h'), 'utf8')
    const defs = Object.fromEntries([...text.matchAll(/^#define\s+([A-Z_]+)\s+(\d+)/gm)].map((m) => [m[1], Number(m[2])]))
    assert.equal(defs.IDENTITY_HOST, IDENTITY_HOST)
    assert.equal(defs.IDENTITY_WORLD, IDENTITY_WORLD)
    assert.equal(defs.POLICY_PREFIX_FIXED, POLICY_PREFIX_FIXED)
    assert.equal(defs.POLICY_PREFIX_FULL, POLICY_PREFIX_FULL)
    assert.equal(defs.POLICY_F_INGRESS, 1)
    assert.equal(defs.POLICY_F_EGRESS, 2)
  })

  it('encodes the LPM key: fixed bits, protocol, then the port block (network order)', () => {
    const k = encodePolicyKey({endpointId: 7, identity: 256, direction: 'egress', protocol: 6, port: 8080, prefixBits: 14})
    assert.equal(k.length, 16)
    assert.equal(k.readUInt32LE(0), POLICY_PREFIX_FIXED + 8 + 14)
    assert.equal(k[12], 1)
    assert.equal(k[13], 6)
    assert.equal(k.readUInt16BE(14), 8080)
    assert.deepEqual(decodePolicyKey(k), {endpointId: 7, identity: 256, direction: 'egress', protocol: 6, port: 8080, prefixBits: 14})
    const exact = encodePolicyKey({endpointId: 7, identity: 0, direction: 'ingress', protocol: 17, port: 53, prefixBits: 16})
    assert.equal(exact.readUInt32LE(0), POLICY_PREFIX_FULL)
    const any = encodePolicyKey({endpointId: 7, identity: 0, direction: 'ingress', protocol: 0, port: 0, prefixBits: 0})
    assert.equal(any.readUInt32LE(0), POLICY_PREFIX_FIXED)
    assert.deepEqual(decodePolicyKey(any), {endpointId: 7, identity: 0, direction: 'ingress', protocol: 0, port: 0, prefixBits: 0})
  })

  it('merges overlapping ranges, keeps protocols apart, and lets any-protocol stand alone', () => {
    const w = policyMapWrites(pol([rule({port: 80, endPort: 90}), rule({port: 85, endPort: 100}), rule({port: 101, endPort: 101}), rule({protocol: 17, port: 53, endPort: 53})]))
    const tcp = w.filter((x) => x.protocol === 6)
    assert.ok(tcp.every((x) => x.rulePort === 80 && x.ruleEndPort === 101), 'one merged rule 80-101')
    assert.equal(covered(tcp).size, 22)
    assert.deepEqual(w.filter((x) => x.protocol === 17).map((x) => [x.port, x.prefixBits]), [[53, 16]])
    const all = policyMapWrites(pol([rule({}), rule({protocol: 0, port: 0, endPort: 0}), rule({identity: 300, port: 0, endPort: 0})]))
    assert.deepEqual(all.map((x) => [x.identity, x.protocol, x.prefixBits]), [[256, 0, 0], [300, 6, 0]])
    // The slab encoder writes what the per-key codec writes.
    for (const x of w) assert.deepEqual(decodePolicyKey(encodePolicyKey(x)), {endpointId: x.endpointId, identity: x.identity, direction: x.direction, protocol: x.protocol, port: x.port, prefixBits: x.prefixBits})
    const big = endpointPolicyState(pol(Array.from({length: 20_000}, (_, i) => rule({identity: 1000 + i, port: 1 + (i % 3000), endPort: 1 + (i % 3000) + (i % 7)}))))
    assert.ok(big.entries.size > 20_000)
    for (const [k, v] of big.entries) assert.equal(k, v.key.toString('latin1'))
    const one = [...encodeEndpointRules(pol([rule({port: 80, endPort: 101})])).values()][0]
    assert.ok(one.value.equals(encodePolicyValue({rulePort: 80, ruleEndPort: 101})))
    assert.deepEqual(decodePolicyValue(one.value), {rulePort: 80, ruleEndPort: 101})
  })

  it('refuses entries the datapath cannot say, naming the cause', () => {
    assert.throws(() => policyMapWrites(pol([rule({protocol: 1 as never})])), /protocol 1 is not/)
    assert.throws(() => policyMapWrites(pol([rule({protocol: 0, port: 80})])), /port 80 with any protocol/)
    assert.throws(() => policyMapWrites(pol([rule({port: 90, endPort: 80})])), /port range 90-80/)
    assert.throws(() => policyMapWrites(pol([rule({port: 0, endPort: 5})])), /endPort 5 without a port/)
    assert.throws(() => policyMapWrites(pol([], {endpointId: 0})), /endpoint id/)
  })

  it('the revision changes with the rules and the flags, and only then', () => {
    const a = endpointPolicyState(pol([rule({})]))
    assert.equal(a.state!.revision, endpointPolicyState(pol([rule({})])).state!.revision)
    assert.notEqual(a.state!.revision, endpointPolicyState(pol([rule({port: 81, endPort: 81})])).state!.revision)
    assert.notEqual(a.state!.revision, endpointPolicyState(pol([rule({})], {egressEnforced: true})).state!.revision)
    assert.equal(endpointPolicyState(pol([], {ingressEnforced: false})).state, undefined, 'open both ways: no state entry')
  })

  it('plans only the changes, opening before and tightening after the entries', () => {
    const root = '/sys/fs/bpf/pn-x'
    const v1 = endpointPolicyState(pol([rule({}), rule({identity: 300})]))
    const v2 = endpointPolicyState(pol([rule({}), rule({identity: 301})]))
    const {ops, diff} = planEndpointPolicy(root, v1, v2)
    assert.deepEqual(diff.added.map((k) => k.identity), [301])
    assert.deepEqual(diff.removed.map((k) => k.identity), [300])
    assert.equal(diff.updated.length, 0)
    assert.deepEqual(ops.map((o) => `${o.kind} ${path.basename((o as {map: string}).map)}`), ['map.update pn_policy', 'map.delete pn_policy', 'map.update pn_policy_ep'])
    assert.equal(planEndpointPolicy(root, v2, v2).ops.length, 0, 'nothing to do twice')
    // Back to open: flags off first, then the entries, then the state entry.
    const open = endpointPolicyState(pol([], {ingressEnforced: false}))
    const back = planEndpointPolicy(root, v2, open).ops
    assert.equal(back[0].kind, 'map.update')
    assert.deepEqual(decodePolicyEpInfo((back[0] as {value: Buffer}).value), {ingressEnforced: false, egressEnforced: false, revision: v2.state!.revision})
    assert.deepEqual(back.slice(1).map((o) => `${o.kind} ${path.basename((o as {map: string}).map)}`), ['map.delete pn_policy', 'map.delete pn_policy', 'map.delete pn_policy_ep'])
  })

  it('reads the maps back into the same state the writer plans from', () => {
    const want = endpointPolicyState(pol([rule({port: 8000, endPort: 8100}), rule({direction: 'egress', identity: 0, protocol: 17, port: 0, endPort: 0})], {egressEnforced: true}))
    const {ops} = planEndpointPolicy('/r', {endpointId: 7, entries: new Map()}, want)
    const dump = (name: string): MapEntry[] =>
      ops.filter((o): o is Extract<KernelOp, {kind: 'map.update'}> => o.kind === 'map.update' && o.map.endsWith(`/${name}`)).map((o) => ({key: o.key, value: o.value}))
    const back = policyStatesFromDump(dump('pn_policy'), dump('pn_policy_ep')).get(7)!
    assert.deepEqual(back.state, want.state)
    assert.deepEqual([...back.entries.keys()].sort(), [...want.entries.keys()].sort())
    assert.equal(planEndpointPolicy('/r', back, want).ops.length, 0)
  })

  it('writes CIDR identities without touching pod or node entries', () => {
    const entry = (prefix: string, identity: number, flags: number): MapEntry => ({key: encodeIpcacheKey(prefix), value: encodeIpcacheInfo({identity, flags})})
    const ipcache = [entry('10.0.1.5/32', 256, IPCACHE_F_LOCAL), entry('10.0.2.5/32', 257, 0), entry('192.168.0.0/16', 16777217, IPCACHE_F_CIDR), entry('172.16.0.0/12', 16777218, IPCACHE_F_CIDR)]
    const {ops, cidrs} = planCidrIdentities('/r', ipcache, [
      {cidr: '10.0.1.5/32', identity: 16777300},
      {cidr: '192.168.0.0/16', identity: 16777217},
      {cidr: '10.1.0.7/16', identity: 16777219},
    ])
    assert.deepEqual(cidrs, {added: ['10.1.0.0/16'], updated: [], removed: ['172.16.0.0/12'], skipped: ['10.0.1.5/32']})
    assert.deepEqual(ops.map((o) => o.kind), ['map.update', 'map.delete'])
    assert.throws(() => planCidrIdentities('/r', [], [{cidr: '10.0.0.0/8', identity: 1}, {cidr: '10.0.0.0/8', identity: 2}]), /given twice/)
    assert.throws(() => planCidrIdentities('/r', [], [{cidr: '10.0.0.0/33', identity: 1}]), /PN_INVALID_CIDR|prefix length/)
  })

  describe('writers (recorded ops)', () => {
    let root: string
    before(() => {
      root = mkdtempSync(path.join(os.tmpdir(), 'pn-polw-'))
      mkdirSync(path.join(root, 'maps'))
      for (const m of ['pn_policy', 'pn_policy_ep', 'pn_ipcache']) writeFileSync(path.join(root, 'maps', m), '')
    })
    after(() => rmSync(root, {recursive: true, force: true}))

    it('writeEndpointPolicy with the current policy reads nothing and writes one apply', async () => {
      const k = new RecordingBackend()
      const r = await writeEndpointPolicy(k, {bpffsRoot: root}, pol([rule({}), rule({port: 443, endPort: 443})]), pol([rule({})]))
      assert.equal(k.applied.length, 1)
      assert.ok(k.applied[0].ops.every((o) => o.kind === 'map.update'))
      assert.equal(r.mapOps, 2)
      assert.deepEqual(r.endpoints[0].added.map((x) => x.port), [443])
      const again = await writeEndpointPolicy(k, {bpffsRoot: root}, pol([rule({})]), pol([rule({})]))
      assert.equal(again.changed, false)
      assert.equal(k.applied.length, 1, 'no apply for no change')
      const dry = await writeEndpointPolicy(k, {bpffsRoot: root}, pol([]), pol([rule({})]), {dryRun: true})
      assert.equal(dry.dryRun, true)
      assert.ok(dry.mapOps > 0)
      assert.equal(k.applied.length, 1, 'dry run applies nothing')
    })

    it('writeNodePolicy dumps the maps, clears endpoints no longer listed, and orders CIDRs around the rules', async () => {
      const stale = endpointPolicyState(pol([rule({})], {endpointId: 9}))
      const staleOps = planEndpointPolicy(root, {endpointId: 9, entries: new Map()}, stale).ops as Extract<KernelOp, {kind: 'map.update'}>[]
      const dumps: Record<string, MapEntry[]> = {
        pn_policy: staleOps.filter((o) => o.map.endsWith('/pn_policy')).map((o) => ({key: o.key, value: o.value})),
        pn_policy_ep: staleOps.filter((o) => o.map.endsWith('/pn_policy_ep')).map((o) => ({key: o.key, value: o.value})),
        pn_ipcache: [{key: encodeIpcacheKey('172.16.0.0/12'), value: encodeIpcacheInfo({identity: 16777218, flags: IPCACHE_F_CIDR})}],
      }
      const k = new RecordingBackend((op) => (op.kind === 'map.dump' ? {kind: 'map.dump', entries: dumps[path.basename(op.map)] ?? []} : undefined))
      const r = await writeNodePolicy(k, {bpffsRoot: root}, {endpoints: [pol([rule({identity: 16777217})])], cidrIdentities: [{cidr: '10.9.0.0/16', identity: 16777217}]})
      const writes = k.applied.at(-1)!.ops
      assert.equal(path.basename((writes[0] as {map: string}).map), 'pn_ipcache', 'the CIDR first')
      assert.equal(writes[0].kind, 'map.update')
      assert.equal(writes.at(-1)!.kind, 'map.delete')
      assert.equal(path.basename((writes.at(-1) as {map: string}).map), 'pn_ipcache', 'the old CIDR last')
      assert.deepEqual(r.endpoints.map((d) => d.endpointId), [7, 9])
      assert.deepEqual(r.endpoints[1].removed.length, 1)
      assert.deepEqual(r.cidrs.added, ['10.9.0.0/16'])
      assert.deepEqual(r.cidrs.removed, ['172.16.0.0/12'])
      await assert.rejects(writeNodePolicy(k, {bpffsRoot: root}, {endpoints: [pol([]), pol([])], cidrIdentities: []}), /lists this endpoint twice/)
    })

    it('refuses to write where the policy maps are not pinned', async () => {
      await assert.rejects(writeEndpointPolicy(new RecordingBackend(), {bpffsRoot: path.join(root, 'nope')}, pol([])), (e: Error & {code?: string}) => e.code === 'PN_BPF_NOT_LOADED' && /pn_policy/.test(e.message))
    })
  })
})
