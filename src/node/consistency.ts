/**
 * The node's consistency check, in both directions: nothing the kernel holds without a record
 * (a pn_endpoints / pn_lxc / pn_ipcache entry no endpoint record explains, an lxc veth without a
 * record, a host route into an lxc for an address its record does not hold, an attachment's
 * confirmed IP without a record) and nothing recorded without its kernel part (a record whose
 * lxc is gone, whose map entries are missing or point elsewhere, whose IPs IPAM does not hold for
 * it, whose host route is missing in host-routes mode).
 *
 * `findInconsistencies` is pure (facts in, findings out, unit tested); `checkConsistency` reads
 * the facts; `repairInconsistencies` fixes them: stale entries and routes are deleted, orphan
 * links deleted, orphan IPs and records without their link go through the one teardown, missing
 * entries and routes of a live endpoint are written again; an IP that IPAM holds for another
 * attachment than the record's is reported, not guessed at. `pn status` reports
 * the findings; `pn cni gc` and the reconcile (node init, agent start) repair them.
 *
 * Why a stale entry is never an ADD in flight: ADD writes the record before the map entries, and
 * DEL removes the entries before the record, so an entry without a record is always left over.
 */
import {formatIp, parseIp} from '../cidr/cidr.js'
import {attachPod} from '../datapath/bpf/endpoint.js'
// map-io, not the bpf index: `pn cni gc` runs in pn-cni, whose bundle should not carry the loader.
import {applyMapOps, dumpMapEntries, type DecodedEntry, type MapOp} from '../datapath/bpf/map-io.js'
import {mapPath, pathExists} from '../datapath/bpf/bpffs.js'
import {
  ENDPOINT_F_HOST, IPCACHE_F_LOCAL, encodeEndpointKey, encodeIpcacheKey, encodeLxcKey,
} from '../datapath/bpf/maps/index.js'
import {deleteLinkByName, getLink, listLinks, type LinkInfo} from '../datapath/link.js'
import {LXC_RE} from '../datapath/sweep.js'
import {hostIfnameFor} from '../datapath/veth.js'
import {getEndpoint, listEndpoints, type EndpointRecord} from '../endpoint/store.js'
import {teardownEndpoint} from '../endpoint/teardown.js'
import type {Runner} from '../exec/runner.js'
import {applyOne} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'
import {listIps, ROUTER_OWNER, type IpAllocation} from '../ipam/host.js'
import type {LockOptions} from '../state/files.js'
import type {NodeContext} from './context.js'
import {ipamOf} from './ipam.js'
import {withAttachmentFileLock} from './lock.js'

export type InconsistencyKind =
  | 'stale-map-entry'
  | 'orphan-link'
  | 'stale-route'
  | 'orphan-ip'
  | 'record-without-link'
  | 'record-without-map-entry'
  | 'record-without-ip'
  | 'record-without-route'

export interface Inconsistency {
  kind: InconsistencyKind
  /** What is wrong, e.g. `pn_endpoints 10.0.1.5`, `lxc0123456789ab`, `endpoint 3 (web:eth0)`. */
  subject: string
  problem: string
  /** The attachment (`<containerId>:<ifname>`) it belongs to, when known. */
  attachment?: string
  map?: 'pn_endpoints' | 'pn_lxc' | 'pn_ipcache'
  /** The decoded map key: ip, ifindex or prefix. */
  key?: string
  link?: string
  route?: {dst: string; dev: string}
  ip?: string
}

/** What the check compares. Maps are undefined when not pinned (a host-routes node never loaded). */
export interface ConsistencyFacts {
  node: Pick<NodeContext, 'routing' | 'routerIps'>
  records: EndpointRecord[]
  links: Pick<LinkInfo, 'ifname' | 'ifindex'>[]
  maps?: {endpoints: DecodedEntry[]; lxc: DecodedEntry[]; ipcache: DecodedEntry[]}
  allocations: IpAllocation[]
  /** Host routes whose device is an lxc (host-routes mode adds `podIP/32 dev lxc…`). */
  routes: {dst: string; dev: string}[]
}

const canon = (ip: string): string => {
  try {
    const p = parseIp(ip)
    return formatIp(p.value, p.family)
  } catch {
    return ip
  }
}
const hostPrefix = (ip: string) => `${canon(ip)}/${ip.includes(':') ? 128 : 32}`

function splitOwner(owner: string): {containerId: string; ifname: string} {
  const i = owner.lastIndexOf(':')
  return {containerId: owner.slice(0, i), ifname: owner.slice(i + 1)}
}

/** An IPAM owner string of a CNI attachment (`<container-id>:<ifname>`). */
function attachmentOwner(owner: string): boolean {
  const i = owner.lastIndexOf(':')
  return i > 0 && owner !== ROUTER_OWNER && /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(owner.slice(0, i)) && /^[^/:\s]{1,15}$/.test(owner.slice(i + 1))
}

/** Compare the facts, both directions. Pure. */
export function findInconsistencies(f: ConsistencyFacts): Inconsistency[] {
  const out: Inconsistency[] = []
  const linkByName = new Map(f.links.map((l) => [l.ifname, l]))
  const recordByHost = new Map(f.records.map((r) => [r.hostIfname, r]))
  const label = (r: EndpointRecord) => `endpoint ${r.endpointId} (${r.id})`
  // Records whose lxc exists with the ifindex they name: the ones the kernel should mirror.
  const live = f.records.filter((r) => linkByName.get(r.hostIfname)?.ifindex === r.hostIfindex)
  const bpfLive = live.filter((r) => f.node.routing === 'bpf' && r.bpfAttached)
  const ipOwner = new Map<string, EndpointRecord>()
  for (const r of live) for (const ip of r.ips) ipOwner.set(canon(ip), r)

  // IPAM owners of attachments, and the lxc each would have: what a finding belongs to, if anyone.
  const owners = new Map<string, IpAllocation[]>()
  for (const a of f.allocations) if (attachmentOwner(a.owner)) owners.set(a.owner, [...(owners.get(a.owner) ?? []), a])
  const ownerByLxc = new Map([...owners.keys()].map((o) => {
    const t = splitOwner(o)
    return [hostIfnameFor(t.containerId, t.ifname), o]
  }))
  const ownerByIfindex = new Map<number, string>()
  for (const l of f.links) if (ownerByLxc.has(l.ifname)) ownerByIfindex.set(l.ifindex, ownerByLxc.get(l.ifname)!)
  const ownerByIp = new Map<string, string>()
  for (const [o, allocs] of owners) for (const a of allocs) ownerByIp.set(canon(a.ip), o)
  const belongs = (owner: string | undefined) => (owner ? {attachment: owner} : {})

  // Kernel → records: map entries.
  if (f.maps) {
    for (const e of f.maps.endpoints) {
      if ((Number(e.value.flags) & ENDPOINT_F_HOST) !== 0) continue
      const ip = canon(String(e.key.ip))
      const owner = ipOwner.get(ip)
      if (owner && owner.bpfAttached && f.node.routing === 'bpf' && Number(e.value.ifindex) === owner.hostIfindex) continue
      const gone = !f.links.some((l) => l.ifindex === Number(e.value.ifindex))
      out.push({
        kind: 'stale-map-entry', map: 'pn_endpoints', key: ip, subject: `pn_endpoints ${ip}`, ...belongs(ownerByIfindex.get(Number(e.value.ifindex))),
        problem: `points at ifindex ${e.value.ifindex}${gone ? ', which no longer exists' : ''} (endpoint ${e.value.endpointId}); no endpoint record holds ${ip} there`,
      })
    }
    for (const e of f.maps.lxc) {
      const ifindex = Number(e.key.ifindex)
      if (bpfLive.some((r) => r.hostIfindex === ifindex)) continue
      const gone = !f.links.some((l) => l.ifindex === ifindex)
      out.push({
        kind: 'stale-map-entry', map: 'pn_lxc', key: String(ifindex), subject: `pn_lxc ifindex ${ifindex}`, ...belongs(ownerByIfindex.get(ifindex)),
        problem: `${gone ? 'the device is gone' : 'no endpoint record names this device'} (endpoint ${e.value.endpointId}, ${[e.value.ip4, e.value.ip6].filter(Boolean).join(', ') || 'no ip'})`,
      })
    }
    for (const e of f.maps.ipcache) {
      if ((Number(e.value.flags) & IPCACHE_F_LOCAL) === 0) continue
      const prefix = String(e.key.prefix)
      const [ip, len] = prefix.split('/')
      const owner = ipOwner.get(canon(ip))
      if (owner && owner.bpfAttached && f.node.routing === 'bpf' && hostPrefix(ip) === `${canon(ip)}/${len}`) continue
      out.push({kind: 'stale-map-entry', map: 'pn_ipcache', key: prefix, subject: `pn_ipcache ${prefix}`, problem: `a local prefix no endpoint record holds`, ...belongs(ownerByIp.get(canon(ip)))})
    }
  }
  // Kernel → records: lxc devices and their routes.
  for (const l of f.links) {
    if (!LXC_RE.test(l.ifname) || recordByHost.has(l.ifname)) continue
    const owner = ownerByLxc.get(l.ifname)
    // An ADD between its veth and its record holds a pending IP: not an orphan yet.
    if (owner && owners.get(owner)!.some((a) => a.state === 'pending')) continue
    out.push({kind: 'orphan-link', link: l.ifname, subject: l.ifname, problem: 'an lxc device no endpoint record names', ...(owner ? {attachment: owner} : {})})
  }
  for (const rt of f.routes) {
    const rec = recordByHost.get(rt.dev)
    if (!rec) continue // the device is an orphan (reported above); its routes go with it
    const ip = rt.dst.split('/')[0]
    if (rec.ips.some((x) => canon(x) === canon(ip))) continue
    out.push({kind: 'stale-route', route: rt, subject: `route ${rt.dst} dev ${rt.dev}`, problem: `${label(rec)} does not hold ${ip}`, attachment: rec.id})
  }
  // Kernel (IPAM is pn's own, but it is what hands addresses out) → records.
  const recordIds = new Set(f.records.map((r) => r.id))
  for (const [owner, allocs] of owners) {
    if (recordIds.has(owner)) continue
    for (const a of allocs.filter((x) => x.state === 'confirmed')) {
      out.push({kind: 'orphan-ip', ip: a.ip, attachment: owner, subject: `ip ${a.ip}`, problem: `confirmed for ${owner}, which has no endpoint record`})
    }
  }

  // Records → kernel.
  for (const r of f.records) {
    const link = linkByName.get(r.hostIfname)
    if (!link) {
      out.push({kind: 'record-without-link', attachment: r.id, subject: label(r), problem: `its lxc ${r.hostIfname} is gone`})
      continue
    }
    if (link.ifindex !== r.hostIfindex) {
      out.push({kind: 'record-without-link', attachment: r.id, subject: label(r), problem: `${r.hostIfname} has ifindex ${link.ifindex}, the record says ${r.hostIfindex}`})
      continue
    }
    // `pn veth create --ip` takes addresses from anyone (`pn ipam alloc --owner web`, or none at
    // all: IPAM is not its business), so only a clash is a finding: IPAM holds the address for
    // another attachment, which could be handed the same IP. Who is right is not pn's to guess.
    for (const ip of r.ips) {
      const holder = ownerByIp.get(canon(ip))
      if (holder && holder !== r.id) out.push({kind: 'record-without-ip', attachment: r.id, ip, subject: label(r), problem: `IPAM holds ${ip} for ${holder}, not for ${r.id}`})
    }
    if (f.node.routing === 'host-routes') {
      for (const ip of r.ips) {
        if (!f.routes.some((rt) => rt.dev === r.hostIfname && canon(rt.dst.split('/')[0]) === canon(ip))) {
          out.push({kind: 'record-without-route', attachment: r.id, ip, route: {dst: hostPrefix(ip), dev: r.hostIfname}, subject: label(r), problem: `no host route ${hostPrefix(ip)} dev ${r.hostIfname}`})
        }
      }
    }
    if (f.maps && f.node.routing === 'bpf' && r.bpfAttached) {
      const missing: string[] = []
      for (const ip of r.ips) {
        if (!f.maps.endpoints.some((e) => canon(String(e.key.ip)) === canon(ip) && Number(e.value.ifindex) === r.hostIfindex)) missing.push(`pn_endpoints ${ip}`)
        if (!f.maps.ipcache.some((e) => String(e.key.prefix) === hostPrefix(ip))) missing.push(`pn_ipcache ${hostPrefix(ip)}`)
      }
      if (!f.maps.lxc.some((e) => Number(e.key.ifindex) === r.hostIfindex)) missing.push(`pn_lxc ${r.hostIfindex}`)
      if (missing.length) out.push({kind: 'record-without-map-entry', attachment: r.id, subject: label(r), problem: `missing ${missing.join(', ')}`})
    }
  }
  return out
}

async function lxcRoutes(runner: Runner): Promise<{dst: string; dev: string}[]> {
  const out: {dst: string; dev: string}[] = []
  for (const family of [4, 6] as const) {
    const {routes} = await applyOne(kernelFor(runner), {kind: 'route.list', family}).catch(() => ({routes: []}))
    for (const rt of routes) {
      // Only host routes (what host-routes mode adds per pod IP); the kernel's own (fe80::/64) are no one's record.
      if (!rt.dev || !LXC_RE.test(rt.dev) || rt.dst === 'default' || rt.protocol === 'kernel') continue
      if (rt.dst.includes('/') && !/\/(32|128)$/.test(rt.dst)) continue
      out.push({dst: rt.dst.includes('/') ? rt.dst : `${rt.dst}/${rt.dst.includes(':') ? 128 : 32}`, dev: rt.dev})
    }
  }
  return out
}

/** Read the facts (records, links, maps, IPAM, routes) and compare them. */
export async function checkConsistency(
  runner: Runner,
  stateDir: string,
  node: NodeContext,
  known: {records?: EndpointRecord[]; links?: LinkInfo[]} = {},
): Promise<Inconsistency[]> {
  const root = node.bpffsRoot
  const pinned = await pathExists(mapPath(root, 'pn_endpoints')) && await pathExists(mapPath(root, 'pn_lxc')) && await pathExists(mapPath(root, 'pn_ipcache'))
  const [records, links, maps, allocations, routes] = await Promise.all([
    known.records ?? listEndpoints(stateDir),
    known.links ?? listLinks(runner),
    pinned
      ? Promise.all([dumpMapEntries(runner, root, 'pn_endpoints'), dumpMapEntries(runner, root, 'pn_lxc'), dumpMapEntries(runner, root, 'pn_ipcache')]).then(([endpoints, lxc, ipcache]) => ({endpoints, lxc, ipcache}))
      : Promise.resolve(undefined),
    listIps(ipamOf(node, stateDir)).catch(() => [] as IpAllocation[]),
    lxcRoutes(runner),
  ])
  return findInconsistencies({node, records, links, ...(maps ? {maps} : {}), allocations, routes})
}

export interface RepairOptions {
  lock?: LockOptions
  log?: (m: string) => void
  /**
   * Tear down records whose lxc is gone (GC: the runtime asked for cleanup). The reconcile keeps
   * those whose netns is still there for their runtime's DEL (see reconcile.ts).
   */
  teardownRecordsWithoutLink?: boolean
  /**
   * Attachments the runtime lists as valid (GC): their live parts without a record (a veth, its
   * IPs and map entries, e.g. after `pn endpoint delete` without --purge) are reported, not torn
   * down; GC does not take down a pod its runtime still runs. Their runtime's DEL removes them.
   */
  keep?: Set<string>
}

export interface RepairResult {
  repaired: {subject: string; kind: InconsistencyKind; action: string}[]
  errors: {subject: string; kind: InconsistencyKind; message: string}[]
}

/** Fix what `checkConsistency` found; every item is attempted, failures are returned. */
export async function repairInconsistencies(runner: Runner, stateDir: string, node: NodeContext, found: Inconsistency[], opts: RepairOptions = {}): Promise<RepairResult> {
  const out: RepairResult = {repaired: [], errors: []}
  const ipam = ipamOf(node, stateDir, opts.lock)
  const kept = (i: Inconsistency) => !!i.attachment && !!opts.keep?.has(i.attachment) && (i.kind === 'stale-map-entry' || i.kind.startsWith('orphan-'))
  found = found.filter((i) => !kept(i))
  const attempt = async (i: Inconsistency, action: string, fn: () => Promise<unknown>) => {
    try {
      await fn()
      out.repaired.push({subject: i.subject, kind: i.kind, action})
      opts.log?.(`consistency: ${i.subject}: ${action}`)
    } catch (err) {
      out.errors.push({subject: i.subject, kind: i.kind, message: (err as Error).message})
    }
  }
  /** The one teardown under the attachment's lock, when `still()` holds there (read again, after the lock). */
  const teardown = (owner: string, still: () => Promise<boolean>) => {
    const t = splitOwner(owner)
    return withAttachmentFileLock(stateDir, t.containerId, t.ifname, async () => {
      if (!(await still())) return
      const res = await teardownEndpoint(runner, stateDir, t, {...(node.routing === 'bpf' ? {bpf: node} : {}), ipam, ...(opts.log ? {log: opts.log} : {})})
      if (res.errors.length) throw new Error(res.errors.map((e) => `${e.step}: ${e.message}`).join('; '))
    }, opts.lock)
  }
  const noRecord = (owner: string) => async () => {
    const t = splitOwner(owner)
    return !(await getEndpoint(stateDir, t.containerId, t.ifname).catch(() => undefined))
  }
  // Stale map entries, deleted by key in one batch (one at a time if the batch stops at an entry
  // gone meanwhile). The records are read again first: an ADD writes its record before its
  // entries, so an entry a record now claims (an IP handed out again meanwhile) is left alone.
  const now = await listEndpoints(stateDir)
  const claimed = (i: Inconsistency) => now.some((r) => i.map === 'pn_lxc'
    ? r.hostIfindex === Number(i.key)
    : r.ips.some((ip) => canon(ip) === canon(i.map === 'pn_ipcache' ? i.key!.split('/')[0] : i.key!)))
  const stale = found.filter((i) => i.kind === 'stale-map-entry' && !claimed(i))
  const opOf = (i: Inconsistency): MapOp => ({op: 'delete', map: i.map!, key: i.map === 'pn_endpoints' ? encodeEndpointKey(i.key!) : i.map === 'pn_lxc' ? encodeLxcKey(Number(i.key)) : encodeIpcacheKey(i.key!)})
  const batched = stale.length > 0 && (await applyMapOps(runner, node.bpffsRoot, stale.map(opOf)).then(() => true, () => false))
  for (const i of stale) {
    await attempt(i, `deleted the ${i.map} entry`, async () => {
      if (batched) return
      await applyMapOps(runner, node.bpffsRoot, [opOf(i)]).catch(async (err) => {
        if (await entryStillThere(runner, node, i)) throw err
      })
    })
  }
  const tornDown = new Set<string>()
  for (const i of found.filter((x) => x.kind === 'orphan-ip' || (x.kind === 'orphan-link' && x.attachment))) {
    const owner = i.attachment!
    if (tornDown.has(owner)) continue
    tornDown.add(owner)
    await attempt(i, `tore down ${owner} (no endpoint record)`, () => teardown(owner, noRecord(owner)))
  }
  for (const i of found.filter((x) => x.kind === 'orphan-link' && !x.attachment)) {
    await attempt(i, 'deleted the device', async () => {
      // Read again: a record written meanwhile (a `pn veth create` finishing) claims it.
      if ((await listEndpoints(stateDir)).some((r) => r.hostIfname === i.link)) return
      await deleteLinkByName(runner, i.link!)
    })
  }
  for (const i of found.filter((x) => x.kind === 'stale-route')) {
    await attempt(i, 'deleted the route', () => applyOne(kernelFor(runner), {kind: 'route.del', dst: i.route!.dst, dev: i.route!.dev, missingOk: true}))
  }
  if (opts.teardownRecordsWithoutLink) {
    for (const i of found.filter((x) => x.kind === 'record-without-link')) {
      if (tornDown.has(i.attachment!)) continue
      tornDown.add(i.attachment!)
      await attempt(i, 'tore it down (its lxc is gone)', () => teardown(i.attachment!, async () => {
        const t = splitOwner(i.attachment!)
        const rec = await getEndpoint(stateDir, t.containerId, t.ifname).catch(() => undefined)
        return !!rec && (await getLink(runner, rec.hostIfname).catch(() => undefined))?.ifindex !== rec.hostIfindex
      }))
    }
  }
  for (const i of found.filter((x) => x.kind === 'record-without-route')) {
    await attempt(i, 'added the route', () => applyOne(kernelFor(runner), {kind: 'route.add', dst: i.route!.dst, dev: i.route!.dev, scope: 'link', replace: true}))
  }
  for (const i of found.filter((x) => x.kind === 'record-without-map-entry')) {
    await attempt(i, 'wrote its map entries and attached from-container again', async () => {
      const t = splitOwner(i.attachment!)
      await withAttachmentFileLock(stateDir, t.containerId, t.ifname, async () => {
        const rec = await getEndpoint(stateDir, t.containerId, t.ifname)
        if (rec) await attachPod(runner, node, rec)
      }, opts.lock)
    })
  }
  return out
}

async function entryStillThere(runner: Runner, node: NodeContext, i: Inconsistency): Promise<boolean> {
  const entries = await dumpMapEntries(runner, node.bpffsRoot, i.map!).catch(() => [] as DecodedEntry[])
  return entries.some((e) => String(i.map === 'pn_endpoints' ? e.key.ip : i.map === 'pn_lxc' ? e.key.ifindex : e.key.prefix) === i.key)
}
