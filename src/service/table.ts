/**
 * The node's service table: in memory with numbers (addresses as u32, frontends and backends as
 * one number each) so that a 10,000-service table loads, diffs and saves in a few ms, and on disk
 * as a compact binary file (`services.bin`, about 30 bytes a service) that decodes without a
 * JSON parse. Pure: no kernel, no files (apply.ts reads and writes it).
 *
 * File layout (little endian):
 *   "PNSV" | u32 version (2) | u32 nextBackendId | u32 nextRevNat | u32 services | u32 backends
 *   | u32 identity length | identity (utf8, padded to 4)
 *   | backends × {u32 id, u32 address, u16 port, u8 proto, u8 0}
 *   | services × {u32 vip, u16 port, u8 proto, u8 0, u32 revNat, u16 slotBase, u16 count, u32 backendId × count}
 *   | u32 byte length of everything before (a truncated or padded file is refused)
 */
import {PnError} from '../errors.js'
import type {Protocol} from './model.js'

export const TCP = 6
export const UDP = 17

/** A service as pn keeps it. */
export interface StoredService {
  /** IPv4 address as a u32. */
  vip: number
  port: number
  /** IP protocol number (6, 17). */
  proto: number
  /** The service's id in the datapath (conntrack, stats). Kept for the service's lifetime. */
  revNat: number
  /** The slot bank in use: 0 or LB_SLOT_BANK. */
  slotBase: number
  /** Backend ids, in slot order. */
  ids: number[]
}

export interface ServiceTable {
  version: 2
  /** The pinned pn_lb4_services this table was written to (its bpffs inode). */
  maps?: {identity: string}
  nextBackendId: number
  nextRevNat: number
  /** By frontend number (endpointNum of vip, port, proto). */
  services: Map<number, StoredService>
  /** Backend number (endpointNum of address, port, proto) → id; shared by every service that lists it. */
  backends: Map<number, number>
  /** id → backend number. */
  byId: Map<number, number>
}

export function emptyTable(): ServiceTable {
  return {version: 2, nextBackendId: 1, nextRevNat: 1, services: new Map(), backends: new Map(), byId: new Map()}
}

export function protoNum(p: Protocol | string): number {
  return p === 'udp' ? UDP : TCP
}

export function protoOf(n: number): Protocol {
  return n === UDP ? 'udp' : 'tcp'
}

/** One number for address:port/proto (49 bits: exact in a double). */
export function endpointNum(addr: number, port: number, proto: number): number {
  return addr * 131072 + port * 2 + (proto === UDP ? 1 : 0)
}

export function splitEndpoint(n: number): {addr: number; port: number; proto: number} {
  const addr = Math.floor(n / 131072)
  const rest = n - addr * 131072
  return {addr, port: rest >>> 1, proto: rest & 1 ? UDP : TCP}
}

/** A dotted quad already validated by model.ts (canonical) → u32. */
export function ipNum(ip: string): number {
  let n = 0
  let octet = 0
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i)
    if (c === 46) {
      n = n * 256 + octet
      octet = 0
    } else {
      octet = octet * 10 + (c - 48)
    }
  }
  return n * 256 + octet
}

export function ipStr(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

/** `10.96.0.10:80/tcp` */
export function serviceKey(s: {vip: number; port: number; proto: number}): string {
  return `${ipStr(s.vip)}:${s.port}/${protoOf(s.proto)}`
}

/** `10.1.0.5:8080` of a backend number. */
export function backendStr(n: number): string {
  const e = splitEndpoint(n)
  return `${ipStr(e.addr)}:${e.port}`
}

/** A canonical frontend key (`vip:port/proto`) → its number. */
export function frontendNumOfKey(key: string): number {
  const slash = key.lastIndexOf('/')
  const colon = key.lastIndexOf(':', slash)
  return endpointNum(ipNum(key.slice(0, colon)), Number(key.slice(colon + 1, slash)), protoNum(key.slice(slash + 1)))
}

/** The backend `ip:port` strings of a stored service, in slot order. */
export function backendsOf(t: ServiceTable, s: StoredService): string[] {
  return s.ids.map((id) => backendStr(t.byId.get(id)!))
}

/** The id of backend `ip:port/proto` (tests, list). */
export function backendIdOf(t: ServiceTable, key: string): number | undefined {
  return t.backends.get(frontendNumOfKey(key))
}

const MAGIC = 0x5653_4e50 // "PNSV" little endian
const VERSION = 2

function serviceBytes(s: StoredService): number {
  return 16 + 4 * s.ids.length
}

function putBackend(b: Buffer, o: number, id: number, endpoint: number): void {
  const e = splitEndpoint(endpoint)
  b.writeUInt32LE(id, o)
  b.writeUInt32LE(e.addr, o + 4)
  b.writeUInt16LE(e.port, o + 8)
  b[o + 10] = e.proto
  b[o + 11] = 0
}

function putService(b: Buffer, o: number, s: StoredService): number {
  b.writeUInt32LE(s.vip, o)
  b.writeUInt16LE(s.port, o + 4)
  b[o + 6] = s.proto
  b[o + 7] = 0
  b.writeUInt32LE(s.revNat, o + 8)
  b.writeUInt16LE(s.slotBase, o + 12)
  b.writeUInt16LE(s.ids.length, o + 14)
  o += 16
  for (const id of s.ids) {
    b.writeUInt32LE(id, o)
    o += 4
  }
  return o
}

/** The header; returns the offset of the backends section. */
function putHeader(b: Buffer, t: {maps?: {identity: string}; nextBackendId: number; nextRevNat: number}, services: number, backends: number): number {
  const identity = Buffer.from(t.maps?.identity ?? '')
  b.writeUInt32LE(MAGIC, 0)
  b.writeUInt32LE(VERSION, 4)
  b.writeUInt32LE(t.nextBackendId, 8)
  b.writeUInt32LE(t.nextRevNat, 12)
  b.writeUInt32LE(services, 16)
  b.writeUInt32LE(backends, 20)
  b.writeUInt32LE(identity.length, 24)
  identity.copy(b, 28)
  return 28 + ((identity.length + 3) & ~3)
}

function headerBytes(t: {maps?: {identity: string}}): number {
  return 28 + ((Buffer.byteLength(t.maps?.identity ?? '') + 3) & ~3)
}

export function encodeTable(t: ServiceTable): Buffer {
  let size = headerBytes(t) + t.byId.size * 12 + 4
  for (const s of t.services.values()) size += serviceBytes(s)
  const b = Buffer.alloc(size)
  let o = putHeader(b, t, t.services.size, t.byId.size)
  for (const [id, n] of t.byId) {
    putBackend(b, o, id, n)
    o += 12
  }
  for (const s of t.services.values()) o = putService(b, o, s)
  b.writeUInt32LE(o, o)
  return b
}

/** Where the sections of an encoded table are (checked: a truncated file is refused). */
interface Layout {
  services: number
  backends: number
  backendsAt: number
  servicesAt: number
  end: number
  identity?: string
}

function layoutOf(b: Buffer, file: string): Layout {
  if (b.length < 32 || b.readUInt32LE(0) !== MAGIC) throw corrupt(file, 'not a pn service table')
  if (b.readUInt32LE(4) !== VERSION) throw corrupt(file, `unknown version ${b.readUInt32LE(4)}`)
  if (b.readUInt32LE(b.length - 4) !== b.length - 4) throw corrupt(file, 'truncated')
  const idBytes = b.readUInt32LE(24)
  const backendsAt = 28 + ((idBytes + 3) & ~3)
  const backends = b.readUInt32LE(20)
  const servicesAt = backendsAt + backends * 12
  if (servicesAt > b.length - 4) throw corrupt(file, 'truncated')
  return {services: b.readUInt32LE(16), backends, backendsAt, servicesAt, end: b.length - 4, ...(idBytes > 0 ? {identity: b.toString('utf8', 28, 28 + idBytes)} : {})}
}

function corrupt(file: string, why: string): PnError {
  return new PnError('PN_STATE_CORRUPT', `read service table ${file}: ${why}`, {
    hint: 'pn never overwrites a corrupt table: move it away, then `pn service apply` the full list again (the maps are rewritten)',
  })
}

/** The maps identity an encoded table was written for. */
export function tableIdentity(b: Buffer, file: string): string | undefined {
  return layoutOf(b, file).identity
}

/** What a scoped table leaves out: the rest of the table, in numbers. */
export interface Outside {
  services: number
  /** pn_lb4_services entries of the services left out. */
  entries: number
  /** Backends left out. */
  backends: number
  /** Ids of loaded backends that services left out also list (never unused). */
  used: Set<number>
}

/** A table loaded for a change to a few services, and how to write it back. */
export interface ScopedTable {
  table: ServiceTable
  outside: Outside
  raw: Buffer
  layout: Layout
  /** Byte ranges of the loaded services' records, and offsets of the loaded backends' records. */
  spans: {off: number; len: number}[]
  backendAt: Map<number, number>
}

/**
 * Load only the services `keys` and the backends they (or `endpoints`) name, scanning the rest
 * as integers: `add`/`del` in a 10,000-service table builds a handful of objects, not 10,000.
 */
export function loadScoped(b: Buffer, file: string, keys: Set<number>, endpoints: Set<number>): ScopedTable {
  const L = layoutOf(b, file)
  const table: ServiceTable = {version: 2, ...(L.identity !== undefined ? {maps: {identity: L.identity}} : {}), nextBackendId: b.readUInt32LE(8), nextRevNat: b.readUInt32LE(12), services: new Map(), backends: new Map(), byId: new Map()}
  // DataView: cheaper than Buffer's read methods in a cold process (this loop runs once per CLI call).
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const mine = new Set<number>()
  const spans: {off: number; len: number}[] = []
  const backendAt = new Map<number, number>()
  let o = L.servicesAt
  for (let i = 0; i < L.services; i++) {
    if (o + 16 > L.end) throw corrupt(file, 'truncated')
    const count = v.getUint16(o + 14, true)
    if (o + 16 + 4 * count > L.end) throw corrupt(file, 'truncated')
    const key = endpointNum(v.getUint32(o, true), v.getUint16(o + 4, true), v.getUint8(o + 6))
    if (keys.has(key)) {
      spans.push({off: o, len: 16 + 4 * count})
      const ids = new Array<number>(count)
      for (let j = 0; j < count; j++) mine.add((ids[j] = b.readUInt32LE(o + 16 + 4 * j)))
      table.services.set(key, {vip: b.readUInt32LE(o), port: b.readUInt16LE(o + 4), proto: b[o + 6], revNat: b.readUInt32LE(o + 8), slotBase: b.readUInt16LE(o + 12), ids})
    }
    o += 16 + 4 * count
  }
  if (o !== L.end) throw corrupt(file, 'trailing bytes')
  const outside: Outside = {services: L.services - table.services.size, entries: 0, backends: 0, used: new Set()}
  o = L.servicesAt
  for (let i = 0; i < L.services; i++) {
    const count = v.getUint16(o + 14, true)
    if (keys.size === 0 || !keys.has(endpointNum(v.getUint32(o, true), v.getUint16(o + 4, true), v.getUint8(o + 6)))) {
      outside.entries += count > 1 ? count : 1
      if (mine.size > 0) for (let j = 0; j < count; j++) {
        const id = v.getUint32(o + 16 + 4 * j, true)
        if (mine.has(id)) outside.used.add(id)
      }
    }
    o += 16 + 4 * count
  }
  for (let i = 0, p = L.backendsAt; i < L.backends; i++, p += 12) {
    const id = v.getUint32(p, true)
    if (mine.has(id) || (endpoints.size > 0 && endpoints.has(endpointNum(v.getUint32(p + 4, true), v.getUint16(p + 8, true), v.getUint8(p + 10))))) {
      const n = endpointNum(v.getUint32(p + 4, true), v.getUint16(p + 8, true), v.getUint8(p + 10))
      backendAt.set(id, p)
      table.byId.set(id, n)
      table.backends.set(n, id)
    }
  }
  for (const id of mine) if (!table.byId.has(id)) throw corrupt(file, `a service lists unknown backend ${id}`)
  outside.backends = L.backends - table.byId.size
  // Every id a left-out service lists is in `used` when it is also loaded (ids are never reused).
  return {table, outside, raw: b, layout: L, spans, backendAt}
}

/**
 * The encoded table after a scoped change: the raw sections copied, the loaded part (as `next`
 * has it) written over: left-out records are never decoded.
 */
export function patchScoped(s: ScopedTable, next: ServiceTable): Buffer {
  const {raw: b, layout: L, table: cur} = s
  // Records to leave out, as byte ranges in file order; everything between them is copied whole.
  const cut: {off: number; len: number}[] = []
  for (const id of cur.byId.keys()) if (!next.byId.has(id)) cut.push({off: s.backendAt.get(id)!, len: 12})
  const addIds: number[] = []
  for (const id of next.byId.keys()) if (!cur.byId.has(id)) addIds.push(id)
  const backends = L.backends - cut.length + addIds.length
  cut.push(...s.spans)
  cut.sort((x, y) => x.off - y.off)
  const written = [...next.services.values()]
  let servicesBytes = L.end - L.servicesAt
  for (const sp of s.spans) servicesBytes -= sp.len
  for (const sv of written) servicesBytes += serviceBytes(sv)
  const out = Buffer.alloc(headerBytes(next) + backends * 12 + servicesBytes + 4)
  let w = putHeader(out, next, L.services - s.spans.length + written.length, backends)
  // Copy [from, to) of the raw file minus the cuts inside it.
  const copyRange = (from: number, to: number) => {
    let at = from
    for (const c of cut) {
      if (c.off < from || c.off >= to) continue
      w += b.copy(out, w, at, c.off)
      at = c.off + c.len
    }
    w += b.copy(out, w, at, to)
  }
  copyRange(L.backendsAt, L.servicesAt)
  for (const id of addIds) {
    putBackend(out, w, id, next.byId.get(id)!)
    w += 12
  }
  copyRange(L.servicesAt, L.end)
  for (const sv of written) w = putService(out, w, sv)
  out.writeUInt32LE(w, w)
  return out
}

export function decodeTable(b: Buffer, file: string): ServiceTable {
  const corrupt = (why: string) =>
    new PnError('PN_STATE_CORRUPT', `read service table ${file}: ${why}`, {
      hint: 'pn never overwrites a corrupt table: move it away, then `pn service apply` the full list again (the maps are rewritten)',
    })
  if (b.length < 32 || b.readUInt32LE(0) !== MAGIC) throw corrupt('not a pn service table')
  if (b.readUInt32LE(4) !== VERSION) throw corrupt(`unknown version ${b.readUInt32LE(4)}`)
  if (b.readUInt32LE(b.length - 4) !== b.length - 4) throw corrupt('truncated')
  const nServices = b.readUInt32LE(16)
  const nBackends = b.readUInt32LE(20)
  const idBytes = b.readUInt32LE(24)
  const t: ServiceTable = {
    version: 2,
    nextBackendId: b.readUInt32LE(8),
    nextRevNat: b.readUInt32LE(12),
    services: new Map(),
    backends: new Map(),
    byId: new Map(),
  }
  if (idBytes > 0) t.maps = {identity: b.toString('utf8', 28, 28 + idBytes)}
  let o = 28 + ((idBytes + 3) & ~3)
  const end = b.length - 4
  if (o + nBackends * 12 > end) throw corrupt('truncated')
  for (let i = 0; i < nBackends; i++) {
    const id = b.readUInt32LE(o)
    const n = endpointNum(b.readUInt32LE(o + 4), b.readUInt16LE(o + 8), b[o + 10])
    t.byId.set(id, n)
    t.backends.set(n, id)
    o += 12
  }
  for (let i = 0; i < nServices; i++) {
    if (o + 16 > end) throw corrupt('truncated')
    const count = b.readUInt16LE(o + 14)
    if (o + 16 + 4 * count > end) throw corrupt('truncated')
    const ids = new Array<number>(count)
    for (let j = 0; j < count; j++) {
      const id = b.readUInt32LE(o + 16 + 4 * j)
      if (!t.byId.has(id)) throw corrupt(`service ${i} lists unknown backend ${id}`)
      ids[j] = id
    }
    const s: StoredService = {vip: b.readUInt32LE(o), port: b.readUInt16LE(o + 4), proto: b[o + 6], revNat: b.readUInt32LE(o + 8), slotBase: b.readUInt16LE(o + 12), ids}
    t.services.set(endpointNum(s.vip, s.port, s.proto), s)
    o += 16 + 4 * count
  }
  if (o !== end) throw corrupt('trailing bytes')
  return t
}
