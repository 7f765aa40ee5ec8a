/**
 * tc attachment of pinned programs: a clsact qdisc (created only when missing, and then
 * remembered as pn's), one `bpf da object-pinned` filter at pref 1 handle 1 per hook. The
 * program is loaded once per node; attaching only references it, so a pod never runs clang.
 */
import {fsp as fs} from '../../exec/fs.js'
import path from 'node:path'
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import {applyOne} from '../../kernel/backend.js'
import {KernelError} from '../../kernel/errors.js'
import type {OpOf, TcFilter} from '../../kernel/ops.js'
import {kernelFor} from '../../kernel/tools.js'
import {PROGRAMS, pathExists, programPath, qdiscMarker, type ProgramName} from './bpffs.js'

export type Direction = 'ingress' | 'egress'

/** Where pn's filter sits on a hook: pref 1, handle 1 (one filter per hook). */
export const FILTER_PREF = 1
export const FILTER_HANDLE = 1

export interface TcAttachment {
  device: string
  direction: Direction
  program: string
}

/** The filters on one hook of a device (none when the device or its qdisc is absent). */
export async function showTcFilters(runner: Runner, device: string, direction: Direction): Promise<TcFilter[]> {
  return (await applyOne(kernelFor(runner), {kind: 'tc.list', dev: device, direction})).filters
}

/** The kernel id of a pinned program (undefined when not pinned). */
export async function pinnedProgramId(runner: Runner, pinned: string): Promise<number | undefined> {
  return (await applyOne(kernelFor(runner), {kind: 'prog.get', pinned})).prog?.id
}

/** The kernel refused the filter: PN_BPF_LOAD_FAILED (PN_BPF_NOT_LOADED for a missing pin), with what to run next. */
async function attachFailed(err: unknown, program: ProgramName, device: string, direction: Direction, pinned: string): Promise<PnError> {
  if (!(err instanceof KernelError)) return err as PnError
  return new PnError(err.code, `attach ${PROGRAMS[program]} to ${device} ${direction}: ${err.why}`, {
    hint: (await pathExists(pinned)) ? 'check `dmesg` and `pn bpf status`' : 'load the programs first: `pn bpf load --host`',
    details: err.details,
    cause: err,
  })
}

/** Attach a pinned program; {changed: false} when that program is already there. */
export async function attachTcProgram(
  runner: Runner,
  opts: {root: string; device: string; ifindex: number; direction: Direction; program: ProgramName; freshDevice?: boolean},
): Promise<{changed: boolean; createdQdisc: boolean}> {
  const kernel = kernelFor(runner)
  const pinned = programPath(opts.root, opts.program)
  const qdisc: OpOf<'qdisc.add'> = {kind: 'qdisc.add', dev: opts.device}
  const attach: OpOf<'tc.attach'> = {kind: 'tc.attach', dev: opts.device, direction: opts.direction, pref: FILTER_PREF, handle: FILTER_HANDLE, pinned}
  if (opts.freshDevice) {
    // A device pn just made has no qdisc: the qdisc and the filter go in one apply (one tc process).
    try {
      await kernel.apply([qdisc, attach])
      await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
      return {changed: true, createdQdisc: true}
    } catch (err) {
      if (!(err instanceof KernelError)) throw err
      // The filter failed: the qdisc is ours; give it back, then fail. The qdisc failed: not so
      // fresh after all — the general path below sorts it out.
      if (err.index === 1) {
        await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
        await releaseQdisc(runner, opts.root, opts.device, opts.ifindex).catch(() => undefined)
        throw await attachFailed(err, opts.program, opts.device, opts.direction, pinned)
      }
    }
  }
  let createdQdisc = true
  try {
    await applyOne(kernel, qdisc)
    await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
  } catch (err) {
    if (!(err instanceof KernelError)) throw err
    if (err.errno === 'ENODEV') {
      throw new PnError('PN_LINK_NOT_FOUND', `attach ${PROGRAMS[opts.program]} to ${opts.device}: device does not exist`, {
        hint: 'create the device first (`pn node init`, `pn veth create`), then rerun',
        cause: err,
      })
    }
    if (err.errno !== 'EEXIST') {
      throw new PnError('PN_BPF_LOAD_FAILED', `add clsact qdisc ${opts.device}: ${err.why}`, {details: err.details, cause: err})
    }
    createdQdisc = false
    // The qdisc was there already. If our program is already attached, there is nothing to do.
    // Same name is not enough: after a reload the old program (and its old maps) may still be
    // attached, so compare the attached program id with the pinned one.
    const [current, pinnedId] = await Promise.all([showTcFilters(runner, opts.device, opts.direction), pinnedProgramId(runner, pinned)])
    const mine = current.find((f) => f.pref === FILTER_PREF && f.prog !== undefined && f.prog.id === pinnedId)
    if (mine && pinnedId !== undefined) return {changed: false, createdQdisc: false}
  }
  try {
    await applyOne(kernel, attach)
  } catch (err) {
    if (createdQdisc) await releaseQdisc(runner, opts.root, opts.device, opts.ifindex).catch(() => undefined)
    throw await attachFailed(err, opts.program, opts.device, opts.direction, pinned)
  }
  return {changed: true, createdQdisc}
}

/** Remove pn's filter from one hook; {changed: false} when it (or the device) is already gone. */
export async function detachTcProgram(runner: Runner, opts: {device: string; direction: Direction}): Promise<{changed: boolean}> {
  const r = await applyOne(kernelFor(runner), {kind: 'tc.detach', dev: opts.device, direction: opts.direction, pref: FILTER_PREF, handle: FILTER_HANDLE, missingOk: true})
  return {changed: r.deleted}
}

/**
 * Delete the clsact qdisc if pn created it and no filters remain on it (someone else's filter
 * added later keeps it alive); the marker goes either way once the device is gone.
 */
export async function releaseQdisc(runner: Runner, root: string, device: string, ifindex: number): Promise<{deleted: boolean; warning?: string}> {
  const marker = qdiscMarker(root, device, ifindex)
  if (!(await pathExists(marker))) return {deleted: false}
  const [ing, eg] = await Promise.all([showTcFilters(runner, device, 'ingress'), showTcFilters(runner, device, 'egress')])
  if (ing.length + eg.length > 0) {
    return {deleted: false, warning: `kept the clsact qdisc on ${device}: it still carries ${ing.length + eg.length} filter(s) pn did not add`}
  }
  const r = await applyOne(kernelFor(runner), {kind: 'qdisc.del', dev: device, missingOk: true})
  await runner.remove(marker)
  return {deleted: r.deleted}
}

/** Markers of qdiscs pn created, as {device, ifindex}. */
export async function listQdiscMarkers(dir: string): Promise<{device: string; ifindex: number}[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[])
  return names.flatMap((n) => {
    const m = /^(.+)@(\d+)$/.exec(path.basename(n))
    return m ? [{device: m[1], ifindex: Number(m[2])}] : []
  })
}
