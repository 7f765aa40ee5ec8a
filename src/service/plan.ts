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

export interface ServiceTable {
  version: 1
  /** The pinned pn_lb4_services this table was written to (bpffs inode) and the maps' kernel ids. */
  maps?: {identity: string; ids: Record<string, number>}
  nextBackendId: number
  nextRevNat: number
  services: Record<string, StoredService>
  /** `ip:port/proto` → backend id (shared by every service that lists it). */
  backendIds: Record<string, number>
}

export function emptyTable(): ServiceTable {
  return {version: 1, nextBackendId: 1, nextRevNat: 1, services: {}, backendIds: {}}
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
function serviceEntries(s: StoredService, ids: Record<string, number>): {key: Buffer; value: Buffer}[] {
  const f = frontendOf(s)
  const idOf = (b: string) => ids[`${b}/${s.proto}`]
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
  const inKernel = opts.resync ? {} : current.services
  const keys = opts.scope ?? new Set([...Object.keys(current.services), ...want.keys()])
  const next: ServiceTable = {
    version: 1,
    nextBackendId: current.nextBackendId,
    nextRevNat: current.nextRevNat,
    services: {...current.services},
    backendIds: {},
  }
  const diff: ServiceDiff = {added: [], updated: [], removed: [], unchanged: 0}
  const phase1: PlannedOp[] = []
  const slot0: PlannedOp[] = []
  const deletes: PlannedOp[] = []
  const oldBanks: StoredService[] = []

  for (const key of keys) {
    const cur = current.services[key]
    const d = want.get(key)
    if (!d) {
      if (!cur) continue
      delete next.services[key]
      diff.removed.push({frontend: key, backends: cur.backends})
      continue
    }
    const backends = d.backends.map(backendKey)
    if (cur && sameSet(cur.backends, backends)) {
      diff.unchanged++
      continue
    }
    if (cur) {
      next.services[key] = {...cur, slotBase: cur.slotBase === 0 ? LB_SLOT_BANK : 0, backends}
      diff.updated.push({frontend: key, backends, previous: cur.backends})
    } else {
      next.services[key] = {...d.frontend, revNat: next.nextRevNat++, slotBase: 0, backends}
      diff.added.push({frontend: key, backends})
    }
  }
  if (opts.resync) diff.unchanged = 0
  checkCapacity(next, diff.updated.map((c) => current.services[c.frontend]), current)

  // Backend ids: every backend some service of the next table lists keeps (or gets) one.
  for (const s of Object.values(next.services)) {
    for (const b of s.backends) {
      const k = `${b}/${s.proto}`
      if (next.backendIds[k] !== undefined) continue
      const id = current.backendIds[k] ?? next.nextBackendId++
      next.backendIds[k] = id
      if (opts.resync || current.backendIds[k] === undefined) {
        const {ip, port} = parseBackend(b)
        const bk = encodeLb4BackendKey(id)
        phase1.push({op: {op: 'update', map: BACKENDS, key: bk, value: encodeLb4Backend({ip, port, proto: s.proto})}, undo: {op: 'delete', map: BACKENDS, key: bk}})
      }
    }
  }

  // Services: the resync case rewrites every service as it stands in the next table.
  const writes = opts.resync ? Object.keys(next.services) : [...diff.added, ...diff.updated].map((c) => c.frontend)
  for (const key of writes) {
    const s = next.services[key]
    const cur = inKernel[key]
    const entries = serviceEntries(s, next.backendIds)
    for (const e of entries.slice(1)) phase1.push({op: {op: 'update', map: SERVICES, ...e}, undo: {op: 'delete', map: SERVICES, key: e.key}})
    const old = cur ? serviceEntries(cur, current.backendIds)[0] : undefined
    slot0.push({
      op: {op: 'update', map: SERVICES, ...entries[0]},
      undo: old ? {op: 'update', map: SERVICES, ...old} : {op: 'delete', map: SERVICES, key: entries[0].key},
    })
    if (cur) oldBanks.push(cur)
  }
  if (!opts.resync) {
    for (const r of diff.removed) {
      const cur = current.services[r.frontend]
      for (const e of serviceEntries(cur, current.backendIds)) deletes.push({op: {op: 'delete', map: SERVICES, key: e.key}, undo: {op: 'update', map: SERVICES, ...e}})
    }
    for (const cur of oldBanks) {
      for (const e of serviceEntries(cur, current.backendIds).slice(1)) deletes.push({op: {op: 'delete', map: SERVICES, key: e.key}, undo: {op: 'update', map: SERVICES, ...e}})
    }
    for (const [k, id] of Object.entries(current.backendIds)) {
      if (next.backendIds[k] !== undefined) continue
      const [ep, proto] = k.split('/')
      const {ip, port} = parseBackend(ep)
      const bk = encodeLb4BackendKey(id)
      deletes.push({op: {op: 'delete', map: BACKENDS, key: bk}, undo: {op: 'update', map: BACKENDS, key: bk, value: encodeLb4Backend({ip, port, proto: proto as Protocol})}})
    }
  }
  return {diff, next, ops: [...phase1, ...slot0, ...deletes]}
}

/** Entries a service occupies in pn_lb4_services: slot 0 (with backend 1) + backends 2…n. */
function entriesOf(s: StoredService): number {
  return 1 + Math.max(0, s.backends.length - 1)
}

/** Refuse a table the maps cannot hold, counting the moment both banks of an update exist. */
function checkCapacity(next: ServiceTable, oldBanks: StoredService[], current: ServiceTable): void {
  let entries = 0
  for (const s of Object.values(next.services)) entries += entriesOf(s)
  for (const s of oldBanks) entries += entriesOf(s) - 1
  const removed = Object.keys(current.services).filter((k) => !next.services[k])
  for (const k of removed) entries += entriesOf(current.services[k])
  if (entries > LB4_SERVICES_MAX_ENTRIES) {
    throw new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${entries} service map entries, pn_lb4_services holds ${LB4_SERVICES_MAX_ENTRIES}`, {
      hint: 'apply fewer services or backends (a service takes 1 entry plus 1 per backend after the first)',
    })
  }
  const wanted = new Set(Object.keys(current.backendIds))
  for (const s of Object.values(next.services)) for (const b of s.backends) wanted.add(`${b}/${s.proto}`)
  const backends = wanted.size
  if (backends > LB4_BACKENDS_MAX_ENTRIES) {
    throw new PnError('PN_SERVICE_LIMIT', `apply services: the table needs ${backends} backends, pn_lb4_backends holds ${LB4_BACKENDS_MAX_ENTRIES}`, {
      hint: 'apply fewer distinct backends',
    })
  }
}

/** Desired specs of the services a table holds (what add/del start from). */
export function specsOf(table: ServiceTable, keys?: Iterable<string>): ServiceSpec[] {
  const ks = keys ? [...keys] : Object.keys(table.services)
  return ks.filter((k) => table.services[k]).map((k) => {
    const s = table.services[k]
    return {frontend: frontendOf(s), backends: s.backends.map(parseBackend)}
  })
}

export {frontendKey}
