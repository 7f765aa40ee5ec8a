import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {compileObjects} from '../../src/datapath/bpf/index.js'
import {
  MAPS,
  MAP_TYPES,
  structLayouts,
  decodeEndpointInfo,
  decodeEndpointKey,
  decodeIpcacheInfo,
  decodeIpcacheKey,
  decodeLxcInfo,
  decodeLxcKey,
  decodeMetricsKey,
  decodeMetricsValues,
  encodeMetricsKey,
  metricsSlot,
  encodeEndpointInfo,
  encodeEndpointKey,
  encodeIpcacheInfo,
  encodeIpcacheKey,
  encodeLxcInfo,
  encodeLxcKey,
} from '../../src/datapath/bpf/maps/index.js'
import {ExecaRunner} from '../../src/exec/runner.js'

interface BtfType {
  id: number
  kind: string
  name?: string
  size?: number
  members?: {name: string; bits_offset: number; type_id: number}[]
  type_id?: number
  nr_elems?: number
}

describe('bpf map layouts (C structs ↔ TypeScript codecs, via BTF)', function () {
  this.timeout(120_000)
  let cache: string
  let types: BtfType[]

  before(async () => {
    cache = mkdtempSync(path.join(os.tmpdir(), 'pn-bpf-layout-'))
    const r = await compileObjects(new ExecaRunner(), {cacheDir: cache})
    const json = execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', r.objects.datapath], {encoding: 'utf8', maxBuffer: 64 << 20})
    types = (JSON.parse(json) as {types: BtfType[]}).types
  })

  after(() => rmSync(cache, {recursive: true, force: true}))

  const byId = () => new Map(types.map((t) => [t.id, t]))

  /** Byte size of a BTF type, following typedefs/modifiers and arrays. */
  function sizeOf(id: number): number {
    const t = byId().get(id)!
    if (t.size !== undefined) return t.size
    if (t.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(t.type_id!)
    return sizeOf(t.type_id!)
  }

  for (const [name, layout] of Object.entries(structLayouts())) {
    it(`struct ${name}: size and every member offset/size match`, () => {
      const s = types.find((t) => t.kind === 'STRUCT' && t.name === name)
      assert.ok(s, `struct ${name} is not in the object's BTF`)
      assert.equal(s.size, layout.size, `sizeof(struct ${name})`)
      const btfFields = Object.fromEntries(s.members!.map((m) => [m.name, {offset: m.bits_offset / 8, size: sizeOf(m.type_id)}]))
      assert.deepEqual(btfFields, layout.fields)
    })
  }

  /** A BTF map definition's `__uint(name, N)` member: a pointer to an array of N elements. */
  function mapParam(members: {name: string; type_id: number}[], name: string): number | undefined {
    const m = members.find((x) => x.name === name)
    if (!m) return undefined
    const ptr = byId().get(m.type_id)!
    return byId().get(ptr.type_id!)!.nr_elems
  }

  for (const def of MAPS) {
    it(`map ${def.name}: type, max_entries and flags match its descriptor (bpf/include/${def.header})`, () => {
      const v = types.find((t) => t.kind === 'VAR' && t.name === def.name)
      assert.ok(v, `map ${def.name} is not in the object's BTF`)
      const s = byId().get(v.type_id!)!
      assert.equal(mapParam(s.members!, 'type'), MAP_TYPES[def.type], `${def.name} type`)
      assert.equal(mapParam(s.members!, 'map_flags') ?? 0, def.flags, `${def.name} map_flags`)
      assert.equal(mapParam(s.members!, 'max_entries') ?? 0, def.maxEntries, `${def.name} max_entries`)
      const key = s.members!.find((m) => m.name === 'key')
      const value = s.members!.find((m) => m.name === 'value')
      const structOf = (id: number) => byId().get(byId().get(id)!.type_id!)!.name
      // A perf event array declares sizes only (`__uint(key_size, 4)`): compare those.
      if (key) assert.equal(structOf(key.type_id), def.key.name, `${def.name} key struct`)
      else assert.equal(mapParam(s.members!, 'key_size'), def.key.size, `${def.name} key_size`)
      if (value) assert.equal(structOf(value.type_id), def.value.name, `${def.name} value struct`)
      else assert.equal(mapParam(s.members!, 'value_size'), def.value.size, `${def.name} value_size`)
    })
  }

  it('every map the object defines has a descriptor (adding a map is one descriptor + its header)', () => {
    const datasec = types.find((t) => t.kind === 'DATASEC' && t.name === '.maps') as (BtfType & {vars?: {type_id: number}[]}) | undefined
    assert.ok(datasec, 'no .maps section')
    const names = (datasec.vars ?? []).map((x) => byId().get(x.type_id)!.name).sort()
    assert.deepEqual(names, MAPS.map((m) => m.name).sort())
  })

  it('codecs round-trip (endpoint, lxc, ipcache, metrics)', () => {
    const info = {ifindex: 7, endpointId: 42, flags: 0, podMac: '02:00:00:00:00:01', lxcMac: '02:00:00:00:00:02'}
    assert.deepEqual(decodeEndpointKey(encodeEndpointKey('10.0.1.5')), {ip: '10.0.1.5'})
    assert.deepEqual(decodeEndpointKey(encodeEndpointKey('fd00::5')), {ip: 'fd00::5'})
    assert.deepEqual(decodeEndpointInfo(encodeEndpointInfo(info)), info)
    const lxc = {ip4: '10.0.1.5', endpointId: 42, lxcMac: '02:00:00:00:00:02', podMac: '02:00:00:00:00:01', flags: 0}
    assert.deepEqual(decodeLxcKey(encodeLxcKey(9)), {ifindex: 9})
    assert.deepEqual(decodeLxcInfo(encodeLxcInfo(lxc)), lxc)
    assert.deepEqual(decodeIpcacheKey(encodeIpcacheKey('10.0.2.0/24')), {prefix: '10.0.2.0/24'})
    assert.deepEqual(decodeIpcacheInfo(encodeIpcacheInfo({identity: 3, flags: 1, nodeIp: '192.168.1.2'})), {identity: 3, flags: 1, nodeIp: '192.168.1.2'})
    // IPv4 in network order at the start of the 16-byte address; family byte after it.
    assert.equal(encodeEndpointKey('10.0.1.5').toString('hex'), '0a000105' + '00'.repeat(12) + '01000000')
    // LPM prefixlen counts family+pad (32 bits) before the address.
    assert.equal(encodeIpcacheKey('10.0.2.0/24').readUInt32LE(0), 56)
    // pn_metrics slot: point in bits 9..11, direction - 1 in bit 8, outcome byte in 0..7 (metrics.h).
    assert.equal(metricsSlot(132, 2, 1), (1 << 9) | (1 << 8) | 132)
    const key = encodeMetricsKey(132, 2, 1)
    assert.deepEqual(decodeMetricsKey(key), {reason: 'DROP_INVALID_SOURCE', code: -132, description: 'invalid source ip (anti-spoofing)', direction: 'egress', point: 'from-container'})
    const v = Buffer.alloc(16)
    v.writeBigUInt64LE(3n, 0)
    v.writeBigUInt64LE(300n, 8)
    assert.deepEqual(decodeMetricsValues([v, v]), {packets: 6, bytes: 600})
  })
})
