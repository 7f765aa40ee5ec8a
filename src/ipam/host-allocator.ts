/**
 * The host-scope allocator, pure and in memory: one bitmap per pod CIDR (one per family) over
 * `[network+1, broadcast-1]` like cilium's ipallocator (offset 0 = network+1), plus the owner
 * and state of every allocation. It is built from the persisted allocation list (the bitmap is
 * derived, never stored) and turned back into one by `toState()`; storage is someone else's job.
 */
import {
  cidrSize,
  containsIp,
  formatIp,
  normalizeCidr,
  parseIp,
  tryParseIp,
  type Cidr,
  type Family,
} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {randomHex} from '../state/digest.js'
import {Bitmap, mathRandomInt, type RandomInt, type Strategy} from './bitmap.js'

export type AllocationState = 'reserved' | 'pending' | 'confirmed'

/** One allocation as persisted in ipam.json. */
export interface StoredAllocation {
  ip: string
  owner: string
  state: AllocationState
  /** ISO time after which a pending allocation returns to the pool. */
  expiresAt?: string
  createdAt: string
}

export interface IpamRange {
  cidr: string
  routerIp: string
}

/** ipam.json: the ranges it was created for and the allocation list. */
export interface IpamState {
  version: 1
  ranges: IpamRange[]
  allocations: StoredAllocation[]
}

/** An allocation as the library returns it. */
export interface IpAllocation {
  ip: string
  family: Family
  cidr: string
  owner: string
  state: AllocationState
  expiresAt?: string
  createdAt: string
  /** The router IP of the pod CIDR: the pod's gateway. */
  gateway: string
}

export interface RangeStatus {
  cidr: string
  family: Family
  /** First and last allocatable addresses. */
  firstIp: string
  lastIp: string
  capacity: number
  used: number
  free: number
  pending: number
  routerIp: string
}

export const ROUTER_OWNER = 'router'
/** Cilium caps an IPv6 range at 2^16 addresses (a 64k-bit bitmap): a /64 uses its first 65534. */
export const MAX_RANGE_SIZE = 65536

/** Selects allocations by address (one or several) or by owner (exactly one of the two). */
export interface Selector {
  ip?: string | string[]
  owner?: string
}

/** The addresses a selector names (none for an owner selector). */
export function selectorIps(sel: Selector): string[] {
  return sel.ip === undefined ? [] : Array.isArray(sel.ip) ? sel.ip : [sel.ip]
}

/** Why an allocation must not be released (a live endpoint holds it), or undefined. */
export type InUse = (a: IpAllocation) => string | undefined

export interface AllocateOptions {
  owner?: string
  /** Specific addresses to claim, at most one per family. */
  ip?: string[]
  strategy?: Strategy
  /** Cilium's AllocateNextWithExpiration: pending until confirmed, freed after this long. */
  expirationMs?: number
}

export interface AllocatorOptions {
  now?: () => number
  random?: RandomInt
  /** Where the state came from, for messages. */
  source?: string
  /**
   * Stored bitmap words, one array per range (the on-disk store keeps the bitmaps and loads only
   * the allocations an operation needs; every bit of an allocation not loaded stays set).
   */
  bitmaps?: Uint32Array[]
}

/** One pod CIDR: its bitmap and the mapping between offsets and addresses. */
export class IpRange {
  readonly cidr: Cidr
  readonly text: string
  readonly family: Family
  /** network + 1: offset 0. */
  readonly base: bigint
  readonly capacity: number
  bitmap: Bitmap
  routerIp: string

  constructor(cidrText: string, routerIp?: string) {
    const {cidr, text} = normalizeCidr(cidrText, 'pod cidr')
    this.cidr = cidr
    this.text = text
    this.family = cidr.family
    this.base = cidr.network + 1n
    this.capacity = rangeCapacity(cidr)
    if (this.capacity < 2) {
      throw new PnError('PN_INVALID_CIDR', `use pod cidr ${text}: too small (${this.capacity} usable addresses, need a router and at least one pod)`, {
        hint: cidr.family === 4 ? 'use at most a /30 (a /24 is usual)' : 'use at most a /126 (a /64 or /112 is usual)',
        details: {cidr: text},
      })
    }
    this.bitmap = new Bitmap(this.capacity)
    this.routerIp = routerIp === undefined ? this.ipAt(0) : this.checkIp(routerIp, 'router ip')
  }

  /** Offset of an address, or -1 when it is outside [network+1, network+capacity]. */
  offsetOf(value: bigint): number {
    const off = value - this.base
    return off >= 0n && off < BigInt(this.capacity) ? Number(off) : -1
  }

  ipAt(offset: number): string {
    return formatIp(this.base + BigInt(offset), this.family)
  }

  /** Canonical text of an allocatable address of this range, else PN_IPAM_IP_OUT_OF_RANGE. */
  checkIp(text: string, what = 'ip'): string {
    const ip = parseIp(text)
    if (ip.family !== this.family || this.offsetOf(ip.value) < 0) throw outOfRange(text, [this], what)
    return formatIp(ip.value, ip.family)
  }
}

/** Allocatable addresses of a pod CIDR: size − network − broadcast, IPv6 capped at 2^16 − 2. */
export function rangeCapacity(c: Cidr): number {
  const size = cidrSize(c)
  const capped = size > BigInt(MAX_RANGE_SIZE) ? MAX_RANGE_SIZE : Number(size)
  return Math.max(0, capped - 2)
}

function outOfRange(ip: string, ranges: IpRange[], what = 'ip'): PnError {
  const spans = ranges.map((r) => `${r.ipAt(0)}-${r.ipAt(r.capacity - 1)}`)
  return new PnError('PN_IPAM_IP_OUT_OF_RANGE', `claim ${what} ${ip}: outside the allocatable range ${spans.join(', ') || '(none)'}`, {
    hint: 'network and broadcast addresses are never allocatable; pick an address inside the pod CIDR',
    details: {ip, ranges: ranges.map((r) => r.text)},
  })
}

interface Entry extends StoredAllocation {
  range: IpRange
  offset: number
}

/** A CNI owner is `<containerId>:<ifname>`: up to 4096 + 1 + 15 characters (owner records hash long names). */
const OWNER_RE = /^[\x21-\x7e]{1,4112}$/

export function checkOwner(owner: string): string {
  if (!OWNER_RE.test(owner)) {
    throw new PnError('PN_INVALID_ARGUMENT', `check owner ${JSON.stringify(owner)}: must be 1-4112 printable characters without spaces`, {
      hint: 'CNI uses <containerId>:<ifname>',
    })
  }
  return owner
}

export function anonymousOwner(): string {
  return `anon-${randomHex(6)}`
}

export class HostAllocator {
  readonly ranges: IpRange[]
  private readonly byIp = new Map<string, Entry>()
  private readonly byOwner = new Map<string, Entry[]>()
  private readonly now: () => number
  private readonly random: RandomInt
  private readonly source: string
  /** Set by every change, so the store writes only when something changed. */
  dirty = false

  /** Fresh state for these ranges, with the router reservations. */
  static initialState(ranges: {cidr: string; routerIp?: string}[], now = Date.now()): IpamState {
    const rs = ranges.map((r) => new IpRange(r.cidr, r.routerIp))
    const createdAt = new Date(now).toISOString()
    return {
      version: 1,
      ranges: rs.map((r) => ({cidr: r.text, routerIp: r.routerIp})),
      allocations: rs.map((r) => ({ip: r.routerIp, owner: ROUTER_OWNER, state: 'reserved' as const, createdAt})),
    }
  }

  constructor(state: IpamState, opts: AllocatorOptions = {}) {
    this.now = opts.now ?? Date.now
    this.random = opts.random ?? mathRandomInt
    this.source = opts.source ?? 'ipam state'
    try {
      this.ranges = state.ranges.map((r) => new IpRange(r.cidr, r.routerIp))
    } catch (err) {
      throw this.corrupt(`bad range (${(err as Error).message})`)
    }
    const partial = opts.bitmaps !== undefined
    if (opts.bitmaps) {
      if (opts.bitmaps.length !== this.ranges.length) throw this.corrupt(`${opts.bitmaps.length} bitmaps for ${this.ranges.length} ranges`)
      this.ranges.forEach((r, i) => {
        try {
          r.bitmap = Bitmap.fromWords(r.capacity, opts.bitmaps![i])
        } catch (err) {
          throw this.corrupt(`bitmap of ${r.text}: ${(err as Error).message}`)
        }
      })
    }
    for (const a of state.allocations) {
      const ip = tryParseIp(a.ip)
      const range = ip && this.ranges.find((r) => r.family === ip.family && r.offsetOf(ip.value) >= 0)
      if (!ip || !range) throw this.corrupt(`allocation ${a.ip} is outside every range`)
      if (typeof a.owner !== 'string' || !['reserved', 'pending', 'confirmed'].includes(a.state)) {
        throw this.corrupt(`allocation ${a.ip} has a bad owner or state`)
      }
      const offset = range.offsetOf(ip.value)
      if (partial ? this.byIp.has(formatIp(ip.value, ip.family)) : range.bitmap.has(offset)) throw this.corrupt(`${a.ip} is allocated twice`)
      this.insert({...a, ip: formatIp(ip.value, ip.family), range, offset})
    }
    this.dirty = false
    // A router reservation lost by hand-editing is put back (it must never go to a pod).
    for (const r of this.ranges) {
      const e = this.byIp.get(r.routerIp)
      if (!e) this.claim(r, r.offsetOf(parseIp(r.routerIp).value), ROUTER_OWNER, 'reserved')
      else if (e.owner !== ROUTER_OWNER) throw this.corrupt(`router ip ${r.routerIp} is held by ${e.owner}`)
    }
  }

  private corrupt(cause: string): PnError {
    return new PnError('PN_STATE_CORRUPT', `read ${this.source}: ${cause}`, {
      hint: 'pn will not overwrite it; inspect or move the file away, then rerun',
    })
  }

  private insert(e: Entry): void {
    e.range.bitmap.set(e.offset)
    this.byIp.set(e.ip, e)
    const list = this.byOwner.get(e.owner)
    if (list) list.push(e)
    else this.byOwner.set(e.owner, [e])
    this.dirty = true
  }

  private remove(e: Entry): void {
    e.range.bitmap.clear(e.offset)
    this.byIp.delete(e.ip)
    const list = this.byOwner.get(e.owner)?.filter((x) => x !== e)
    if (list && list.length > 0) this.byOwner.set(e.owner, list)
    else this.byOwner.delete(e.owner)
    this.dirty = true
  }

  private claim(range: IpRange, offset: number, owner: string, state: AllocationState, expirationMs?: number): Entry {
    const now = this.now()
    const e: Entry = {
      ip: range.ipAt(offset),
      owner,
      state,
      ...(state === 'pending' && expirationMs !== undefined ? {expiresAt: new Date(now + expirationMs).toISOString()} : {}),
      createdAt: new Date(now).toISOString(),
      range,
      offset,
    }
    this.insert(e)
    return e
  }

  private view(e: Entry): IpAllocation {
    return {
      ip: e.ip,
      family: e.range.family,
      cidr: e.range.text,
      owner: e.owner,
      state: e.state,
      ...(e.expiresAt ? {expiresAt: e.expiresAt} : {}),
      createdAt: e.createdAt,
      gateway: e.range.routerIp,
    }
  }

  private rangeOf(text: string): {range?: IpRange; value: bigint; family: Family} {
    const ip = parseIp(text)
    return {range: this.ranges.find((r) => containsIp(r.cidr, ip)), value: ip.value, family: ip.family}
  }

  /** Return expired pending allocations to the pool (run before every mutation). */
  gc(): IpAllocation[] {
    const now = this.now()
    const expired = [...this.byIp.values()].filter((e) => e.state === 'pending' && e.expiresAt && Date.parse(e.expiresAt) <= now)
    for (const e of expired) this.remove(e)
    return expired.map((e) => this.view(e))
  }

  /** One address per range for `owner`; the same owner gets its existing addresses back. */
  allocate(opts: AllocateOptions = {}): {changed: boolean; owner: string; allocations: IpAllocation[]} {
    const owner = checkOwner(opts.owner ?? anonymousOwner())
    const strategy = opts.strategy ?? 'random'
    const expirationMs = opts.expirationMs
    if (expirationMs !== undefined && !(expirationMs > 0)) {
      throw new PnError('PN_INVALID_DURATION', `allocate ip: expiration must be positive, got ${expirationMs} ms`)
    }
    const wanted = new Map<IpRange, number>()
    for (const text of opts.ip ?? []) {
      const {range, value} = this.rangeOf(text)
      const offset = range ? range.offsetOf(value) : -1
      if (!range || offset < 0) throw outOfRange(text, this.ranges)
      if (wanted.has(range)) {
        throw new PnError('PN_INVALID_ARGUMENT', `claim ip ${text}: more than one address requested in ${range.text}`, {
          hint: 'pass --ip at most once per family',
        })
      }
      wanted.set(range, offset)
    }

    const existing = this.byOwner.get(owner)
    if (existing && existing.length > 0) {
      for (const [range, offset] of wanted) {
        const ip = range.ipAt(offset)
        if (!existing.some((e) => e.ip === ip)) {
          throw new PnError('PN_IPAM_IP_TAKEN', `claim ip ${ip}: owner ${owner} already holds ${existing.map((e) => e.ip).join(', ')}`, {
            hint: `release it first: pn ipam release --owner ${owner}`,
            details: {owner, held: existing.map((e) => e.ip)},
          })
        }
      }
      // A retried CNI ADD re-arms the expiry of its still-pending address.
      if (expirationMs !== undefined) {
        for (const e of existing) {
          if (e.state === 'pending') {
            e.expiresAt = new Date(this.now() + expirationMs).toISOString()
            this.dirty = true
          }
        }
      }
      return {changed: false, owner, allocations: existing.map((e) => this.view(e))}
    }

    const state: AllocationState = owner === ROUTER_OWNER ? 'reserved' : expirationMs !== undefined ? 'pending' : 'confirmed'
    const made: Entry[] = []
    try {
      for (const range of this.ranges) {
        let offset = wanted.get(range)
        if (offset !== undefined) {
          const holder = this.byIp.get(range.ipAt(offset))
          if (holder) {
            throw new PnError('PN_IPAM_IP_TAKEN', `claim ip ${holder.ip}: already allocated to ${holder.owner} (${holder.state})`, {
              hint: 'pick another address, or omit --ip to get the next free one',
              details: {ip: holder.ip, owner: holder.owner, state: holder.state},
            })
          }
        } else {
          offset = range.bitmap.allocate(strategy, this.random)
          if (offset < 0) {
            throw new PnError('PN_IPAM_EXHAUSTED', `allocate ip from ${range.text}: range is full (${range.capacity} addresses in use)`, {
              hint: 'release unused addresses (pn ipam list, pn ipam gc) or give the node a larger pod CIDR',
              details: {cidr: range.text, capacity: range.capacity},
            })
          }
          range.bitmap.clear(offset) // claim() sets it again together with the bookkeeping
        }
        made.push(this.claim(range, offset, owner, state, expirationMs))
      }
    } catch (err) {
      for (const e of made) this.remove(e)
      throw err
    }
    return {changed: true, owner, allocations: made.map((e) => this.view(e))}
  }

  /** The entries a selector names, and the addresses it names that nobody holds. */
  private select(sel: Selector, action: string): {entries: Entry[]; missing: string[]} {
    const ips = selectorIps(sel)
    if ((ips.length === 0) === (sel.owner === undefined)) {
      const verb = action.split(' ')[0]
      throw new PnError('PN_INVALID_ARGUMENT', `${action}: give addresses (--ip) or --owner, not both and not neither`, {
        hint: `pn ipam ${verb} --ip 10.0.1.5  or  pn ipam ${verb} --owner OWNER`,
      })
    }
    if (ips.length > 0) {
      const entries = new Set<Entry>()
      const missing: string[] = []
      for (const text of ips) {
        const ip = parseIp(text)
        const e = this.byIp.get(formatIp(ip.value, ip.family))
        if (e) entries.add(e)
        else missing.push(text)
      }
      return {entries: [...entries], missing}
    }
    return {entries: [...(this.byOwner.get(sel.owner!) ?? [])], missing: []}
  }

  /** Turn pending allocations into confirmed ones (the CNI ADD finished). */
  confirm(sel: Selector): {changed: boolean; allocations: IpAllocation[]} {
    const {entries, missing} = this.select(sel, 'confirm ip')
    if (entries.length === 0 || missing.length > 0) {
      const what = sel.owner !== undefined ? `owner ${sel.owner}` : `ip ${(missing.length > 0 ? missing : selectorIps(sel)).join(', ')}`
      throw new PnError('PN_IPAM_NOT_ALLOCATED', `confirm ${what}: not allocated (or its expiry passed and it was returned to the pool)`, {
        hint: 'see pn ipam list; allocate again with pn ipam alloc',
      })
    }
    let changed = false
    for (const e of entries) {
      if (e.state === 'pending') {
        e.state = 'confirmed'
        delete e.expiresAt
        changed = true
        this.dirty = true
      }
    }
    return {changed, allocations: entries.map((e) => this.view(e))}
  }

  /**
   * Release by addresses or owner; unknown ones are a no-op. The router reservation is refused,
   * and so is, with `inUse`, an allocation a live holder still uses (PN_IPAM_IN_USE): nothing is
   * released then.
   */
  release(sel: Selector, inUse?: InUse): {changed: boolean; released: IpAllocation[]; warnings?: string[]} {
    const {entries, missing} = this.select(sel, 'release ip')
    const warnings: string[] = []
    for (const ip of missing) {
      if (!this.rangeOf(ip).range) warnings.push(`${ip} is not in any pod CIDR of this node (${this.ranges.map((r) => r.text).join(', ')})`)
    }
    if (entries.length === 0) return {changed: false, released: [], ...(warnings.length ? {warnings} : {})}
    if (entries.some((e) => e.owner === ROUTER_OWNER)) {
      throw new PnError('PN_INVALID_ARGUMENT', `release ip ${entries.map((e) => e.ip).join(', ')}: reserved for the router (pn_host)`, {
        hint: 'the router reservation goes with the node: pn node reset',
      })
    }
    const busy = inUse ? entries.flatMap((e) => {
      const holder = inUse(this.view(e))
      return holder ? [{ip: e.ip, owner: e.owner, holder}] : []
    }) : []
    if (busy.length > 0) {
      throw new PnError('PN_IPAM_IN_USE', `release ip ${busy.map((b) => b.ip).join(', ')}: in use by ${[...new Set(busy.map((b) => b.holder))].join('; ')}`, {
        hint: 'delete the pod first (its runtime\'s CNI DEL, or `pn veth delete`); to free the address anyway, rerun with --force (the pod keeps using it, and the next pod may get it too)',
        details: {inUse: busy},
      })
    }
    for (const e of entries) this.remove(e)
    return {changed: true, released: entries.map((e) => this.view(e)), ...(warnings.length ? {warnings} : {})}
  }

  /** Move the router reservation of each range to the given address (one per family). */
  reserveRouters(routerIps: string[]): {changed: boolean; allocations: IpAllocation[]} {
    let changed = false
    for (const text of routerIps) {
      const {range} = this.rangeOf(text)
      if (!range) throw outOfRange(text, this.ranges, 'router ip')
      const ip = range.checkIp(text, 'router ip')
      if (ip === range.routerIp && this.byIp.get(ip)?.owner === ROUTER_OWNER) continue
      const holder = this.byIp.get(ip)
      if (holder && holder.owner !== ROUTER_OWNER) {
        throw new PnError('PN_IPAM_IP_TAKEN', `reserve router ip ${ip}: already allocated to ${holder.owner}`, {
          hint: `release it first (pn ipam release --owner ${holder.owner}) or choose another router IP`,
          details: {ip, owner: holder.owner},
        })
      }
      for (const e of this.byOwner.get(ROUTER_OWNER) ?? []) if (e.range === range) this.remove(e)
      range.routerIp = ip
      this.claim(range, range.offsetOf(parseIp(ip).value), ROUTER_OWNER, 'reserved')
      changed = true
    }
    const allocations = (this.byOwner.get(ROUTER_OWNER) ?? []).map((e) => this.view(e))
    return {changed, allocations}
  }

  /** All allocations, by range then address. */
  list(): IpAllocation[] {
    const entries = [...this.byIp.values()]
    entries.sort((a, b) => this.ranges.indexOf(a.range) - this.ranges.indexOf(b.range) || a.offset - b.offset)
    return entries.map((e) => this.view(e))
  }

  ownerAllocations(owner: string): IpAllocation[] {
    return (this.byOwner.get(owner) ?? []).map((e) => this.view(e))
  }

  show(): RangeStatus[] {
    const pending = new Map<IpRange, number>()
    for (const e of this.byIp.values()) if (e.state === 'pending') pending.set(e.range, (pending.get(e.range) ?? 0) + 1)
    return this.ranges.map((r) => ({
      cidr: r.text,
      family: r.family,
      firstIp: r.ipAt(0),
      lastIp: r.ipAt(r.capacity - 1),
      capacity: r.capacity,
      used: r.bitmap.count,
      free: r.bitmap.free,
      pending: pending.get(r) ?? 0,
      routerIp: r.routerIp,
    }))
  }

  toState(): IpamState {
    return {
      version: 1,
      ranges: this.ranges.map((r) => ({cidr: r.text, routerIp: r.routerIp})),
      allocations: [...this.byIp.values()].map((e) => ({
        ip: e.ip,
        owner: e.owner,
        state: e.state,
        ...(e.expiresAt ? {expiresAt: e.expiresAt} : {}),
        createdAt: e.createdAt,
      })),
    }
  }
}
