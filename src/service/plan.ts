/**
 * The diff of a desired service table against the current one, and the map operations that
 * carry it out, in an order that never shows a packet a half-written service:
 *
 *   1. new backends (ids nothing references yet)
 *   2. per added/updated service: backend slots 2…n in the bank NOT in use, then slot 0 (count,
 *      bank, backend 1): one atomic map update switches the service to its new set
 *   3. deletes, last: removed services (slot 0 first), the old bank of updated services, then
 *      backends no service references any more
 *
 * Every operation carries its inverse, computed from the current table, so a failed write is
 * undone exactly (apply.ts). Operations are encoded straight into two OpLists (operations and
 * inverses, same index): no object per operation. A change scoped to a few services (add, del)
 * looks only at those services, plus one pass over backend ids to find unreferenced ones.
 * Pure: no kernel, no files.
 */
import {PnError} from '../errors.js'
import {OP_DELETE, OP_UPDATE, OpList, VALUE_OFFSET, KEY_OFFSET, type OpMap} from '../datapath/bpf/op-list.js'
import type {MapOp} from '../datapath/bpf/map-io.js'
import {LB4_BACKENDS_MAX_ENTRIES} from '../datapath/bpf/maps/lb4-backends.js'
import {LB4_SERVICES_MAX_ENTRIES, LB_SLOT_BANK} from '../datapath/bpf/maps/lb4-services.js'
import {writeU16, writeU32} from '../datapath/bpf/maps/layout.js'
import {backendKey, frontendKey, type ServiceSpec} from './model.js'
import {backendStr, endpointNum, type Outside, frontendNumOfKey, ipNum, protoNum, serviceKey, splitEndpoint, type ServiceTable, type StoredService} from './table.js'

export {emptyTable, type ServiceTable, type StoredService} from './table.js'

/** The maps a service change writes, in record map-index order (plans write the first two;
 * apply.ts sets the datapath's service gate, the third, before the first service lands). */
export const LB_OP_MAPS: readonly OpMap[] = [
  {name: 'pn_lb4_services', keySize: 12, valueSize: 12},
  {name: 'pn_lb4_backends', keySize: 4, valueSize: 8},
  {name: 'pn_lb4_gate', keySize: 4, valueSize: 4},
]
export const LB_GATE_MAP = 2
const SERVICES = 0
const BACKENDS = 1

export interface PlannedOp {
  op: MapOp
  /** Restores what `op` changed. */
  undo: MapOp
}

/** Operations and their inverses (record i of `undo` undoes record i of `ops`). */
export class PlannedOps {
  readonly ops = new OpList(LB_OP_MAPS, 64)
  readonly undo = new OpList(LB_OP_MAPS, 64)
  get length(): number {
    return this.ops.length
  }

  at(i: number): PlannedOp {
    return {op: this.ops.at(i), undo: this.undo.at(i)}
  }

  toArray(): PlannedOp[] {
    return Array.from({length: this.length}, (_, i) => this.at(i))
  }
}

export interface ServiceChange {
  frontend: string
  backends: string[]
  /** For updates: the backends before. */
  previous?: string[]
}

export interface ServiceDiff {
  /** The first DIFF_LIST_LIMIT of each kind; `counts` is exact. */
  added: ServiceChange[]
  updated: ServiceChange[]
  removed: ServiceChange[]
  unchanged: number
  counts: {added: number; updated: number; removed: number; unchanged: number}
}

/** Lists longer than this are cut in results (`counts` stays exact). */
export const DIFF_LIST_LIMIT = 1000

/** The diff as reported: exact counts, lists cut at DIFF_LIST_LIMIT entries each. */
export function reportDiff(d: ServiceDiff): ServiceDiff & {truncated: boolean} {
  return {...d, counts: {...d.counts, unchanged: d.unchanged}, truncated: [d.counts.added, d.counts.updated, d.counts.removed].some((n) => n > DIFF_LIST_LIMIT)}
}

export interface ServicePlan {
  diff: ServiceDiff
  next: ServiceTable
  ops: PlannedOps
}

// --- record encoders (layouts: lb.h; checked against the map descriptors in test/unit/service.test.ts)

function putServiceKey(b: Buffer, off: number, s: StoredService, slot: number): void {
  const k = off + KEY_OFFSET
  b.writeUInt32BE(s.vip, k)
  b.writeUInt16BE(s.port, k + 4)
  writeU16(b, slot, k + 6)
  b[k + 8] = s.proto
}

function putServiceValue(b: Buffer, off: number, backendId: number, revNat: number, count: number, slotBase: number): void {
  const v = off + VALUE_OFFSET
  writeU32(b, backendId, v)
  writeU32(b, revNat, v + 4)
  writeU16(b, count, v + 8)
  writeU16(b, slotBase, v + 10)
}

function putBackendKey(b: Buffer, off: number, id: number): void {
  writeU32(b, id, off + KEY_OFFSET)
}

function putBackendValue(b: Buffer, off: number, endpoint: number): void {
  const e = splitEndpoint(endpoint)
  const v = off + VALUE_OFFSET
  b.writeUInt32BE(e.addr, v)
  b.writeUInt16BE(e.port, v + 4)
  b[v + 6] = e.proto
}

/** Slot 0 of `s` as an update into `l`. */
function slot0Update(l: OpList, s: StoredService): void {
  const off = l.add(OP_UPDATE, SERVICES)
  putServiceKey(l.buf, off, s, 0)
  putServiceValue(l.buf, off, s.ids.length > 0 ? s.ids[0] : 0, s.revNat, s.ids.length, s.slotBase)
}

function slotDelete(l: OpList, s: StoredService, slot: number): void {
  const off = l.add(OP_DELETE, SERVICES) // before reading l.buf: add() may grow it
  putServiceKey(l.buf, off, s, slot)
}

/** Bank slot `i` (≥ 2) of `s` as an update. */
function bankUpdate(l: OpList, s: StoredService, i: number): void {
  const off = l.add(OP_UPDATE, SERVICES)
  putServiceKey(l.buf, off, s, s.slotBase + i)
  putServiceValue(l.buf, off, s.ids[i - 1], 0, 0, 0)
}

function backendUpdate(l: OpList, id: number, endpoint: number): void {
  const off = l.add(OP_UPDATE, BACKENDS)
  putBackendKey(l.buf, off, id)
  putBackendValue(l.buf, off, endpoint)
}

function backendDelete(l: OpList, id: number): void {
  const off = l.add(OP_DELETE, BACKENDS)
  putBackendKey(l.buf, off, id)
}

// --- planning

export interface PlanOptions {
  /**
   * Keys of the services this change is about; the others are carried over untouched (add/del
   * of one service in a big table). Undefined: the desired list is the whole table (apply).
   */
  scope?: Set<string>
  /**
   * The kernel's maps are not the ones `current` was written to (re-created): write every
   * service afresh (same ids and banks, so nothing else changes) and delete nothing.
   */
  resync?: boolean
  /**
   * `current` is only part of the table (table.ts loadScoped): the rest, as counts, for the
   * capacity check, and the loaded backend ids that left-out services still list.
   */
  outside?: Outside
}

interface Wanted {
  spec: ServiceSpec
  proto: number
  endpoints: number[]
}

function sameSet(ids: number[], endpoints: number[], known: Map<number, number>): boolean {
  if (ids.length !== endpoints.length) return false
  if (ids.length <= 8) {
    for (const e of endpoints) {
      const id = known.get(e)
      if (id === undefined || !ids.includes(id)) return false
    }
    return true
  }
  const set = new Set(ids)
  return endpoints.every((e) => {
    const id = known.get(e)
    return id !== undefined && set.has(id)
  })
}

/** Diff `desired` against `current` and order the map operations (see the file comment). */
export function planServices(current: ServiceTable, desired: ServiceSpec[], opts: PlanOptions = {}): ServicePlan {
  const want = new Map<number, Wanted>()
  if (!opts.scope) {
    // A whole table that cannot fit is refused before any backend gets an id.
    let entries = 0
    for (const d of desired) entries += Math.max(1, d.backends.length)
    if (entries > LB4_SERVICES_MAX_ENTRIES) throw tooManyEntries(entries)
  }
  for (const d of desired) {
    const proto = protoNum(d.frontend.proto)
    const endpoints = d.backends.map((b) => endpointNum(ipNum(b.ip), b.port, proto))
    want.set(endpointNum(ipNum(d.frontend.vip), d.frontend.port, proto), {spec: d, proto, endpoints})
  }
  const next: ServiceTable = {
    version: 2,
    ...(current.maps ? {maps: current.maps} : {}),
    nextBackendId: current.nextBackendId,
    nextRevNat: current.nextRevNat,
    services: new Map(current.services),
    backends: new Map(current.backends),
    byId: new Map(current.byId),
  }
  const diff: ServiceDiff = {added: [], updated: [], removed: [], unchanged: 0, counts: {added: 0, updated: 0, removed: 0, unchanged: 0}}
  const names = (t: ServiceTable, s: StoredService) => s.ids.map((id) => backendStr(t.byId.get(id)!))
  const written: StoredService[] = []
  const oldBanks: StoredService[] = []
  const removed: StoredService[] = []
  const newIds: number[] = []
  const idFor = (e: number): number => {
    let id = next.backends.get(e)
    if (id === undefined) {
      id = next.nextBackendId++
      next.backends.set(e, id)
      next.byId.set(id, e)
      newIds.push(id)
    }
    return id
  }
  const visit = (key: number) => {
    const cur = current.services.get(key)
    const w = want.get(key)
    if (!w) {
      if (!cur) return
      next.services.delete(key)
      removed.push(cur)
      if (diff.counts.removed++ < DIFF_LIST_LIMIT) diff.removed.push({frontend: serviceKey(cur), backends: names(current, cur)})
      return
    }
    if (cur && sameSet(cur.ids, w.endpoints, current.backends)) {
      diff.unchanged++
      return
    }
    const ids = w.endpoints.map(idFor)
    let s: StoredService
    if (cur) {
      s = {...cur, slotBase: cur.slotBase === 0 ? LB_SLOT_BANK : 0, ids}
      oldBanks.push(cur)
      if (diff.counts.updated++ < DIFF_LIST_LIMIT) diff.updated.push({frontend: frontendKey(w.spec.frontend), backends: w.spec.backends.map(backendKey), previous: names(current, cur)})
    } else {
      const f = w.spec.frontend
      s = {vip: ipNum(f.vip), port: f.port, proto: w.proto, revNat: next.nextRevNat++, slotBase: 0, ids}
      if (diff.counts.added++ < DIFF_LIST_LIMIT) diff.added.push({frontend: frontendKey(f), backends: w.spec.backends.map(backendKey)})
    }
    next.services.set(key, s)
    written.push(s)
  }
  if (opts.scope) {
    for (const k of opts.scope) visit(frontendNumOfKey(k))
  } else {
    for (const k of current.services.keys()) visit(k)
    for (const k of want.keys()) if (!current.services.has(k)) visit(k)
  }
  diff.counts.unchanged = diff.unchanged

  // Backends no service of the next table lists any more (one pass over ids, no strings).
  const unused: number[] = []
  if (oldBanks.length + removed.length > 0) {
    const used = new Set<number>()
    for (const s of next.services.values()) for (const id of s.ids) used.add(id)
    for (const id of current.byId.keys()) {
      if (used.has(id) || opts.outside?.used.has(id)) continue
      unused.push(id)
      next.backends.delete(next.byId.get(id)!)
      next.byId.delete(id)
    }
  }
  checkCapacity(current, next, oldBanks, removed, newIds.length, opts.outside)

  const plan = new PlannedOps()
  const {ops, undo} = plan
  if (opts.resync) {
    // The maps were re-created: write the whole next table, delete nothing.
    diff.unchanged = 0
    diff.counts.unchanged = 0
    rewriteAll(plan, next)
    return {diff, next, ops: plan}
  }
  for (const id of newIds) {
    backendUpdate(ops, id, next.byId.get(id)!)
    backendDelete(undo, id)
  }
  for (const s of written) {
    for (let i = 2; i <= s.ids.length; i++) {
      bankUpdate(ops, s, i)
      slotDelete(undo, s, s.slotBase + i)
    }
  }
  for (const s of written) {
    slot0Update(ops, s)
    const cur = current.services.get(endpointNum(s.vip, s.port, s.proto))
    if (cur) slot0Update(undo, cur)
    else slotDelete(undo, s, 0)
  }
  for (const cur of removed) {
    slotDelete(ops, cur, 0)
    slot0Update(undo, cur)
    for (let i = 2; i <= cur.ids.length; i++) {
      slotDelete(ops, cur, cur.slotBase + i)
      bankUpdate(undo, cur, i)
    }
  }
  for (const cur of oldBanks) {
    for (let i = 2; i <= cur.ids.length; i++) {
      slotDelete(ops, cur, cur.slotBase + i)
      bankUpdate(undo, cur, i)
    }
  }
  for (const id of unused) {
    backendDelete(ops, id)
    backendUpdate(undo, id, current.byId.get(id)!)
  }
  return {diff, next, ops: plan}
}

/**
 * After a run that died between writing the maps and committing the table: the maps hold
 * anything between `committed` and `pending` (the table that run was writing). Roll forward:
 * write every entry of `pending`, then delete what only `committed` had (a delete of an entry
 * already gone is skipped by the writer).
 */
export function planRollForward(committed: ServiceTable, pending: ServiceTable): PlannedOps {
  const plan = new PlannedOps()
  const {ops, undo} = plan
  rewriteAll(plan, pending)
  for (const [k, cur] of committed.services) {
    const p = pending.services.get(k)
    if (!p) {
      slotDelete(ops, cur, 0)
      slot0Update(undo, cur)
    }
    const from = p && p.slotBase === cur.slotBase ? p.ids.length + 1 : 2
    for (let i = Math.max(2, from); i <= cur.ids.length; i++) {
      slotDelete(ops, cur, cur.slotBase + i)
      bankUpdate(undo, cur, i)
    }
  }
  for (const [id, e] of committed.byId) {
    if (pending.byId.has(id)) continue
    backendDelete(ops, id)
    backendUpdate(undo, id, e)
  }
  return plan
}

/** Every entry of `t`: backends, bank slots, then slots 0 (inverses: deletes). */
function rewriteAll(plan: PlannedOps, t: ServiceTable): void {
  const {ops, undo} = plan
  for (const [id, e] of t.byId) {
    backendUpdate(ops, id, e)
    backendDelete(undo, id)
  }
  for (const s of t.services.values()) {
    for (let i = 2; i <= s.ids.length; i++) {
      bankUpdate(ops, s, i)
      slotDelete(undo, s, s.slotBase + i)
    }
  }
  for (const s of t.services.values()) {
    slot0Update(ops, s)
    slotDelete(undo, s, 0)
  }
}

/** Entries a service occupies in pn_lb4_services: slot 0 (with backend 1) + backends 2…n. */
function entriesOf(s: StoredService): number {
  return 1 + Math.max(0, s.ids.length - 1)
}

function tooManyEntries(entries: number): PnError {
  return new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${entries} service map entries, pn_lb4_services holds ${LB4_SERVICES_MAX_ENTRIES}`, {
    hint: 'apply fewer services or backends (a service takes 1 entry plus 1 per backend after the first)',
  })
}

/** Refuse a table the maps cannot hold, counting the moment both banks of an update exist. */
function checkCapacity(current: ServiceTable, next: ServiceTable, oldBanks: StoredService[], removed: StoredService[], newBackends: number, outside?: Outside): void {
  let entries = outside?.entries ?? 0
  for (const s of next.services.values()) entries += entriesOf(s)
  for (const s of oldBanks) entries += entriesOf(s) - 1
  for (const s of removed) entries += entriesOf(s)
  if (entries > LB4_SERVICES_MAX_ENTRIES) throw tooManyEntries(entries)
  // New backends are written before unused ones are deleted.
  const backends = current.byId.size + (outside?.backends ?? 0) + newBackends
  if (backends > LB4_BACKENDS_MAX_ENTRIES) {
    throw new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${backends} backends, pn_lb4_backends holds ${LB4_BACKENDS_MAX_ENTRIES}`, {
      hint: 'apply fewer distinct backends',
    })
  }
}

/** The `vip:port/proto` keys of a table's services. */
export function serviceKeys(t: ServiceTable): string[] {
  return [...t.services.values()].map(serviceKey)
}

export {frontendKey}
