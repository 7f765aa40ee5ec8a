/**
 * Host-scope IPAM (the agent's job): pod IPs from the node's pod CIDR, persisted in
 * `<state-dir>/ipam.json`. Every mutation is one locked read-modify-write of the store, and
 * starts by returning expired pending allocations to the pool (so a crashed CNI ADD leaks its
 * IP only until the expiry, never for good).
 */
import path from 'node:path'
import {normalizeCidr, parseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import type {JsonFileSpec, LockOptions} from '../state/files.js'
import {FileStore, type Store} from '../state/store.js'
import type {RandomInt} from './bitmap.js'
import {
  HostAllocator,
  IpRange,
  ROUTER_OWNER,
  type AllocateOptions,
  type IpAllocation,
  type IpamState,
  type RangeStatus,
  type Selector,
} from './host-allocator.js'

export {ROUTER_OWNER, type AllocateOptions, type AllocationState, type IpAllocation, type IpamState, type RangeStatus, type Selector} from './host-allocator.js'

/**
 * What to allocate from: the pod CIDRs (one per family) and where their state lives. IPAM
 * never reads the node context; the node layer resolves it (src/node/ipam.ts).
 */
export interface HostIpamTarget {
  /** Folder of ipam.json. */
  stateDir: string
  podCidrs: string[]
  /** Router IPs (one per family); default the first usable address. */
  routerIps?: string[]
  /** Where the CIDRs came from (node.json or flags), for hints. */
  source?: 'node' | 'standalone'
  lock?: LockOptions
  /** Tests: a MemoryStore instead of ipam.json. */
  store?: Store<IpamState>
  /** Tests: the clock (ms). */
  now?: () => number
  /** Tests: the random source of the random strategy. */
  random?: RandomInt
}

export function ipamFile(stateDir: string): string {
  return path.join(stateDir, 'ipam.json')
}

const spec: JsonFileSpec<IpamState> = {
  what: 'ipam state',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v: unknown): v is IpamState => {
    const s = v as IpamState
    return (
      !!s && s.version === 1 && Array.isArray(s.ranges) && Array.isArray(s.allocations) &&
      s.ranges.every((r) => r && typeof r.cidr === 'string' && typeof r.routerIp === 'string') &&
      s.allocations.every((a) => a && typeof a.ip === 'string' && typeof a.owner === 'string' && typeof a.state === 'string')
    )
  },
}

function storeFor(t: HostIpamTarget): Store<IpamState> {
  return t.store ?? new FileStore(ipamFile(t.stateDir), spec, t.lock)
}

interface Resolved {
  ranges: {cidr: string; routerIp?: string}[]
  /** Router IPs were given (flag or node.json) rather than defaulted. */
  explicitRouters: boolean
  warnings: string[]
  store: Store<IpamState>
  source: 'node' | 'standalone'
}

async function resolveTarget(t: HostIpamTarget): Promise<Resolved> {
  const cidrs = t.podCidrs ?? []
  const routers = t.routerIps ?? []
  const source = t.source ?? 'standalone'
  if (cidrs.length === 0) {
    throw new PnError('PN_INVALID_ARGUMENT', 'open ipam: no pod CIDR given', {
      hint: 'pass --pod-cidr CIDR, or run `pn node init` so the node context names one',
    })
  }
  const warnings: string[] = []
  const ranges: Resolved['ranges'] = []
  const families = new Set<number>()
  for (const c of cidrs) {
    const n = normalizeCidr(c, 'pod cidr')
    if (n.warning) warnings.push(n.warning)
    if (families.has(n.cidr.family)) {
      throw new PnError('PN_INVALID_ARGUMENT', `use pod cidrs ${cidrs.join(', ')}: more than one IPv${n.cidr.family} pod CIDR`, {
        hint: 'give one pod CIDR per family (--pod-cidr at most once for IPv4 and once for IPv6)',
      })
    }
    families.add(n.cidr.family)
    new IpRange(n.text) // refuses pod CIDRs too small to hold a router and a pod (/31, /32, /127, /128)
    ranges.push({cidr: n.text})
  }
  ranges.sort((a, b) => (a.cidr.includes(':') ? 1 : 0) - (b.cidr.includes(':') ? 1 : 0))
  for (const r of routers) {
    const ip = parseIp(r)
    const i = ranges.findIndex((x) => (x.cidr.includes(':') ? 6 : 4) === ip.family)
    if (i < 0 || ranges[i].routerIp !== undefined) {
      throw new PnError('PN_IPAM_IP_OUT_OF_RANGE', `use router ip ${r}: no IPv${ip.family} pod CIDR for it (or two router IPs of one family)`, {
        hint: 'give one router IP per pod CIDR, inside it',
      })
    }
    ranges[i].routerIp = r
  }
  return {ranges, explicitRouters: routers.length > 0, warnings, store: storeFor(t), source}
}

/** Build the allocator from the stored state, refusing a state made for other ranges. */
function open(t: HostIpamTarget, r: Resolved, current: IpamState | undefined, rewriteRouters = false): HostAllocator {
  const opts = {now: t.now, random: t.random, source: `ipam state ${r.store.location}`}
  if (!current) {
    const a = new HostAllocator(HostAllocator.initialState(r.ranges, (t.now ?? Date.now)()), opts)
    a.dirty = true
    return a
  }
  const alloc = new HostAllocator(current, opts)
  const have = alloc.ranges.map((x) => x.text)
  const want = r.ranges.map((x) => x.cidr)
  const fix = r.source === 'standalone' ? 'use the same --pod-cidr as before' : 'the node context changed'
  if (have.join(',') !== want.join(',')) {
    throw new PnError('PN_NODE_CONFLICT', `open ipam state ${r.store.location}: it holds pod CIDRs ${have.join(', ')}, not ${want.join(', ')}`, {
      hint: `${fix}; or start over (this forgets every pod IP): pn node reset, or remove ${r.store.location}`,
      details: {state: have, requested: want},
    })
  }
  if (r.explicitRouters && !rewriteRouters) {
    for (const [i, x] of r.ranges.entries()) {
      if (x.routerIp !== undefined && alloc.ranges[i].checkIp(x.routerIp, 'router ip') !== alloc.ranges[i].routerIp) {
        throw new PnError('PN_NODE_CONFLICT', `open ipam state ${r.store.location}: router IP of ${x.cidr} is ${alloc.ranges[i].routerIp}, not ${x.routerIp}`, {
          hint: 'rerun pn node init to move the router reservation, or drop --router-ip',
          details: {state: alloc.ranges[i].routerIp, requested: x.routerIp},
        })
      }
    }
  }
  return alloc
}

function expiredWarning(expired: IpAllocation[]): string[] {
  if (expired.length === 0) return []
  return [`returned ${expired.length} expired pending allocation(s) to the pool: ${expired.map((e) => `${e.ip} (${e.owner})`).join(', ')}`]
}

/** A locked read-modify-write: gc, then `fn`; writes only when something changed. */
async function mutate<R extends object>(
  t: HostIpamTarget,
  fn: (a: HostAllocator, expired: IpAllocation[], r: Resolved) => R,
  opts: {rewriteRouters?: boolean; reportExpired?: boolean} = {},
): Promise<R & {warnings?: string[]}> {
  const r = await resolveTarget(t)
  return r.store.update((current) => {
    const alloc = open(t, r, current, opts.rewriteRouters)
    const expired = alloc.gc()
    const result = fn(alloc, expired, r)
    const warnings = [
      ...r.warnings,
      ...(opts.reportExpired === false ? [] : expiredWarning(expired)),
      ...(((result as {warnings?: string[]}).warnings) ?? []),
    ]
    return {
      next: alloc.dirty ? alloc.toState() : undefined,
      result: {...result, ...(warnings.length > 0 ? {warnings} : {})},
    }
  })
}

/** Read-only view; a missing state shows what the first mutation would create. */
async function view<R>(t: HostIpamTarget, fn: (a: HostAllocator) => R): Promise<R> {
  const r = await resolveTarget(t)
  return fn(open(t, r, await r.store.read()))
}

export interface AllocateResult {
  changed: boolean
  owner: string
  allocations: IpAllocation[]
  warnings?: string[]
}

/** One address per pod CIDR for `owner` (default a fresh `anon-<hex>`); idempotent per owner. */
export function allocateIp(t: HostIpamTarget, opts: AllocateOptions = {}): Promise<AllocateResult> {
  return mutate(t, (a) => a.allocate(opts))
}

export interface ConfirmResult {
  changed: boolean
  allocations: IpAllocation[]
  warnings?: string[]
}

/** Confirm pending allocations (by IP or owner); PN_IPAM_NOT_ALLOCATED when there are none. */
export function confirmIp(t: HostIpamTarget, sel: Selector): Promise<ConfirmResult> {
  return mutate(t, (a) => a.confirm(sel))
}

export interface ReleaseResult {
  changed: boolean
  released: IpAllocation[]
  warnings?: string[]
}

/** Release by IP or owner; releasing what is not allocated succeeds with changed:false. */
export function releaseIp(t: HostIpamTarget, sel: Selector): Promise<ReleaseResult> {
  return mutate(t, (a) => a.release(sel))
}

export interface GcResult {
  released: IpAllocation[]
  warnings?: string[]
}

/** Return expired pending allocations to the pool now. */
export function gcIps(t: HostIpamTarget): Promise<GcResult> {
  return mutate(t, (_a, expired) => ({released: expired}), {reportExpired: false})
}

export function listIps(t: HostIpamTarget): Promise<IpAllocation[]> {
  return view(t, (a) => a.list())
}

export function showIpam(t: HostIpamTarget): Promise<RangeStatus[]> {
  return view(t, (a) => a.show())
}

/** (Re)write the router reservations from the target's router IPs (node.json's by default). */
export function reserveRouterIps(t: HostIpamTarget): Promise<{changed: boolean; allocations: IpAllocation[]; warnings?: string[]}> {
  return mutate(
    t,
    (a, _expired, r) => {
      const created = a.dirty && a.list().every((x) => x.owner === ROUTER_OWNER)
      const wanted = r.ranges.map((x, i) => x.routerIp ?? a.ranges[i].routerIp)
      const res = a.reserveRouters(wanted)
      return {...res, changed: res.changed || created}
    },
    {rewriteRouters: true},
  )
}

/** Forget all host-scope allocations (pn node reset). */
export async function resetIpam(stateDir: string, store?: Store<IpamState>, lock?: LockOptions): Promise<{removed: boolean; file: string}> {
  const s = store ?? new FileStore(ipamFile(stateDir), spec, lock)
  return {removed: await s.remove(), file: s.location}
}
