/**
 * Carrying a plan out on a node: validate against the node (pod CIDRs, its addresses), diff
 * under the table's lock, write every map operation as one frame of records (batch syscalls from
 * this process through the addon, no per-entry text, no process start), and only then commit
 * the new table. A write the kernel refuses is undone from the plan's inverses, so a
 * failed apply leaves the previous table in force, in the maps and on disk.
 *
 * Crash safety: the new table is written to `services.bin.pending` (temp file, fsync, rename,
 * directory fsync) BEFORE the maps, and renamed over `services.bin` after them (directory fsync:
 * the change is on disk when the call returns). A run killed in between leaves the pending file;
 * the next change (under the lock) rolls the maps forward to it (rewrites its entries, deletes
 * what only the committed table had), commits it, and goes on from there. After a power loss
 * the pinned maps are gone with the kernel: the table's maps identity no longer matches, and the
 * next change rewrites every entry from the table.
 */
import {promises as fs} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {PnError} from '../errors.js'
import {mapPath} from '../datapath/bpf/bpffs.js'
import {OP_UPDATE, OpList, VALUE_OFFSET, openMapWriter, type MapWriter} from '../datapath/bpf/op-list.js'
import {requireNodeContext} from '../node/context.js'
import {DEFAULT_LOCK_TIMEOUT_MS, ensureDir, fileExists, readFileIfExists, removeFileDurable, renameDurable, syncPaths, withLock, writeFileAtomic, type LockOptions} from '../state/files.js'
import {frontendKey, vipChecker, type ServiceSpec} from './model.js'
import {allocateNodePorts, EXTERNAL_FILE, expandForNode, nodePortsInUse, readExternalIndex, writeExternalIndex, type ExternalIndex} from './nodeport.js'
import {LB_GATE_MAP, LB_OP_MAPS, planRollForward, planServices, reportDiff, type PlannedOps, type ServiceDiff} from './plan.js'
import {
  decodeTable,
  emptyTable,
  encodeTable,
  endpointNum,
  frontendNumOfKey,
  ipNum,
  loadScoped,
  patchScoped,
  protoNum,
  tableIdentity,
  type ScopedTable,
  type ServiceTable,
} from './table.js'

export const SERVICES_FILE = 'services.bin'

export function servicesFile(stateDir: string): string {
  return path.join(stateDir, SERVICES_FILE)
}

function pendingFile(stateDir: string): string {
  return `${servicesFile(stateDir)}.pending`
}

/** The committed table (what `list` shows). */
export async function readServiceTable(stateDir: string): Promise<ServiceTable> {
  const file = servicesFile(stateDir)
  const buf = await readFileIfExists(file)
  return buf ? decodeTable(buf, file) : emptyTable()
}

/**
 * The pending table of a run that died before committing. It is renamed into place only after
 * its fsync, so it is whole; should one still be unreadable (a disk error, a hand edit), the
 * committed table is what counts, so it is dropped.
 */
async function readPending(stateDir: string, warnings: string[]): Promise<ServiceTable | undefined> {
  const file = pendingFile(stateDir)
  const buf = await readFileIfExists(file)
  if (!buf) return undefined
  try {
    return decodeTable(buf, file)
  } catch (err) {
    warnings.push(`dropped an unreadable pending service table (${(err as Error).message})`)
    await removeFileDurable(file)
    return undefined
  }
}

/** The pending table (fsync'd when written) becomes the table: rename, directory fsync. */
async function commitPending(stateDir: string): Promise<void> {
  await renameDurable(pendingFile(stateDir), servicesFile(stateDir))
}

/**
 * Forget the node's service table (`pn node reset`): the committed and pending files,
 * under the table's lock. The maps go with the node's bpffs root; a table left behind would make
 * the next node's `pn service list` show services that are not programmed.
 */
export async function removeServiceTable(stateDir: string, lock: LockOptions = {}): Promise<string[]> {
  const files = [servicesFile(stateDir), pendingFile(stateDir), path.join(stateDir, EXTERNAL_FILE)]
  const present = async () => (await Promise.all(files.map(fileExists))).some(Boolean)
  if (!(await present())) return []
  return withLock(servicesFile(stateDir), async () => {
    const removed: string[] = []
    for (const f of files) {
      if (await fileExists(f)) {
        await removeFileDurable(f)
        removed.push(f)
      }
    }
    return removed
  }, lock)
}

/** `pn node reset`'s step for the service table (the command hands it to resetNode). */
export function serviceResetStep(stateDir: string, lock: LockOptions = {}): {title: string; run: () => Promise<string[]>} {
  return {title: 'Remove the service table', run: () => removeServiceTable(stateDir, lock)}
}

/**
 * Identity of the pinned pn_lb4_services: its bpffs inode (a re-created map gets a new one, so a
 * table written for the old maps is known stale). Undefined when not pinned.
 */
export async function lbMapsIdentity(root: string): Promise<string | undefined> {
  const st = await fs.stat(mapPath(root, 'pn_lb4_services')).catch(() => undefined)
  return st ? `${st.dev}:${st.ino}` : undefined
}

/** The node's IPv4 addresses (a VIP must not be one). */
/** The uplink's first IPv4 address (this process runs in the node's netns): NodePort's address. */
function uplinkIpv4(uplink: string): string | undefined {
  return os.networkInterfaces()[uplink]?.find((a) => a.family === 'IPv4')?.address
}

function ipv4Addresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address))
}

/** What a change to the table asks for. */
export type ServiceChangeRequest =
  | {kind: 'replace'; services: ServiceSpec[]}
  | {kind: 'upsert'; service: ServiceSpec}
  | {kind: 'delete'; frontends: string[]}

export interface ApplyOptions {
  dryRun?: boolean
  lock?: LockOptions
  /** How maps are written (tests); default: the addon's writer on the node's pinned maps, holding the table lock. */
  openWriter?: (root: string, lock: {path: string; timeoutMs: number}) => Promise<MapWriter>
}

export interface ApplyResult {
  changed: boolean
  dryRun: boolean
  /** Added/updated/removed services (lists cut at 1,000 entries each; `counts` is exact). */
  diff: ServiceDiff & {truncated: boolean}
  /** Map operations written (or, with dryRun, that would be). */
  mapOps: number
  /** Services in the table afterwards. */
  services: number
  /** The kernel maps had been re-created since the table was written: everything was rewritten. */
  resynced: boolean
  /** An earlier run had died between writing the maps and committing the table: its change was completed first. */
  recovered: boolean
  /** Time the change took inside pn (validation, lock, diff, the map writes, the table write), ms. */
  durationMs: number
  warnings: string[]
}

/** Apply a change to the node's service table (see the file comment). */
export async function changeServices(stateDir: string, req: ServiceChangeRequest, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const t0 = performance.now()
  const node = await requireNodeContext(stateDir)
  const root = node.bpffsRoot
  const incoming = req.kind === 'replace' ? req.services : req.kind === 'upsert' ? [req.service] : []
  if (incoming.length > 0) {
    const check = vipChecker({podCidrs: node.podCidrs, addresses: [...node.routerIps, ...ipv4Addresses()]})
    for (const s of incoming) check(s.frontend)
  }
  // NodePort and external IPs (nodeport.ts): the frontends this change programs on this node,
  // the ones it replaces or removes, and the index afterwards.
  const ext = await readExternalIndex(stateDir)
  const nodeExp = {nodeIp: uplinkIpv4(node.uplink), podCidrs: node.podCidrs}
  let expanded: ServiceSpec[] = []
  let extIndex: ExternalIndex = ext
  let extraScope: string[] = []
  if (req.kind === 'replace') {
    const e = expandForNode(allocateNodePorts(req.services, ext), nodeExp)
    expanded = e.specs
    extIndex = e.index
  } else if (req.kind === 'upsert') {
    const key = frontendKey(req.service.frontend)
    const e = expandForNode(allocateNodePorts([req.service], ext, nodePortsInUse(ext, new Set([key]))), nodeExp)
    expanded = e.specs
    extIndex = {...ext}
    delete extIndex[key]
    if (e.index[key]) extIndex[key] = e.index[key]
    extraScope = (ext[key]?.derived ?? []).filter((k) => !expanded.some((x) => frontendKey(x.frontend) === k))
  } else {
    extraScope = req.frontends.flatMap((f) => ext[f]?.derived ?? [])
    extIndex = {...ext}
    for (const f of req.frontends) delete extIndex[f]
  }
  const saveIndex = async () => {
    if (!opts.dryRun && JSON.stringify(extIndex) !== JSON.stringify(ext)) await writeExternalIndex(stateDir, extIndex)
  }
  const identity = await lbMapsIdentity(root)
  if (!identity) {
    throw new PnError('PN_BPF_NOT_LOADED', `apply services: pn_lb4_services is not pinned under ${root}`, {
      hint: 'load the datapath with `pn bpf load --host` (a node loaded by a pn without services: `pn bpf unload --host --force`, then load)',
    })
  }
  await ensureDir(stateDir)
  const lock = {path: `${servicesFile(stateDir)}.lock`, timeoutMs: opts.lock?.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS}
  const writer = await (opts.openWriter ?? ((r, l) => openMapWriter(r, LB_OP_MAPS, {lock: l, locker: opts.lock?.locker})))(root, lock)
  try {
    await opts.lock?.whileHeld?.(lock.path)
    const file = servicesFile(stateDir)
    const raw = await readFileIfExists(file)
    const warnings: string[] = []
    const pending = await readPending(stateDir, warnings)
    let recovered = false
    let scoped: ScopedTable | undefined
    let table: ServiceTable
    if (!pending && raw && req.kind !== 'replace' && tableIdentity(raw, file) === identity) {
      // add/del: load just the services concerned and the backends they name.
      const keys = [...(req.kind === 'upsert' ? expanded.map((x) => frontendKey(x.frontend)) : req.frontends), ...extraScope]
      const proto = req.kind === 'upsert' ? protoNum(req.service.frontend.proto) : 0
      const endpoints = req.kind === 'upsert' ? expanded.flatMap((x) => x.backends.map((b) => endpointNum(ipNum(b.ip), b.port, proto))) : []
      scoped = loadScoped(raw, file, new Set(keys.map(frontendNumOfKey)), new Set(endpoints))
      table = scoped.table
    } else {
      table = raw ? decodeTable(raw, file) : await readServiceTable(stateDir)
    }
    if (pending) {
      if (!opts.dryRun) {
        // A run died after writing (some of) the maps: finish its change first.
        if (pending.maps?.identity === identity) await writeOps(writer, planRollForward(table, pending), {revert: false})
        await syncPaths([pendingFile(stateDir)]) // left by a run that may predate the fsync before its rename
        await commitPending(stateDir)
        recovered = true
      }
      table = pending
    }
    const resync = table.maps?.identity !== identity && table.services.size > 0
    let desired: ServiceSpec[]
    let scope: Set<string> | undefined
    if (req.kind === 'replace') {
      desired = expanded
    } else if (req.kind === 'upsert') {
      desired = expanded
      scope = new Set([...expanded.map((x) => frontendKey(x.frontend)), ...extraScope])
    } else {
      desired = []
      scope = new Set([...req.frontends, ...extraScope].filter((k) => table.services.has(frontendNumOfKey(k))))
      if (scope.size === 0 && req.frontends.length > 0) warnings.push(`no service ${req.frontends[0]} on this node`)
    }
    const plan = planServices(table, desired, {scope, resync, ...(scoped ? {outside: scoped.outside} : {})})
    const changed = plan.ops.length > 0
    const result = {changed, dryRun: Boolean(opts.dryRun), diff: reportDiff(plan.diff), mapOps: plan.ops.length, services: plan.next.services.size + (scoped?.outside.services ?? 0), resynced: resync, recovered, durationMs: 0, warnings}
    const done = () => ({...result, durationMs: Math.round((performance.now() - t0) * 10) / 10})
    if (opts.dryRun || (!changed && table.maps?.identity === identity)) {
      await saveIndex()
      return done()
    }
    const next = {...plan.next, maps: {identity}}
    // On disk before the first map write: a roll-forward never reads a table that is not there.
    await writeFileAtomic(pendingFile(stateDir), scoped ? patchScoped(scoped, next) : encodeTable(next))
    try {
      if (result.services > 0) await openServiceGate(writer)
      await writeOps(writer, plan.ops)
    } catch (err) {
      // Reverted: the maps are the committed table again. Not reverted: leave the pending
      // table, so the next change rolls the maps forward to it.
      if ((err as PnError).details?.reverted !== false) await removeFileDurable(pendingFile(stateDir))
      throw err
    }
    await commitPending(stateDir)
    await saveIndex()
    return done()
  } finally {
    await writer.close()
  }
}

/**
 * Set pn_lb4_gate (bpf/include/lb.h) before a change that leaves services in the maps: until it
 * is set, the datapath skips its service lookups (they could only miss). Written on every such
 * change (one record, idempotent), so maps re-created under a running table get it back with
 * the resync; never cleared here (flows of a deleted service may still have conntrack entries).
 */
async function openServiceGate(writer: MapWriter): Promise<void> {
  const ops = new OpList(LB_OP_MAPS, 1)
  ops.buf.writeUInt32LE(1, ops.add(OP_UPDATE, LB_GATE_MAP) + VALUE_OFFSET)
  const r = await writer.write(ops)
  if (r.failed) {
    throw new PnError('PN_SERVICE_APPLY_FAILED', `apply services: the kernel refused to enable the service datapath (pn_lb4_gate): ${r.failed.error}`, {
      hint: 'nothing changed; check that the maps are pinned (`pn bpf map list`) and reload with `pn bpf load --host`',
      details: {reverted: 0},
    })
  }
}

/**
 * Write a plan in one frame. A delete of an entry already gone is skipped by the writer; any
 * other failure undoes every operation that took effect, newest first (unless `revert` is
 * false: a roll-forward has no previous state to go back to), and reports PN_SERVICE_APPLY_FAILED.
 */
export async function writeOps(writer: MapWriter, plan: PlannedOps, opts: {revert?: boolean} = {}): Promise<void> {
  if (plan.length === 0) return
  const r = await writer.write(plan.ops)
  if (!r.failed) return
  const skipped = new Set(r.skipped)
  const undo = new OpList(plan.undo.maps, Math.max(1, r.done))
  for (let i = r.done - 1; i >= 0; i--) if (!skipped.has(i)) undo.addFrom(plan.undo, i)
  const what = describe(plan, r.failed.index)
  if (opts.revert === false) {
    throw new PnError('PN_SERVICE_APPLY_FAILED', `apply services: the kernel refused map write ${r.failed.index + 1} of ${plan.length} (${what}): ${r.failed.error}`, {
      hint: 'run the apply again once the cause is fixed (check `pn bpf map list` for full maps)',
      details: {reverted: false},
    })
  }
  let revertError: string | undefined
  try {
    const u = await writer.write(undo)
    if (u.failed) revertError = `${u.failed.error} (after ${u.done} of ${undo.length} undo operations)`
  } catch (err) {
    revertError = (err as Error).message
  }
  throw new PnError('PN_SERVICE_APPLY_FAILED', `apply services: the kernel refused map write ${r.failed.index + 1} of ${plan.length} (${what}): ${r.failed.error}`, {
    hint: revertError
      ? 'the revert failed too (see details); run the same apply again once the cause is fixed'
      : 'nothing changed: the writes made before the failure were reverted; check `pn bpf map list` for full maps',
    details: {reverted: revertError ? false : undo.length, ...(revertError ? {revertError} : {})},
  })
}

function describe(plan: PlannedOps, i: number): string {
  if (i < 0 || i >= plan.length) return 'unknown operation'
  const o = plan.ops.at(i)
  return `${o.op} ${o.map} key ${o.key.toString('hex')}`
}
