/**
 * tc attachment of pinned programs: a clsact qdisc (created only when missing, and then
 * remembered as pn's), one `bpf da object-pinned` filter at pref 1 handle 1 per hook. The
 * program is loaded once per node; attaching only references it, so a pod never runs clang.
 */
import {fsp as fs} from '../../exec/fs.js'
import path from 'node:path'
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import {PROGRAMS, pathExists, programPath, qdiscMarker, type ProgramName} from './bpffs.js'

export type Direction = 'ingress' | 'egress'

export const FILTER_PREF = '1'
export const FILTER_HANDLE = '1'

export interface TcAttachment {
  device: string
  direction: Direction
  program: string
}

interface TcFilterJson {
  pref?: number
  kind?: string
  options?: {handle?: string; bpf_name?: string; prog?: {id?: number; name?: string; tag?: string}}
}

const noDevice = (stderr: string) => /Cannot find device|does not exist|No such device/i.test(stderr)

/** pn's filters on one hook of a device (JSON from `tc -j filter show`). */
export async function showTcFilters(runner: Runner, device: string, direction: Direction): Promise<TcFilterJson[]> {
  const r = await runner.run('tc', ['-j', 'filter', 'show', 'dev', device, direction], {allowFailure: true, readOnly: true})
  if (r.exitCode !== 0) {
    if (noDevice(r.stderr)) return []
    throw new PnError('PN_COMMAND_FAILED', `show tc filters ${device} ${direction}: ${r.stderr.trim()}`, {details: {argv: r.argv}})
  }
  try {
    return ((JSON.parse(r.stdout || '[]') as TcFilterJson[]) ?? []).filter((f) => f.options)
  } catch {
    return []
  }
}

/** The kernel id of a pinned program (undefined when not pinned). */
export async function pinnedProgramId(runner: Runner, pinned: string): Promise<number | undefined> {
  const r = await runner.run('bpftool', ['-j', 'prog', 'show', 'pinned', pinned], {allowFailure: true, readOnly: true})
  if (r.exitCode !== 0) return undefined
  try {
    return (JSON.parse(r.stdout) as {id?: number}).id
  } catch {
    return undefined
  }
}

/** Attach a pinned program; {changed: false} when that program is already there. */
export async function attachTcProgram(
  runner: Runner,
  opts: {root: string; device: string; ifindex: number; direction: Direction; program: ProgramName; freshDevice?: boolean},
): Promise<{changed: boolean; createdQdisc: boolean}> {
  const pinned = programPath(opts.root, opts.program)
  if (opts.freshDevice) {
    // A device pn just made has no qdisc: the qdisc and the filter go in one `tc -batch -`.
    const filter = ['filter', 'replace', 'dev', opts.device, opts.direction, 'pref', FILTER_PREF, 'handle', FILTER_HANDLE, 'bpf', 'da', 'object-pinned', pinned]
    const b = await runner.run('tc', ['-batch', '-'], {input: `qdisc add dev ${opts.device} clsact\n${filter.join(' ')}\n`, allowFailure: true})
    if (b.exitCode === 0) {
      await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
      return {changed: true, createdQdisc: true}
    }
    // tc stops at the first failed line. The qdisc line: not so fresh after all — the general
    // path below sorts it out. The filter line: the qdisc is ours; give it back, then fail.
    if (/Command failed -:2/.test(b.stderr)) {
      await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
      await releaseQdisc(runner, opts.root, opts.device, opts.ifindex).catch(() => undefined)
      throw new PnError('PN_BPF_LOAD_FAILED', `attach ${PROGRAMS[opts.program]} to ${opts.device} ${opts.direction}: ${b.stderr.trim() || `exit code ${b.exitCode}`}`, {
        hint: (await pathExists(pinned)) ? 'check `dmesg` and `pn bpf status`' : 'load the programs first: `pn bpf load --host`',
        details: {argv: b.argv, stderr: b.stderr},
      })
    }
  }
  const q = await runner.run('tc', ['qdisc', 'add', 'dev', opts.device, 'clsact'], {allowFailure: true})
  let createdQdisc = q.exitCode === 0
  if (!createdQdisc) {
    if (noDevice(q.stderr)) {
      throw new PnError('PN_LINK_NOT_FOUND', `attach ${PROGRAMS[opts.program]} to ${opts.device}: device does not exist`, {
        hint: 'create the device first (`pn node init`, `pn veth create`), then rerun',
      })
    }
    if (!/File exists|Exclusivity flag on/i.test(q.stderr)) {
      throw new PnError('PN_BPF_LOAD_FAILED', `add clsact qdisc ${opts.device}: ${q.stderr.trim()}`, {details: {argv: q.argv}})
    }
    // The qdisc was there already. If our program is already attached, there is nothing to do.
    // Same name is not enough: after a reload the old program (and its old maps) may still be
    // attached, so compare the attached program id with the pinned one.
    const [current, pinnedId] = await Promise.all([showTcFilters(runner, opts.device, opts.direction), pinnedProgramId(runner, pinned)])
    const mine = current.find((f) => String(f.pref) === FILTER_PREF && f.options?.prog?.id === pinnedId)
    if (mine && pinnedId !== undefined) return {changed: false, createdQdisc: false}
  } else {
    await runner.makeDir(qdiscMarker(opts.root, opts.device, opts.ifindex))
  }
  const r = await runner.run(
    'tc',
    ['filter', 'replace', 'dev', opts.device, opts.direction, 'pref', FILTER_PREF, 'handle', FILTER_HANDLE, 'bpf', 'da', 'object-pinned', pinned],
    {allowFailure: true},
  )
  if (r.exitCode !== 0) {
    if (createdQdisc) await releaseQdisc(runner, opts.root, opts.device, opts.ifindex).catch(() => undefined)
    createdQdisc = false
    throw new PnError('PN_BPF_LOAD_FAILED', `attach ${PROGRAMS[opts.program]} to ${opts.device} ${opts.direction}: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, {
      hint: (await pathExists(pinned)) ? 'check `dmesg` and `pn bpf status`' : 'load the programs first: `pn bpf load --host`',
      details: {argv: r.argv, stderr: r.stderr},
    })
  }
  return {changed: true, createdQdisc}
}

/** Remove pn's filter from one hook; {changed: false} when it (or the device) is already gone. */
export async function detachTcProgram(runner: Runner, opts: {device: string; direction: Direction}): Promise<{changed: boolean}> {
  const r = await runner.run(
    'tc',
    ['filter', 'del', 'dev', opts.device, opts.direction, 'pref', FILTER_PREF, 'handle', FILTER_HANDLE, 'bpf'],
    {allowFailure: true},
  )
  if (r.exitCode === 0) return {changed: true}
  if (noDevice(r.stderr) || /Parent Qdisc doesn't exist|Filter with specified priority\/protocol not found|No such file or directory|Invalid handle|Cannot find specified filter chain|not found/i.test(r.stderr)) {
    return {changed: false}
  }
  throw new PnError('PN_COMMAND_FAILED', `detach bpf from ${opts.device} ${opts.direction}: ${r.stderr.trim()}`, {details: {argv: r.argv}})
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
  const r = await runner.run('tc', ['qdisc', 'del', 'dev', device, 'clsact'], {allowFailure: true})
  if (r.exitCode !== 0 && !noDevice(r.stderr) && !/Invalid handle|Cannot find|No such file/i.test(r.stderr)) {
    throw new PnError('PN_COMMAND_FAILED', `delete clsact qdisc ${device}: ${r.stderr.trim()}`, {details: {argv: r.argv}})
  }
  await runner.remove(marker)
  return {deleted: r.exitCode === 0}
}

/** Markers of qdiscs pn created, as {device, ifindex}. */
export async function listQdiscMarkers(dir: string): Promise<{device: string; ifindex: number}[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[])
  return names.flatMap((n) => {
    const m = /^(.+)@(\d+)$/.exec(path.basename(n))
    return m ? [{device: m[1], ifindex: Number(m[2])}] : []
  })
}
