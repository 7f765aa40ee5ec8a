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
 * Every operation carries its inverse, computed from the current table, so a failed batch is
 * undone exactly (apply.ts). Pure: no kernel, no files.
 */
import {PnError} from '../errors.js'
import type {MapOp} from '../datapath/bpf/map-io.js'
import {
  LB4_BACKENDS_MAX_ENTRIES,
  LB4_SERVICES_MAX_ENTRIES,
  LB_SLOT_BANK,
  encodeLb4Backend,
  encodeLb4BackendKey,
  encodeLb4Key,
  encodeLb4Service,
} from '../datapath/bpf/maps/index.js'
import {backendKey, frontendKey, parseBackend, type Frontend, type Protocol, type ServiceSpec} from './model.js'

/** A service as pn keeps it in services.json. */
export interface StoredService {
  vip: string
  port: number
  proto: Protocol
  /** The service's id in the datapath (conntrack, stats). Kept for the service's lifetime. */
  revNat: number
  /** The slot bank in use: 0 or LB_SLOT_BANK. */
  slotBase: number
  /** `ip:port`, in slot order. */
  backends: string[]
}

/**
 * The node's table in memory: Maps, because a 10,000-key plain object costs tens of ms to build
 * (the apply budget is 300 ms). On disk (services.json) the same data as arrays.
 */
export interface ServiceTable {
  version: 1
  /** The pinned pn_lb4_services this table was written to (bpffs inode) and the maps' kernel ids. */
  maps?: {identity: string; ids: Record<string, number>}
  nextBackendId: number
  nextRevNat: number
  /** By frontend key (`vip:port/proto`). */
  services: Map<string, StoredService>
  /** `ip:port/proto` → backend id (shared by every service that lists it). */
  backendIds: Map<string, number>
}

/** services.json: the table with arrays for the maps. */
export interface ServiceTableFile {
  version: 1
  maps?: {identity: string; ids: Record<string, number>}
  nextBackendId: number
  nextRevNat: number
  services: StoredService[]
  backendIds: [string, number][]
}

export function emptyTable(): ServiceTable {
  return {version: 1, nextBackendId: 1, nextRevNat: 1, services: new Map(), backendIds: new Map()}
}

export function tableFromFile(f: ServiceTableFile): ServiceTable {
  return {
    version: 1,
    ...(f.maps ? {maps: f.maps} : {}),
    nextBackendId: f.nextBackendId,
    nextRevNat: f.nextRevNat,
    services: new Map(f.services.map((s) => [frontendKey(s), s])),
    backendIds: new Map(f.backendIds),
  }
}

export function tableToFile(t: ServiceTable): ServiceTableFile {
  return {
    version: 1,
    ...(t.maps ? {maps: t.maps} : {}),
    nextBackendId: t.nextBackendId,
    nextRevNat: t.nextRevNat,
    services: [...t.services.values()],
    backendIds: [...t.backendIds],
  }
}

export interface PlannedOp {
  op: MapOp
  /** Restores what `op` changed; absent for nothing-to-undo. */
  undo: MapOp
}

export interface ServiceChange {
  frontend: string
  backends: string[]
  /** For updates: the backends before. */
  previous?: string[]
}

export interface ServiceDiff {
  added: ServiceChange[]
  updated: ServiceChange[]
  removed: ServiceChange[]
  unchanged: number
}

/** Lists longer than this are cut in results (`counts` stays exact). */
export const DIFF_LIST_LIMIT = 1000

/** The diff as reported: exact counts, lists cut at DIFF_LIST_LIMIT entries each. */
export function reportDiff(d: ServiceDiff): ServiceDiff & {counts: {added: number; updated: number; removed: number; unchanged: number}; truncated: boolean} {
  const cut = (xs: ServiceChange[]) => xs.slice(0, DIFF_LIST_LIMIT)
  return {
    added: cut(d.added), updated: cut(d.updated), removed: cut(d.removed), unchanged: d.unchanged,
    counts: {added: d.added.length, updated: d.updated.length, removed: d.removed.length, unchanged: d.unchanged},
    truncated: [d.added, d.updated, d.removed].some((x) => x.length > DIFF_LIST_LIMIT),
  }
}

export interface ServicePlan {
  diff: ServiceDiff
  next: ServiceTable
  ops: PlannedOp[]
}

const SERVICES = 'pn_lb4_services'
const BACKENDS = 'pn_lb4_backends'

function frontendOf(s: StoredService): Frontend {
  return {vip: s.vip, port: s.port, proto: s.proto}
}

function sameSet(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false
  const s = new Set(a)
  return b.every((x) => s.has(x))
}

function slotKey(f: Frontend, slot: number): Buffer {
  return encodeLb4Key({vip: f.vip, port: f.port, proto: f.proto, slot})
}

/** The slot-0 and bank entries of a stored service, by encoded key. */
function serviceEntries(s: StoredService, ids: Map<string, number>): {key: Buffer; value: Buffer}[] {
  const f = frontendOf(s)
  const idOf = (b: string) => ids.get(`${b}/${s.proto}`)!
  const out = [{
    key: slotKey(f, 0),
    value: encodeLb4Service({backendId: s.backends.length > 0 ? idOf(s.backends[0]) : 0, revNatIndex: s.revNat, count: s.backends.length, slotBase: s.slotBase}),
  }]
  for (let i = 2; i <= s.backends.length; i++) {
    out.push({key: slotKey(f, s.slotBase + i), value: encodeLb4Service({backendId: idOf(s.backends[i - 1]), revNatIndex: 0, count: 0, slotBase: 0})})
  }
  return out
}

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
}

/** Diff `desired` against `current` and order the map operations (see the file comment). */
export function planServices(current: ServiceTable, desired: ServiceSpec[], opts: PlanOptions = {}): ServicePlan {
  const want = new Map(desired.map((d) => [frontendKey(d.frontend), d]))
  const keys = opts.scope ?? new Set([...current.services.keys(), ...want.keys()])
  const inKernelOf = (k: string) => (opts.resync ? undefined : current.services.get(k))
  const next: ServiceTable = {
    version: 1,
    nextBackendId: current.nextBackendId,
    nextRevNat: current.nextRevNat,
    services: new Map(current.services),
    backendIds: new Map(),
  }
  const curSvc = current.services
  const nextSvc = next.services
  const curIds = current.backendIds
  const nextIds = next.backendIds
  const diff: ServiceDiff = {added: [], updated: [], removed: [], unchanged: 0}
  const phase1: PlannedOp[] = []
  const slot0: PlannedOp[] = []
  const deletes: PlannedOp[] = []
  const oldBanks: StoredService[] = []

  for (const key of keys) {
    const cur = curSvc.get(key)
    const d = want.get(key)
    if (!d) {
      if (!cur) continue
      nextSvc.delete(key)
      diff.removed.push({frontend: key, backends: cur.backends})
      continue
    }
    const backends = d.backends.map(backendKey)
    if (cur && sameSet(cur.backends, backends)) {
      diff.unchanged++
      continue
    }
    if (cur) {
      nextSvc.set(key, {...cur, slotBase: cur.slotBase === 0 ? LB_SLOT_BANK : 0, backends})
      diff.updated.push({frontend: key, backends, previous: cur.backends})
    } else {
      nextSvc.set(key, {vip: d.frontend.vip, port: d.frontend.port, proto: d.frontend.proto, revNat: next.nextRevNat++, slotBase: 0, backends})
      diff.added.push({frontend: key, backends})
    }
  }
  if (opts.resync) diff.unchanged = 0
  checkCapacity(nextSvc, diff.updated.map((c) => curSvc.get(c.frontend)!), curSvc, curIds)

  // Backend ids: every backend some service of the next table lists keeps (or gets) one.
  for (const s of nextSvc.values()) {
    for (const b of s.backends) {
      const k = `${b}/${s.proto}`
      if (nextIds.has(k)) continue
      const known = curIds.get(k)
      const id = known ?? next.nextBackendId++
      nextIds.set(k, id)
      if (opts.resync || known === undefined) {
        const {ip, port} = splitBackend(b)
        const bk = encodeLb4BackendKey(id)
        phase1.push({op: {op: 'update', map: BACKENDS, key: bk, value: encodeLb4Backend({ip, port, proto: s.proto})}, undo: {op: 'delete', map: BACKENDS, key: bk}})
      }
    }
  }

  // Services: the resync case rewrites every service as it stands in the next table.
  const writes = opts.resync ? [...nextSvc.keys()] : [...diff.added, ...diff.updated].map((c) => c.frontend)
  for (const key of writes) {
    const s = nextSvc.get(key)!
    const cur = inKernelOf(key)
    const entries = serviceEntries(s, nextIds)
    for (const e of entries.slice(1)) phase1.push({op: {op: 'update', map: SERVICES, ...e}, undo: {op: 'delete', map: SERVICES, key: e.key}})
    const old = cur ? serviceEntries(cur, curIds)[0] : undefined
    slot0.push({
      op: {op: 'update', map: SERVICES, ...entries[0]},
      undo: old ? {op: 'update', map: SERVICES, ...old} : {op: 'delete', map: SERVICES, key: entries[0].key},
    })
    if (cur) oldBanks.push(cur)
  }
  if (!opts.resync) {
    for (const r of diff.removed) {
      const cur = curSvc.get(r.frontend)!
      for (const e of serviceEntries(cur, curIds)) deletes.push({op: {op: 'delete', map: SERVICES, key: e.key}, undo: {op: 'update', map: SERVICES, ...e}})
    }
    for (const cur of oldBanks) {
      for (const e of serviceEntries(cur, curIds).slice(1)) deletes.push({op: {op: 'delete', map: SERVICES, key: e.key}, undo: {op: 'update', map: SERVICES, ...e}})
    }
    for (const [k, id] of curIds) {
      if (nextIds.has(k)) continue
      const [ep, proto] = k.split('/')
      const {ip, port} = splitBackend(ep)
      const bk = encodeLb4BackendKey(id)
      deletes.push({op: {op: 'delete', map: BACKENDS, key: bk}, undo: {op: 'update', map: BACKENDS, key: bk, value: encodeLb4Backend({ip, port, proto: proto as Protocol})}})
    }
  }
  return {diff, next, ops: [...phase1, ...slot0, ...deletes]}
}

/** `ip:port` of a stored (already validated) backend, without re-parsing the address. */
function splitBackend(b: string): {ip: string; port: number} {
  const i = b.lastIndexOf(':')
  return {ip: b.slice(0, i), port: Number(b.slice(i + 1))}
}

/** Entries a service occupies in pn_lb4_services: slot 0 (with backend 1) + backends 2…n. */
function entriesOf(s: StoredService): number {
  return 1 + Math.max(0, s.backends.length - 1)
}

/** Refuse a table the maps cannot hold, counting the moment both banks of an update exist. */
function checkCapacity(nextSvc: Map<string, StoredService>, oldBanks: StoredService[], curSvc: Map<string, StoredService>, curIds: Map<string, number>): void {
  let entries = 0
  for (const s of nextSvc.values()) entries += entriesOf(s)
  for (const s of oldBanks) entries += entriesOf(s) - 1
  for (const [k, s] of curSvc) if (!nextSvc.has(k)) entries += entriesOf(s)
  if (entries > LB4_SERVICES_MAX_ENTRIES) {
    throw new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${entries} service map entries, pn_lb4_services holds ${LB4_SERVICES_MAX_ENTRIES}`, {
      hint: 'apply fewer services or backends (a service takes 1 entry plus 1 per backend after the first)',
    })
  }
  // New backend keys on top of the known ones (a service rarely brings many new ones).
  let backends = curIds.size
  const fresh = new Set<string>()
  for (const s of nextSvc.values()) {
    for (const b of s.backends) {
      const k = `${b}/${s.proto}`
      if (!curIds.has(k) && !fresh.has(k)) {
        fresh.add(k)
        backends++
      }
    }
  }
  if (backends > LB4_BACKENDS_MAX_ENTRIES) {
    throw new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${backends} backends, pn_lb4_backends holds ${LB4_BACKENDS_MAX_ENTRIES}`, {
      hint: 'apply fewer distinct backends',
    })
  }
}

/** Desired specs of the services a table holds (what add/del start from). */
export function specsOf(table: ServiceTable, keys?: Iterable<string>): ServiceSpec[] {
  const ks = keys ? [...keys] : [...table.services.keys()]
  return ks.filter((k) => table.services.has(k)).map((k) => {
    const s = table.services.get(k)!
    return {frontend: frontendOf(s), backends: s.backends.map(parseBackend)}
  })
}

export {frontendKey}
