/**
 * Host-scope IPAM (the agent's job): pod IPs from the node's pod CIDR, persisted in
 * `<state-dir>/ipam/` (src/ipam/host-store.ts: a fixed-size bitmap per pod CIDR plus one record
 * per owner, so a call costs the same however many addresses are held). Every mutation runs under
 * the lock `<state-dir>/ipam.json.lock`, and starts by returning expired pending allocations to the
 * pool (so a crashed CNI ADD leaks its IP only until the expiry, never for good). A mutation
 * returns only once its owner records are on disk (fsync'd; host-store.ts), or, with the flow's
 * `syncs` group, once the flow has flushed it (the records' data is fsync'd before their rename
 * either way).
 */
import {rmSync} from 'node:fs'
import {fsp as fs} from '../exec/fs.js'
import path from 'node:path'
import {normalizeCidr, parseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {fileExists, syncDir, syncPaths, withLock, type LockOptions, type SyncGroup} from '../state/files.js'
import type {Store} from '../state/store.js'
import {randomHex} from '../state/digest.js'
import type {RandomInt} from './bitmap.js'
import {
  canonicalIpOrUndefined,
  IPAM_DIR,
  IpamDir,
  ownerKey,
  readAllAllocations,
  repairIpamDir,
  ROUTER_KEY,
  writeIpamDir,
  type IpamMeta,
  type OwnerRecord,
} from './host-store.js'
import {
  HostAllocator,
  IpRange,
  ROUTER_OWNER,
  type AllocateOptions,
  type IpAllocation,
  type IpamState,
  type RangeStatus,
  selectorIps,
  type InUse,
  type Selector,
  type StoredAllocation,
} from './host-allocator.js'

export {ROUTER_OWNER, type AllocateOptions, type AllocationState, type InUse, type IpAllocation, type IpamState, type RangeStatus, type Selector} from './host-allocator.js'

/**
 * What to allocate from: the pod CIDRs (one per family) and where their state lives. IPAM
 * never reads the node context; the node layer resolves it (src/node/ipam.ts).
 */
export interface HostIpamTarget {
  /** The state dir (IPAM keeps `ipam/` and the lock `ipam.json.lock` there). */
  stateDir: string
  podCidrs: string[]
  /** Router IPs (one per family); default the first usable address. */
  routerIps?: string[]
  /** Where the CIDRs came from (node.json or flags), for hints. */
  source?: 'node' | 'standalone'
  lock?: LockOptions
  /**
   * The flow's group of fsyncs (src/state/files.ts SyncGroup): a change's directory fsync is
   * added to it instead of run before the call returns, and the flow flushes it before it
   * reports success. The records' data is fsync'd before their rename either way.
   */
  syncs?: SyncGroup
  /** Tests: a MemoryStore (the whole state as one value) instead of the ipam/ directory. */
  store?: Store<IpamState>
  /** Tests: the clock (ms). */
  now?: () => number
  /** Tests: the random source of the random strategy. */
  random?: RandomInt
  /**
   * Tests: called after each step of writing a change to ipam/ ('journal', 'records', 'links',
   * 'pending', 'bitmap', 'meta'); throwing there leaves the directory as a kill at that point would.
   */
  afterStep?: (step: string) => void
  /** Tests: the kernel's boot id (another value stands in a reboot since the last call). */
  bootId?: string
}

/** `<file>.lock` is the IPAM lock (named after the file of the first format, which no pn reads any more). */
export function ipamFile(stateDir: string): string {
  return path.join(stateDir, 'ipam.json')
}

/** Where host-scope IPAM keeps its state. */
export function ipamDir(stateDir: string): string {
  return path.join(stateDir, IPAM_DIR)
}

/** Whether the state dir holds IPAM state. */
export async function ipamExists(stateDir: string): Promise<boolean> {
  return fileExists(path.join(ipamDir(stateDir), 'meta.json'))
}

interface Resolved {
  ranges: {cidr: string; routerIp?: string}[]
  /** Router IPs were given (flag or node.json) rather than defaulted. */
  explicitRouters: boolean
  warnings: string[]
  /** Tests' in-memory store; undefined for the ipam/ directory. */
  store?: Store<IpamState>
  location: string
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
  return {ranges, explicitRouters: routers.length > 0, warnings, store: t.store, location: t.store?.location ?? ipamDir(t.stateDir), source}
}

/** Build the allocator from the stored state, refusing a state made for other ranges. */
function open(t: HostIpamTarget, r: Resolved, current: IpamState | undefined, rewriteRouters = false, bitmaps?: Uint32Array[]): HostAllocator {
  const opts = {now: t.now, random: t.random, source: `ipam state ${r.location}`, ...(bitmaps ? {bitmaps} : {})}
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
    throw new PnError('PN_NODE_CONFLICT', `open ipam state ${r.location}: it holds pod CIDRs ${have.join(', ')}, not ${want.join(', ')}`, {
      hint: `${fix}; or start over (this forgets every pod IP): pn node reset, or remove ${r.location}`,
      details: {state: have, requested: want},
    })
  }
  if (r.explicitRouters && !rewriteRouters) {
    for (const [i, x] of r.ranges.entries()) {
      if (x.routerIp !== undefined && alloc.ranges[i].checkIp(x.routerIp, 'router ip') !== alloc.ranges[i].routerIp) {
        throw new PnError('PN_NODE_CONFLICT', `open ipam state ${r.location}: router IP of ${x.cidr} is ${alloc.ranges[i].routerIp}, not ${x.routerIp}`, {
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

/**
 * Which records an operation reads besides the router's and the pending ones: its owners and the
 * holders of its IPs, or every record (`all`). This is what keeps a call's cost flat.
 */
interface Need {
  owners?: string[]
  ips?: string[]
  all?: boolean
}

type MutateFn<R> = (a: HostAllocator, expired: IpAllocation[], r: Resolved) => R

interface MutateOptions {
  rewriteRouters?: boolean
  reportExpired?: boolean
  /** Check the whole directory against the owner records first (pn ipam gc). */
  repair?: boolean
}

function withWarnings<R extends object>(result: R, ...lists: (string[] | undefined)[]): R & {warnings?: string[]} {
  const warnings = [...lists.flatMap((l) => l ?? []), ...(((result as {warnings?: string[]}).warnings) ?? [])]
  const {warnings: _drop, ...rest} = result as R & {warnings?: string[]}
  return {...(rest as R), ...(warnings.length > 0 ? {warnings} : {})}
}

/** A locked read-modify-write: gc, then `fn`; writes only when something changed. */
async function mutate<R extends object>(
  t: HostIpamTarget,
  fn: MutateFn<R>,
  opts: MutateOptions = {},
  need: Need = {},
): Promise<R & {warnings?: string[]}> {
  const r = await resolveTarget(t)
  const run = (alloc: HostAllocator) => {
    const expired = alloc.gc()
    const result = fn(alloc, expired, r)
    return withWarnings(result, r.warnings, opts.reportExpired === false ? [] : expiredWarning(expired))
  }
  if (r.store) {
    return r.store.update((current) => {
      const alloc = open(t, r, current, opts.rewriteRouters)
      const result = run(alloc)
      return {next: alloc.dirty ? alloc.toState() : undefined, result}
    })
  }
  if (batchable(t, opts, need)) return mutateTogether(t, r, run, need)
  const deferred = new Set<string>()
  const result = await withLock(ipamFile(t.stateDir), async () => {
    const d = new IpamDir(ipamDir(t.stateDir), t.bootId)
    d.deferredSyncs = deferred
    const meta = await d.readMeta()
    if (!meta) return createFresh(t, r, d, opts, run)
    const fixed = await d.recover(meta)
    if (opts.repair) fixed.push(...(await repairIpamDir(d, meta)))
    const loaded = await loadPartial(d, meta, need, opts.rewriteRouters ? r.ranges.flatMap((x) => (x.routerIp ? [x.routerIp] : [])) : [])
    const alloc = open(t, r, loaded.state, opts.rewriteRouters, loaded.bitmaps)
    const result = run(alloc)
    if (alloc.dirty) await commit(d, meta, loaded, alloc, t.afterStep ?? (() => undefined))
    return withWarnings(result, fixed.length > 0 ? [`repaired the ipam state (an interrupted change or a hand edit): ${fixed.join('; ')}`] : [])
  }, t.lock)
  // Durable before it returns, but outside the lock (IpamDir.writeRecords); or with the flow's group.
  if (t.syncs) t.syncs.add(...deferred)
  else if (deferred.size > 0) await syncPaths(deferred)
  return result
}

/**
 * Group commit of a flow's changes (a CNI ADD's allocation and confirmation, a DEL's release):
 * the changes that wait for the IPAM lock at the same moment run under one hold of it, on one
 * view of the records, and are written with one journal, one fsync of their records and one
 * `owners/` fsync for all, instead of one lock hold, journal and two commits each. 100 ADDs at
 * once made 200 changes one after another, each with its fsync under the lock. Only for flows
 * that pass a SyncGroup (so their durability is the flow's, at its end) and set no test hook;
 * each change sees the ones before it, in arrival order, as if they had queued for the lock, and
 * a change that fails leaves the others as they were (it runs on a copy it may throw away).
 */
interface Waiter {
  t: HostIpamTarget
  r: Resolved
  run: (a: HostAllocator) => object
  need: Need
  resolve: (v: never) => void
  reject: (e: unknown) => void
}

/** Changes waiting for the IPAM lock of a directory (and the same pod CIDRs), by key. */
const waiting = new Map<string, Waiter[]>()

function batchable(t: HostIpamTarget, opts: MutateOptions, need: Need): boolean {
  return t.syncs !== undefined && !opts.repair && !opts.rewriteRouters && !need.all && !t.lock?.whileHeld && !t.afterStep && !t.now && !t.random && t.bootId === undefined
}

function mutateTogether<R extends object>(t: HostIpamTarget, r: Resolved, run: (a: HostAllocator) => R, need: Need): Promise<R> {
  const key = `${ipamDir(t.stateDir)}\0${JSON.stringify(r.ranges)}`
  return new Promise<R>((resolve, reject) => {
    const w: Waiter = {t, r, run, need, resolve: resolve as (v: never) => void, reject}
    const queue = waiting.get(key)
    if (queue) {
      queue.push(w)
      return
    }
    const batch = [w]
    waiting.set(key, batch)
    void runTogether(key, batch)
  })
}

async function runTogether(key: string, batch: Waiter[]): Promise<void> {
  const first = batch[0]
  const d = new IpamDir(ipamDir(first.t.stateDir))
  const deferred = new Set<string>()
  d.deferredSyncs = deferred
  const outcomes: ({ok: true; value: object} | {ok: false; err: unknown})[] = []
  try {
    await withLock(ipamFile(first.t.stateDir), async () => {
      // From here on, new changes form the next batch (and wait for this lock behind us).
      waiting.delete(key)
      let meta = await d.readMeta()
      // No ipam/ yet (a node's first change): written whole by the first change that succeeds.
      while (!meta && outcomes.length < batch.length) {
        const w = batch[outcomes.length]
        try {
          outcomes.push({ok: true, value: await createFresh(w.t, w.r, d, {}, w.run)})
        } catch (err) {
          outcomes.push({ok: false, err})
        }
        meta = await d.readMeta()
      }
      const rest = batch.slice(outcomes.length)
      if (!meta || rest.length === 0) return
      const fixed = await d.recover(meta)
      const owners = rest.flatMap((w) => w.need.owners ?? [])
      const ips = rest.flatMap((w) => w.need.ips ?? [])
      const loaded = await loadPartial(d, meta, {owners, ips}, [])
      let alloc = open(first.t, first.r, loaded.state, false, loaded.bitmaps)
      const firstOfRest = outcomes.length
      for (const w of rest) {
        // A copy to go back to if this change fails: the others' changes stay.
        const state = alloc.toState()
        const words = alloc.ranges.map((x) => x.bitmap.toWords())
        try {
          outcomes.push({ok: true, value: w.run(alloc)})
        } catch (err) {
          outcomes.push({ok: false, err})
          alloc = open(first.t, first.r, state, false, words)
        }
      }
      await commit(d, meta, loaded, alloc, () => undefined)
      const repaired = fixed.length > 0 ? [`repaired the ipam state (an interrupted change or a hand edit): ${fixed.join('; ')}`] : []
      const o = outcomes[firstOfRest]
      if (repaired.length > 0 && o?.ok) outcomes[firstOfRest] = {ok: true, value: withWarnings(o.value, repaired)}
    }, first.t.lock)
  } catch (err) {
    // The lock, reading the state or writing it failed: every change of the batch with it (a
    // change written in part is finished or undone from its journal by the next one).
    waiting.delete(key)
    outcomes.length = 0
    for (let i = 0; i < batch.length; i++) outcomes.push({ok: false, err})
  }
  for (const [i, w] of batch.entries()) {
    const o = outcomes[i]
    if (o.ok) {
      w.t.syncs!.add(...deferred)
      w.resolve(o.value as never)
    } else w.reject(o.err)
  }
}

/** No ipam/ yet: run on a fresh state and write the directory whole. */
async function createFresh<R extends object>(
  t: HostIpamTarget,
  r: Resolved,
  d: IpamDir,
  opts: MutateOptions,
  run: (a: HostAllocator) => R,
): Promise<R> {
  const alloc = open(t, r, undefined, opts.rewriteRouters)
  const result = run(alloc)
  if (alloc.dirty) {
    await removeStale(t.stateDir)
    await fs.rm(d.dir, {recursive: true, force: true}) // a directory without meta.json is not a store
    await writeIpamDir(d.dir, alloc.toState(), d.bootId)
  }
  return result
}

/** Temp directories of killed writers. */
async function removeStale(stateDir: string): Promise<void> {
  for (const f of await fs.readdir(stateDir).catch(() => [] as string[])) {
    if (f.startsWith(`.${IPAM_DIR}.`) && f.endsWith('.tmp')) await fs.rm(path.join(stateDir, f), {recursive: true, force: true})
  }
}

interface Loaded {
  state: IpamState
  bitmaps: Uint32Array[]
  records: Map<string, OwnerRecord | undefined>
}

async function loadPartial(d: IpamDir, meta: IpamMeta, need: Need, extraIps: string[]): Promise<Loaded> {
  const records = new Map<string, OwnerRecord | undefined>()
  if (need.all) {
    for (const [k, rec] of (await readAllAllocations(d)).records) records.set(k, rec)
  } else {
    const keys = new Set<string>([ROUTER_KEY, ...(await d.pendingKeys())])
    for (const o of need.owners ?? []) keys.add(ownerKey(o))
    for (const text of [...(need.ips ?? []), ...extraIps, ...meta.ranges.map((x) => x.routerIp)]) {
      const ip = canonicalIpOrUndefined(text)
      const k = ip && (await d.ipHolder(ip))
      if (k) keys.add(k)
    }
    for (const k of keys) records.set(k, await d.readRecord(k))
  }
  const allocations: StoredAllocation[] = []
  for (const rec of records.values()) for (const a of rec?.allocations ?? []) allocations.push({...a, owner: rec!.owner})
  return {state: {version: 1, ranges: meta.ranges, allocations}, bitmaps: await d.readBitmaps(meta.ranges), records}
}

function sortedAllocations(list: StoredAllocation[]): StoredAllocation[] {
  return [...list].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))
}

/** Write what the operation changed: journal, records, links, bitmap words, meta; then drop the journal. */
async function commit(d: IpamDir, meta: IpamMeta, loaded: Loaded, alloc: HostAllocator, step: (s: string) => void): Promise<void> {
  const next = alloc.toState()
  const after = new Map<string, OwnerRecord>()
  for (const a of next.allocations) {
    const k = ownerKey(a.owner)
    const rec = after.get(k) ?? {owner: a.owner, allocations: []}
    rec.allocations.push(a)
    after.set(k, rec)
  }
  for (const rec of after.values()) rec.allocations = sortedAllocations(rec.allocations)
  const changed: string[] = []
  for (const k of new Set([...loaded.records.keys(), ...after.keys()])) {
    const was = JSON.stringify(sortedAllocations(loaded.records.get(k)?.allocations ?? []))
    if (was !== JSON.stringify(after.get(k)?.allocations ?? [])) changed.push(k)
  }
  const ips = new Set<string>()
  for (const k of changed) {
    for (const a of loaded.records.get(k)?.allocations ?? []) ips.add(a.ip)
    for (const a of after.get(k)?.allocations ?? []) ips.add(a.ip)
  }
  const metaNext: IpamMeta = {version: 2, ranges: next.ranges}
  const metaChanged = JSON.stringify(metaNext.ranges) !== JSON.stringify(meta.ranges)
  const words = alloc.ranges.map((x) => x.bitmap.toWords())
  const bitsChanged = words.some((w, i) => w.some((v, j) => v !== loaded.bitmaps[i][j]))
  if (changed.length === 0 && !metaChanged && !bitsChanged) return

  await d.writeJournal({keys: changed, ips: [...ips]})
  step('journal')
  await d.writeRecords(changed.map((k) => [k, after.get(k)]))
  step('records')
  for (const ip of ips) {
    const holder = changed.find((k) => after.get(k)?.allocations.some((a) => a.ip === ip))
    if (holder !== undefined) await d.setLink(d.ipLink(ip), holder)
    else if (changed.includes((await d.ipHolder(ip)) ?? '')) rmSync(d.ipLink(ip), {force: true})
  }
  step('links')
  for (const k of changed) {
    if (after.get(k)?.allocations.some((a) => a.state === 'pending')) await d.setLink(d.pendingLink(k), k)
    else rmSync(d.pendingLink(k), {force: true})
  }
  step('pending')
  for (const [i, w] of words.entries()) await d.writeBitmapWords(i, loaded.bitmaps[i], w)
  step('bitmap')
  if (metaChanged) await d.writeMeta(metaNext)
  step('meta')
  await d.clearJournal()
}

/** Read-only view; a missing state shows what the first mutation would create. */
async function view<R>(t: HostIpamTarget, fn: (a: HostAllocator) => R, need: Need = {}): Promise<R> {
  const r = await resolveTarget(t)
  if (r.store) return fn(open(t, r, await r.store.read()))
  const d = new IpamDir(ipamDir(t.stateDir), t.bootId)
  const meta = await d.readMeta()
  if (!meta) return fn(open(t, r, undefined))
  if (await d.needsRecovery()) {
    // An interrupted change, or a reboot since the index was checked: finish it (under the lock) before reading.
    await withLock(ipamFile(t.stateDir), async () => void (await d.recover(meta)), t.lock)
  }
  const loaded = await loadPartial(d, meta, need, [])
  return fn(open(t, r, loaded.state, false, loaded.bitmaps))
}

export interface AllocateResult {
  changed: boolean
  owner: string
  allocations: IpAllocation[]
  warnings?: string[]
}

/** One address per pod CIDR for `owner` (default a fresh `anon-<hex>`); idempotent per owner. */
export function allocateIp(t: HostIpamTarget, opts: AllocateOptions = {}): Promise<AllocateResult> {
  return mutate(t, (a) => a.allocate(opts), {}, {owners: opts.owner !== undefined ? [opts.owner] : [], ips: opts.ip})
}

function needOf(sel: Selector): Need {
  return {owners: sel.owner !== undefined ? [sel.owner] : [], ips: selectorIps(sel)}
}

export interface ConfirmResult {
  changed: boolean
  allocations: IpAllocation[]
  warnings?: string[]
}

/** Confirm pending allocations (by IP or owner); PN_IPAM_NOT_ALLOCATED when there are none. */
export function confirmIp(t: HostIpamTarget, sel: Selector): Promise<ConfirmResult> {
  return mutate(t, (a) => a.confirm(sel), {}, needOf(sel))
}

export interface ReleaseResult {
  changed: boolean
  released: IpAllocation[]
  warnings?: string[]
}

export interface ReleaseOptions {
  /**
   * Asked, under the IPAM lock, about each allocation about to go: a description of who still
   * uses it refuses the whole release (PN_IPAM_IN_USE). IPAM knows no endpoints; the node layer
   * passes this (src/node/ipam.ts).
   */
  inUse?: InUse
}

/** Release by IPs or owner; releasing what is not allocated succeeds with changed:false. */
export function releaseIp(t: HostIpamTarget, sel: Selector, opts: ReleaseOptions = {}): Promise<ReleaseResult> {
  return mutate(t, (a) => a.release(sel, opts.inUse), {}, needOf(sel))
}

export interface GcResult {
  released: IpAllocation[]
  warnings?: string[]
}

/**
 * Return expired pending allocations to the pool now; also checks the whole state against the
 * owner records (bits or links without a record are freed), reporting any fix in `warnings`.
 */
export function gcIps(t: HostIpamTarget): Promise<GcResult> {
  return mutate(t, (_a, expired) => ({released: expired}), {reportExpired: false, repair: true})
}

export function listIps(t: HostIpamTarget): Promise<IpAllocation[]> {
  return view(t, (a) => a.list(), {all: true})
}

/** The allocations of one owner (reads only that owner's record). */
export function ownerIps(t: HostIpamTarget, owner: string): Promise<IpAllocation[]> {
  return view(t, (a) => a.ownerAllocations(owner), {owners: [owner]})
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

/**
 * Read-only check of the stored state (tests, diagnostics): every allocation, and what does not
 * add up (a bit or link without an owner record, a record without its bit, a pending interrupted
 * change). Empty `problems` means consistent.
 */
export async function verifyIpamState(stateDir: string): Promise<{allocations: StoredAllocation[]; problems: string[]}> {
  const d = new IpamDir(ipamDir(stateDir))
  const meta = await d.readMeta()
  if (!meta) return {allocations: [], problems: []}
  const problems = await repairIpamDir(d, meta, false)
  return {allocations: (await readAllAllocations(d)).allocations, problems}
}

/** Forget all host-scope allocations (pn node reset): the ipam/ directory, gone for good once this returns. */
export async function resetIpam(stateDir: string, store?: Store<IpamState>, lock?: LockOptions): Promise<{removed: boolean; file: string}> {
  if (store) return {removed: await store.remove(), file: store.location}
  const dir = ipamDir(stateDir)
  if (!(await fileExists(dir))) return {removed: false, file: dir}
  return withLock(ipamFile(stateDir), async () => {
    const removed = await fileExists(dir)
    if (removed) {
      // Out of the way in one rename, made durable, before the files go: a power loss during the
      // removal leaves a temp directory (removed by the next writer), never half a store.
      await fs.rename(dir, path.join(stateDir, `.${IPAM_DIR}.${process.pid}.${randomHex(4)}.tmp`))
      await syncDir(stateDir)
    }
    await removeStale(stateDir)
    return {removed, file: dir}
  }, lock)
}
