/**
 * Carrying a plan out on a node: validate against the node (pod CIDRs, its addresses), diff
 * under the table's lock, write every map operation in ONE `bpftool batch` (never a process per
 * service), and only then record the new table. A write the kernel refuses is undone from the
 * plan's inverses, so a failed apply leaves the previous table in force, in the maps and on disk.
 */
import path from 'node:path'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {nodeIpv4Addresses} from '../datapath/host.js'
import {pinnedMapId, pinnedMapIdentity, runMapBatch} from '../datapath/bpf/map-io.js'
import {requireNodeContext} from '../node/context.js'
import {readJsonFile, withLock, writeFileAtomic, type JsonFileSpec, type LockOptions} from '../state/files.js'
import {frontendKey, vipChecker, type ServiceSpec} from './model.js'
import {emptyTable, planServices, reportDiff, specsOf, tableFromFile, tableToFile, type PlannedOp, type ServiceDiff, type ServiceTable, type ServiceTableFile} from './plan.js'

export const SERVICES_FILE = 'services.json'
const LB_MAPS = ['pn_lb4_services', 'pn_lb4_backends'] as const

export function servicesFile(stateDir: string): string {
  return path.join(stateDir, SERVICES_FILE)
}

const TABLE_SPEC: JsonFileSpec<ServiceTableFile> = {
  what: 'service table',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v): v is ServiceTableFile =>
    typeof v === 'object' && v !== null && (v as ServiceTableFile).version === 1 && Array.isArray((v as ServiceTableFile).services) && Array.isArray((v as ServiceTableFile).backendIds),
}

export async function readServiceTable(stateDir: string): Promise<ServiceTable> {
  const f = await readJsonFile(servicesFile(stateDir), TABLE_SPEC)
  return f ? tableFromFile(f) : emptyTable()
}

/** What a change to the table asks for. */
export type ServiceChangeRequest =
  | {kind: 'replace'; services: ServiceSpec[]}
  | {kind: 'upsert'; service: ServiceSpec}
  | {kind: 'delete'; frontends: string[]}

export interface ApplyOptions {
  dryRun?: boolean
  lock?: LockOptions
}

export interface ApplyResult {
  changed: boolean
  dryRun: boolean
  /** Added/updated/removed services (lists cut at 1,000 entries each; `counts` is exact). */
  diff: ServiceDiff & {counts: {added: number; updated: number; removed: number; unchanged: number}; truncated: boolean}
  /** Map operations written (or, with dryRun, that would be). */
  mapOps: number
  /** Services in the table afterwards. */
  services: number
  /** The kernel maps had been re-created since the table was written: everything was rewritten. */
  resynced: boolean
  /** Time the change took inside pn (validation, diff, the map batch, the table write), ms. */
  durationMs: number
  warnings: string[]
}

/** Apply a change to the node's service table (see the file comment). */
export async function changeServices(runner: Runner, stateDir: string, req: ServiceChangeRequest, opts: ApplyOptions = {}): Promise<ApplyResult> {
  const t0 = performance.now()
  const node = await requireNodeContext(stateDir)
  const root = node.bpffsRoot
  const incoming = req.kind === 'replace' ? req.services : req.kind === 'upsert' ? [req.service] : []
  if (incoming.length > 0) {
    const check = vipChecker({podCidrs: node.podCidrs, addresses: [...node.routerIps, ...nodeIpv4Addresses()]})
    for (const s of incoming) check(s.frontend)
  }
  return withLock(servicesFile(stateDir), async () => {
    const table = await readServiceTable(stateDir)
    const identity = await pinnedMapIdentity(root, 'pn_lb4_services')
    if (!identity) {
      throw new PnError('PN_BPF_NOT_LOADED', `apply services: pn_lb4_services is not pinned under ${root}`, {
        hint: 'load the datapath with `pn bpf load --host` (a node loaded by a pn without services: `pn bpf unload --host --force`, then load)',
      })
    }
    const resync = table.maps?.identity !== identity && table.services.size > 0
    const warnings: string[] = []
    let desired: ServiceSpec[]
    let scope: Set<string> | undefined
    if (req.kind === 'replace') {
      desired = req.services
    } else if (req.kind === 'upsert') {
      desired = [req.service]
      scope = new Set([frontendKey(req.service.frontend)])
    } else {
      desired = []
      scope = new Set(req.frontends.filter((k) => table.services.has(k)))
      for (const k of req.frontends) if (!table.services.has(k)) warnings.push(`no service ${k} on this node`)
    }
    const plan = planServices(table, desired, {scope, resync})
    const changed = plan.ops.length > 0
    const result = {changed, dryRun: Boolean(opts.dryRun), diff: reportDiff(plan.diff), mapOps: plan.ops.length, services: plan.next.services.size, resynced: resync, durationMs: 0, warnings}
    const done = () => ({...result, durationMs: Math.round((performance.now() - t0) * 10) / 10})
    if (opts.dryRun || (!changed && table.maps?.identity === identity)) return done()
    const ids = table.maps?.identity === identity ? table.maps.ids : await mapIds(runner, root)
    await writeOps(runner, root, plan.ops, ids)
    await writeFileAtomic(servicesFile(stateDir), JSON.stringify(tableToFile({...plan.next, maps: {identity, ids}})) + '\n')
    return done()
  }, opts.lock)
}

async function mapIds(runner: Runner, root: string): Promise<Record<string, number>> {
  const ids: Record<string, number> = {}
  for (const m of LB_MAPS) ids[m] = await pinnedMapId(runner, root, m)
  return ids
}

/**
 * One batch for everything. A delete of an entry already gone (the table file one step behind
 * the maps after a killed run) is skipped and the rest continues; any other failure undoes
 * every operation that took effect, newest first, and reports PN_SERVICE_APPLY_FAILED.
 */
export async function writeOps(runner: Runner, root: string, ops: PlannedOp[], ids?: Record<string, number>): Promise<void> {
  const done: PlannedOp[] = []
  let rest = ops
  while (rest.length > 0) {
    const out = await runMapBatch(runner, root, rest.map((o) => o.op), ids)
    for (let i = 0; i < out.done; i++) done.push(rest[i]) // not push(...): 200,000 arguments overflow the stack
    if (!out.failed) return
    const failed = rest[out.failed.index]
    if (failed?.op.op === 'delete' && /No such file|not found/i.test(out.failed.error)) {
      rest = rest.slice(out.failed.index + 1)
      continue
    }
    const undo = [...done].reverse().map((o) => o.undo)
    let revertError: string | undefined
    try {
      const r = await runMapBatch(runner, root, undo, ids)
      if (r.failed) revertError = `${r.failed.error} (after ${r.done} of ${undo.length} undo operations)`
    } catch (err) {
      revertError = (err as Error).message
    }
    throw new PnError('PN_SERVICE_APPLY_FAILED', `apply services: the kernel refused map write ${done.length + 1} of ${ops.length}: ${out.failed.error}`, {
      hint: revertError
        ? 'the revert failed too (see details); run the same apply again once the cause is fixed'
        : 'nothing changed: the writes made before the failure were reverted; check `pn bpf map list` for full maps',
      details: {reverted: revertError ? false : done.length, ...(revertError ? {revertError} : {})},
    })
  }
}

export {specsOf}
