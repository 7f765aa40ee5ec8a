import assert from 'node:assert/strict'
import {isPnError} from '../../src/errors.js'
import {
  LB_SLOT_BANK,
  decodeCt4Entry,
  decodeCt4Key,
  decodeLb4Backend,
  decodeLb4BackendKey,
  decodeLb4Key,
  decodeLb4Service,
  decodeLb4Stats,
  encodeCt4Entry,
  encodeCt4Key,
  encodeLb4Backend,
  encodeLb4BackendKey,
  encodeLb4Key,
  encodeLb4Service,
  encodeLb4StatsKey,
} from '../../src/datapath/bpf/maps/index.js'
import {checkVipAgainstNode, parseBackend, parseFrontend, parseService, parseServiceList} from '../../src/service/model.js'
import {emptyTable, planRollForward, planServices, serviceKeys, type PlannedOps, type ServiceTable} from '../../src/service/plan.js'
import {writeOps} from '../../src/service/apply.js'
import {backendIdOf, decodeTable, encodeTable, endpointNum, frontendNumOfKey, ipNum, loadScoped, patchScoped, protoNum, type ServiceTable as Table} from '../../src/service/table.js'
import {OpList, type MapWriter} from '../../src/datapath/bpf/op-list.js'

function throwsCode(fn: () => unknown, code: string) {
  assert.throws(fn, (e: unknown) => isPnError(e) && e.code === code && Boolean(e.hint))
}

describe('service model: parsing and validation', () => {
  it('parses frontends (tcp default, udp, normalised address) and backends', () => {
    assert.deepEqual(parseFrontend('10.96.0.10:80'), {vip: '10.96.0.10', port: 80, proto: 'tcp'})
    assert.deepEqual(parseFrontend('10.96.0.10:53/UDP'), {vip: '10.96.0.10', port: 53, proto: 'udp'})
    assert.deepEqual(parseBackend('10.1.0.5:8080'), {ip: '10.1.0.5', port: 8080})
  })

  it('refuses bad addresses, ports and protocols with PN_SERVICE_INVALID', () => {
    for (const f of ['10.96.0.10', '10.96.0.10:0', '10.96.0.10:65536', '10.96.0.10:http', '10.96.0.300:80', 'fd00::1:80', '10.96.0.10:80/sctp', '127.0.0.1:80', '0.0.0.0:80', '224.0.0.1:80']) {
      throwsCode(() => parseFrontend(f), 'PN_SERVICE_INVALID')
    }
    for (const b of ['10.1.0.5', 'x:80', '10.1.0.5:0', '10.1.0.5:-1']) throwsCode(() => parseBackend(b), 'PN_SERVICE_INVALID')
  })

  it('refuses duplicate backends and more backends than a slot bank holds', () => {
    throwsCode(() => parseService('10.96.0.10:80', ['10.1.0.5:80', '10.1.0.5:80']), 'PN_SERVICE_INVALID')
    const many = Array.from({length: 32768}, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1:80`)
    throwsCode(() => parseService('10.96.0.10:80', many), 'PN_SERVICE_LIMIT')
    assert.equal(parseService('10.96.0.10:80', many.slice(0, 32767)).backends.length, 32767)
  })

  it('apply files: a JSON list of {frontend, backends}; a frontend listed twice conflicts', () => {
    assert.equal(parseServiceList('[{"frontend":"10.96.0.1:80","backends":["10.1.0.1:80"]},{"frontend":"10.96.0.1:80/udp","backends":[]}]').length, 2)
    throwsCode(() => parseServiceList('{"frontend":"10.96.0.1:80"}'), 'PN_SERVICE_INVALID')
    throwsCode(() => parseServiceList('[{"frontend":"10.96.0.1:80"}]'), 'PN_SERVICE_INVALID')
    throwsCode(() => parseServiceList('not json'), 'PN_SERVICE_INVALID')
    throwsCode(() => parseServiceList('[{"frontend":"10.96.0.1:80","backends":[]},{"frontend":"10.96.0.1:80/tcp","backends":[]}]'), 'PN_SERVICE_CONFLICT')
  })

  it('a VIP inside a pod CIDR or equal to a node address conflicts', () => {
    const node = {podCidrs: ['10.1.0.0/24', 'fd00::/64'], addresses: ['172.30.0.1', '10.1.0.1']}
    throwsCode(() => checkVipAgainstNode(parseFrontend('10.1.0.77:80'), node), 'PN_SERVICE_CONFLICT')
    throwsCode(() => checkVipAgainstNode(parseFrontend('172.30.0.1:80'), node), 'PN_SERVICE_CONFLICT')
    checkVipAgainstNode(parseFrontend('10.96.0.1:80'), node)
  })
})

describe('service map codecs', () => {
  it('round-trip; ports and addresses in network order', () => {
    const k = {vip: '10.96.0.10', port: 80, proto: 'tcp' as const, slot: LB_SLOT_BANK + 2}
    assert.deepEqual(decodeLb4Key(encodeLb4Key(k)), k)
    assert.equal(encodeLb4Key(k).subarray(0, 6).toString('hex'), '0a60000a0050')
    const v = {backendId: 7, revNatIndex: 100_000, count: 3, slotBase: LB_SLOT_BANK}
    assert.deepEqual(decodeLb4Service(encodeLb4Service(v)), v)
    assert.deepEqual(decodeLb4BackendKey(encodeLb4BackendKey(9)), {backendId: 9})
    assert.deepEqual(decodeLb4Backend(encodeLb4Backend({ip: '10.1.0.5', port: 8080, proto: 'udp'})), {ip: '10.1.0.5', port: 8080, proto: 'udp'})
    const ck = {saddr: '10.1.0.10', daddr: '10.96.0.10', sport: 40000, dport: 80, proto: 'tcp' as const, dir: 'service' as const}
    assert.deepEqual(decodeCt4Key(encodeCt4Key(ck)), ck)
    const ce = {packets: 3, bytes: 180, backendId: 2, revNatIndex: 5, clientAddr: '10.1.0.10', vip: '10.96.0.10', vport: 80, flags: 1}
    assert.deepEqual(decodeCt4Entry(encodeCt4Entry(ce)), ce)
    assert.equal(encodeLb4StatsKey(5).length, 4)
    const s = Buffer.alloc(32)
    s.writeBigUInt64LE(2n, 0)
    s.writeBigUInt64LE(1n, 16)
    assert.deepEqual(decodeLb4Stats([s, s]), {packets: 4, bytes: 0, connections: 2, replies: 0})
  })
})

const svc = (frontend: string, ...backends: string[]) => parseService(frontend, backends)
const kinds = (ops: PlannedOps) =>
  ops.toArray().map((o) => {
    if (o.op.map === 'pn_lb4_backends') return `${o.op.op} backend ${decodeLb4BackendKey(o.op.key).backendId}`
    const k = decodeLb4Key(o.op.key)
    return `${o.op.op} ${k.vip}:${k.port} slot ${k.slot}`
  })

describe('service plan: diff and map-operation order', () => {
  it('add: backends first, then the bank slots, then slot 0 (which carries backend 1)', () => {
    const p = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80', '10.1.0.3:80')])
    assert.deepEqual(kinds(p.ops), ['update backend 1', 'update backend 2', 'update backend 3', 'update 10.96.0.1:80 slot 2', 'update 10.96.0.1:80 slot 3', 'update 10.96.0.1:80 slot 0'])
    assert.deepEqual(decodeLb4Service((p.ops.at(5).op as {value: Buffer}).value), {backendId: 1, revNatIndex: 1, count: 3, slotBase: 0})
    assert.deepEqual(p.diff.added.map((c) => c.frontend), ['10.96.0.1:80/tcp'])
    assert.ok(p.ops.toArray().every((o) => o.undo.op === 'delete'))
  })

  it('a one-backend service is one entry; 10,000 of them sharing a backend are 10,001 operations', () => {
    const many = Array.from({length: 10_000}, (_, i) => svc(`10.96.${i >> 8}.${i & 255}:80`, '10.1.0.1:80'))
    assert.equal(planServices(emptyTable(), many).ops.length, 10_001)
  })

  it('update: new set into the other bank, slot 0 switch, old bank and unused backends deleted last; ids and rev-NAT kept', () => {
    const t0 = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80', '10.1.0.3:80')]).next
    const p = planServices(t0, [svc('10.96.0.1:80', '10.1.0.3:80', '10.1.0.4:80')])
    assert.deepEqual(kinds(p.ops), [
      'update backend 4',
      `update 10.96.0.1:80 slot ${LB_SLOT_BANK + 2}`,
      'update 10.96.0.1:80 slot 0',
      'delete 10.96.0.1:80 slot 2',
      'delete 10.96.0.1:80 slot 3',
      'delete backend 1',
      'delete backend 2',
    ])
    assert.deepEqual(decodeLb4Service((p.ops.at(2).op as {value: Buffer}).value), {backendId: 3, revNatIndex: 1, count: 2, slotBase: LB_SLOT_BANK})
    // Undoing the switch restores the old slot 0.
    assert.deepEqual(decodeLb4Service((p.ops.at(2).undo as {value: Buffer}).value), {backendId: 1, revNatIndex: 1, count: 3, slotBase: 0})
    assert.equal(backendIdOf(p.next, '10.1.0.3:80/tcp'), 3)
    assert.deepEqual(p.diff.updated[0].previous, ['10.1.0.1:80', '10.1.0.2:80', '10.1.0.3:80'])
    // The same set in another order is no change.
    assert.equal(planServices(t0, [svc('10.96.0.1:80', '10.1.0.3:80', '10.1.0.1:80', '10.1.0.2:80')]).ops.length, 0)
  })

  it('remove: slot 0 first, then its slots, then its backends; scope limits a change to one service', () => {
    const t0 = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.1:80')]).next
    const all = planServices(t0, [svc('10.96.0.2:80', '10.1.0.1:80')])
    assert.deepEqual(kinds(all.ops), ['delete 10.96.0.1:80 slot 0', 'delete 10.96.0.1:80 slot 2', 'delete backend 2'])
    const del = planServices(t0, [], {scope: new Set(['10.96.0.2:80/tcp'])})
    assert.deepEqual(kinds(del.ops), ['delete 10.96.0.2:80 slot 0'], 'backend 1 is still used by the other service')
    assert.deepEqual(serviceKeys(del.next), ['10.96.0.1:80/tcp'])
  })

  it('resync (maps re-created): rewrites every service with the same ids and deletes nothing', () => {
    const t0 = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80'), svc('10.96.0.2:80', '10.1.0.2:80')]).next
    const p = planServices(t0, [svc('10.96.0.1:80', '10.1.0.1:80'), svc('10.96.0.2:80', '10.1.0.2:80')], {resync: true})
    assert.deepEqual(kinds(p.ops).sort(), ['update 10.96.0.1:80 slot 0', 'update 10.96.0.2:80 slot 0', 'update backend 1', 'update backend 2'])
  })

  it('refuses a table the services map cannot hold', () => {
    // Specs built directly (no parsing): 20 × 30,000 backends = 600,000 entries > 524,288.
    const big = Array.from({length: 20}, (_, s) => ({
      frontend: {vip: `10.96.0.${s + 1}`, port: 80, proto: 'tcp' as const},
      backends: Array.from({length: 30_000}, (_, i) => ({ip: `10.${(i >> 8) & 255}.${i & 255}.${s + 1}`, port: 80})),
    }))
    throwsCode(() => planServices(emptyTable(), big), 'PN_SERVICE_LIMIT')
  })
})

/**
 * A stand-in for the addon's frame writer over in-memory maps: applies records in order, skips deletes of absent
 * keys, and fails the chosen record like the kernel would (a full map: E2BIG), so the revert can
 * be checked exactly.
 */
function fakeWriter(opts: {failAt?: (n: number) => boolean} = {}) {
  const maps = new Map<string, Map<string, string>>()
  const frames: OpList[] = []
  let n = 0
  const writer: MapWriter = {
    async write(ops: OpList) {
      frames.push(ops)
      const skipped: number[] = []
      for (let i = 0; i < ops.length; i++) {
        const o = ops.at(i)
        const m = maps.get(o.map) ?? new Map<string, string>()
        maps.set(o.map, m)
        const key = o.key.toString('hex')
        if (opts.failAt?.(n++)) return {done: i, skipped, failed: {index: i, errno: 7, error: 'Argument list too long'}}
        if (o.op === 'update') m.set(key, o.value.toString('hex'))
        else if (m.has(key)) m.delete(key)
        else skipped.push(i)
      }
      return {done: ops.length, skipped}
    },
    async close() {},
  }
  const snapshot = () => JSON.stringify([...maps].map(([k, m]) => [k, [...m].sort()]).filter(([, m]) => (m as unknown[]).length > 0).sort())
  return {writer, maps, frames, snapshot}
}

describe('service apply: one frame, exact revert on failure', () => {
  let t0: ServiceTable

  beforeEach(() => {
    t0 = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.3:80')]).next
  })

  it('a write refused mid-way is undone: the maps are exactly as before', async () => {
    const setup = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.3:80')]).ops
    const plan = planServices(t0, [svc('10.96.0.1:80', '10.1.0.4:80', '10.1.0.5:80', '10.1.0.6:80'), svc('10.96.0.3:80', '10.1.0.1:80')])
    assert.ok(plan.ops.length >= 8)
    for (const failAt of [0, 2, 4, plan.ops.length - 1]) {
      let armed = false
      let n = 0
      const f = fakeWriter({failAt: () => armed && n++ === failAt})
      await writeOps(f.writer, setup)
      const before = f.snapshot()
      armed = true
      f.frames.length = 0
      await assert.rejects(writeOps(f.writer, plan.ops), (e: unknown) => isPnError(e, 'PN_SERVICE_APPLY_FAILED') && e.details?.reverted === failAt)
      assert.equal(f.snapshot(), before, `failure at op ${failAt}`)
      assert.equal(f.frames.length, 2, 'the frame, then one undo frame')
      assert.equal(f.frames[1].length, failAt, 'one inverse per operation that took effect')
    }
  })

  it('a delete of an entry already gone (a killed run wrote the maps, not the table) is skipped, the rest goes on', async () => {
    const f = fakeWriter()
    await writeOps(f.writer, planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.3:80')]).ops)
    const plan = planServices(t0, [svc('10.96.0.2:80', '10.1.0.3:80')])
    assert.ok(plan.ops.toArray().every((o) => o.op.op === 'delete'))
    await writeOps(f.writer, plan.ops)
    const after = f.snapshot()
    f.frames.length = 0
    await writeOps(f.writer, plan.ops) // the table still says the old state: run it again
    assert.equal(f.frames.length, 1, 'one frame; the writer skips the missing deletes')
    assert.equal(f.snapshot(), after)
    assert.equal(f.maps.get('pn_lb4_services')!.size, 1, 'service 2 (slot 0) is still there')
  })

  it('roll-forward after a run killed mid-write: the maps end exactly as the pending table says', async () => {
    const setup = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.3:80'), svc('10.96.0.4:80', '10.1.0.7:80')])
    const committed = setup.next
    const change = planServices(committed, [svc('10.96.0.1:80', '10.1.0.4:80', '10.1.0.5:80', '10.1.0.6:80'), svc('10.96.0.3:80', '10.1.0.1:80'), svc('10.96.0.4:80', '10.1.0.7:80')])
    // The state the maps should end in: the pending table written from empty.
    const clean = fakeWriter()
    await writeOps(clean.writer, planRollForward(emptyTable(), change.next))
    const straight = fakeWriter()
    await writeOps(straight.writer, setup.ops)
    await writeOps(straight.writer, change.ops)
    assert.equal(straight.snapshot(), clean.snapshot(), 'an uninterrupted change ends in the same maps')
    for (let killAt = 0; killAt <= change.ops.length; killAt++) {
      const f = fakeWriter()
      await writeOps(f.writer, setup.ops)
      // The first killAt operations of the change took effect, then the process died.
      const partial = new OpList(change.ops.ops.maps)
      for (let i = 0; i < killAt; i++) partial.addFrom(change.ops.ops, i)
      await f.writer.write(partial)
      await writeOps(f.writer, planRollForward(committed, change.next), {revert: false})
      assert.equal(f.snapshot(), clean.snapshot(), `killed after ${killAt} operations`)
    }
  })
})

describe('service table file', () => {
  it('round-trips through the binary encoding; a truncated file is refused as PN_STATE_CORRUPT', () => {
    const t = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:53/udp', '10.1.0.3:53')]).next
    t.maps = {identity: '23:4711'}
    const b = encodeTable(t)
    const back = decodeTable(b, 'x')
    assert.deepEqual(back, t)
    assert.deepEqual(serviceKeys(back), ['10.96.0.1:80/tcp', '10.96.0.2:53/udp'])
    throwsCode(() => decodeTable(b.subarray(0, b.length - 6), 'x'), 'PN_STATE_CORRUPT')
    throwsCode(() => decodeTable(Buffer.from('{"version":1}'), 'x'), 'PN_STATE_CORRUPT')
  })

  it('plan records carry exactly the bytes of the map descriptors (lb.h layouts)', () => {
    const p = planServices(emptyTable(), [svc('10.96.0.1:80/udp', '10.1.0.1:8080', '10.1.0.2:8080')])
    const ops = p.ops.toArray().map((o) => o.op as {map: string; key: Buffer; value: Buffer})
    assert.deepEqual(ops[0].key, encodeLb4BackendKey(1))
    assert.deepEqual(ops[0].value, encodeLb4Backend({ip: '10.1.0.1', port: 8080, proto: 'udp'}))
    assert.deepEqual(ops[2].key, encodeLb4Key({vip: '10.96.0.1', port: 80, proto: 'udp', slot: 2}))
    assert.deepEqual(ops[2].value, encodeLb4Service({backendId: 2, revNatIndex: 0, count: 0, slotBase: 0}))
    assert.deepEqual(ops[3].key, encodeLb4Key({vip: '10.96.0.1', port: 80, proto: 'udp', slot: 0}))
    assert.deepEqual(ops[3].value, encodeLb4Service({backendId: 1, revNatIndex: 1, count: 2, slotBase: 0}))
  })

  it('add/del load only their services: same operations and the same table as a full load', () => {
    // 60 services; backend 10.1.0.k is shared by services k, k+20, k+40.
    const base = planServices(emptyTable(), Array.from({length: 60}, (_, i) => svc(`10.96.0.${i + 1}:80`, `10.1.0.${i % 20}:80`, ...(i % 3 === 0 ? [`10.2.0.${i}:80`] : [])))).next
    base.maps = {identity: '1:2'}
    const raw = encodeTable(base)
    const canon = (t: Table) => JSON.stringify({
      n: [t.nextBackendId, t.nextRevNat, t.maps],
      s: [...t.services].sort((a, b) => a[0] - b[0]),
      b: [...t.byId].sort((a, b) => a[0] - b[0]),
    })
    const changes: {name: string; desired: ReturnType<typeof svc>[]; keys: string[]}[] = [
      {name: 'update to shared + new backend', desired: [svc('10.96.0.4:80', '10.1.0.9:80', '10.3.0.1:80')], keys: ['10.96.0.4:80/tcp']},
      {name: 'delete (its backends stay: shared)', desired: [], keys: ['10.96.0.5:80/tcp']},
      {name: 'delete (a backend only it lists goes)', desired: [], keys: ['10.96.0.7:80/tcp']},
      {name: 'add with existing and new backends', desired: [svc('10.96.1.1:53/udp', '10.1.0.1:53'), svc('10.96.1.2:80', '10.1.0.2:80', '10.9.9.9:80')].slice(1), keys: ['10.96.1.2:80/tcp']},
      {name: 'delete of an absent service', desired: [], keys: ['10.96.9.9:80/tcp']},
    ]
    for (const c of changes) {
      const full = planServices(decodeTable(raw, 'x'), c.desired, {scope: new Set(c.keys)})
      const endpoints = c.desired.flatMap((d) => d.backends.map((b) => endpointNum(ipNum(b.ip), b.port, protoNum(d.frontend.proto))))
      const sc = loadScoped(raw, 'x', new Set(c.keys.map(frontendNumOfKey)), new Set(endpoints))
      const part = planServices(sc.table, c.desired, {scope: new Set(c.keys), outside: sc.outside})
      assert.deepEqual(kinds(part.ops), kinds(full.ops), c.name)
      assert.deepEqual(part.ops.toArray(), full.ops.toArray(), `${c.name}: bytes`)
      assert.equal(canon(decodeTable(patchScoped(sc, part.next), 'x')), canon(full.next), `${c.name}: table`)
    }
  })
})
