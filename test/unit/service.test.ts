import assert from 'node:assert/strict'
import {RecordingRunner} from '../../src/exec/runner.js'
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
import {emptyTable, planServices, type PlannedOp, type ServiceTable} from '../../src/service/plan.js'
import {writeOps} from '../../src/service/apply.js'

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
const kinds = (ops: PlannedOp[]) =>
  ops.map((o) => {
    if (o.op.map === 'pn_lb4_backends') return `${o.op.op} backend ${decodeLb4BackendKey(o.op.key).backendId}`
    const k = decodeLb4Key(o.op.key)
    return `${o.op.op} ${k.vip}:${k.port} slot ${k.slot}`
  })

describe('service plan: diff and map-operation order', () => {
  it('add: backends first, then the bank slots, then slot 0 (which carries backend 1)', () => {
    const p = planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80', '10.1.0.3:80')])
    assert.deepEqual(kinds(p.ops), ['update backend 1', 'update backend 2', 'update backend 3', 'update 10.96.0.1:80 slot 2', 'update 10.96.0.1:80 slot 3', 'update 10.96.0.1:80 slot 0'])
    assert.deepEqual(decodeLb4Service((p.ops[5].op as {value: Buffer}).value), {backendId: 1, revNatIndex: 1, count: 3, slotBase: 0})
    assert.deepEqual(p.diff.added.map((c) => c.frontend), ['10.96.0.1:80/tcp'])
    assert.ok(p.ops.every((o) => o.undo.op === 'delete'))
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
    assert.deepEqual(decodeLb4Service((p.ops[2].op as {value: Buffer}).value), {backendId: 3, revNatIndex: 1, count: 2, slotBase: LB_SLOT_BANK})
    // Undoing the switch restores the old slot 0.
    assert.deepEqual(decodeLb4Service((p.ops[2].undo as {value: Buffer}).value), {backendId: 1, revNatIndex: 1, count: 3, slotBase: 0})
    assert.equal(p.next.backendIds.get('10.1.0.3:80/tcp'), 3)
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
    assert.deepEqual([...del.next.services.keys()], ['10.96.0.1:80/tcp'])
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
 * A bpftool stand-in for `bpftool -j batch file -` over in-memory maps, failing the chosen
 * line like the kernel would (a full map: E2BIG), so the revert can be checked exactly.
 */
function fakeBpftool(opts: {failAt?: (line: string, n: number) => string | undefined} = {}) {
  const maps = new Map<string, Map<string, string>>()
  let n = 0
  const runner = new RecordingRunner((argv, o) => {
    if (!argv.includes('batch')) return {stdout: '{"id": 1}'}
    const out: {command: string[]; output: unknown}[] = []
    for (const line of (o.input ?? '').trim().split('\n')) {
      const w = line.split(' ')
      const ref = `${w[2]} ${w[3]}`
      const m = maps.get(ref) ?? new Map<string, string>()
      maps.set(ref, m)
      const vi = w.indexOf('value')
      const key = w.slice(6, vi < 0 ? undefined : vi).join('')
      const fail = opts.failAt?.(line, n++)
      let error: string | undefined = fail
      if (!error && w[1] === 'delete' && !m.has(key)) error = 'delete failed: No such file or directory'
      if (error) {
        out.push({command: w, output: {error}})
        break
      }
      if (w[1] === 'update') m.set(key, w.slice(vi + 2).join(''))
      else m.delete(key)
      out.push({command: w, output: null})
    }
    return {stdout: JSON.stringify(out)}
  })
  const snapshot = () => JSON.stringify([...maps].map(([k, m]) => [k, [...m].sort()]).filter(([, m]) => (m as unknown[]).length > 0).sort())
  return {runner, maps, snapshot}
}

describe('service apply: one batch, exact revert on failure', () => {
  const ids = {pn_lb4_services: 11, pn_lb4_backends: 12}
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
      const f = fakeBpftool({failAt: () => (armed && n++ === failAt ? 'update failed: Argument list too long' : undefined)})
      await writeOps(f.runner, '/x', setup, ids)
      const before = f.snapshot()
      armed = true
      f.runner.records.length = 0
      await assert.rejects(writeOps(f.runner, '/x', plan.ops, ids), (e: unknown) => isPnError(e, 'PN_SERVICE_APPLY_FAILED') && e.details?.reverted === failAt)
      assert.equal(f.snapshot(), before, `failure at op ${failAt}`)
      assert.equal(f.runner.records.length, failAt === 0 ? 1 : 2, 'the batch, then one undo batch (none when nothing was written)')
    }
  })

  it('a delete of an entry already gone (a killed run wrote the maps, not the table) is skipped, the rest goes on', async () => {
    const f = fakeBpftool()
    await writeOps(f.runner, '/x', planServices(emptyTable(), [svc('10.96.0.1:80', '10.1.0.1:80', '10.1.0.2:80'), svc('10.96.0.2:80', '10.1.0.3:80')]).ops, ids)
    const plan = planServices(t0, [svc('10.96.0.2:80', '10.1.0.3:80')])
    assert.ok(plan.ops.every((o) => o.op.op === 'delete'))
    await writeOps(f.runner, '/x', plan.ops, ids)
    const after = f.snapshot()
    f.runner.records.length = 0
    await writeOps(f.runner, '/x', plan.ops, ids) // the table still says the old state: run it again
    assert.equal(f.runner.records.length, plan.ops.length, 'a new batch after each missing delete')
    assert.ok(f.runner.records.every((r) => r.argv.join(' ') === 'bpftool -j batch file -'))
    assert.match(f.runner.records[0].input!, /^map delete id 11 key hex/m)
    assert.equal(f.snapshot(), after)
    assert.equal(f.maps.get('id 11')!.size, 1, 'service 2 (slot 0) is still there')
  })

})
