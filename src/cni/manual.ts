/**
 * Manual mode (`pn cni add|del|check|gc|status`): flags become the same CniRequest a runtime's
 * env + netconf would, validated by the same functions, so a hand-run ADD behaves exactly like
 * the protocol one (only the output differs: a pn envelope with --json).
 */
import {readFileSync} from 'node:fs'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import type {RequestDefaults} from './protocol.js'
import {getEndpoint} from '../endpoint/store.js'
import {parseCniArgs, validateContainerId, validateIfname} from './env.js'
import {requireNetns} from '../datapath/netns.js'
import {parseNetConf} from './netconf.js'
import type {CniRequest, NodeRequest} from './request.js'
import {buildResult} from './result.js'
import {allowsCheck, allowsGcStatus, LATEST_VERSION, type CniCommand} from './spec.js'

export interface ManualOptions {
  command: CniCommand
  stateDir: string
  runner: Runner
  cniVersion?: string
  name?: string
  args?: string
  log?: (m: string) => void
  /** Extra netconf keys (prevResult, cni.dev/valid-attachments). */
  extra?: Record<string, unknown>
  /** Interrupt signal, lock options and test hooks from the CLI. */
  defaults?: RequestDefaults
}

export function manualNodeRequest(o: ManualOptions): NodeRequest {
  const conf = parseNetConf(JSON.stringify({
    cniVersion: o.cniVersion ?? LATEST_VERSION,
    name: o.name ?? 'pn',
    type: 'pn',
    stateDir: o.stateDir,
    ...o.extra,
  }), o.command)
  if (o.command === 'CHECK' && !allowsCheck(conf.cniVersion)) {
    throw new PnError('PN_CNI_INCOMPATIBLE_VERSION', `check cni version: config version "${conf.cniVersion}" does not allow CHECK`, {hint: 'use --cni-version 0.4.0 or later'})
  }
  if ((o.command === 'GC' || o.command === 'STATUS') && !allowsGcStatus(conf.cniVersion)) {
    throw new PnError('PN_CNI_INCOMPATIBLE_VERSION', `check cni version: config version "${conf.cniVersion}" does not allow ${o.command}`, {hint: 'use --cni-version 1.1.0'})
  }
  return {
    command: o.command,
    conf,
    args: parseCniArgs(o.args),
    stateDir: o.stateDir,
    runner: o.runner,
    log: o.log ?? (() => {}),
    ...(o.defaults?.failAfter ? {failAfter: o.defaults.failAfter} : {}),
    ...(o.defaults?.signal ? {signal: o.defaults.signal} : {}),
    ...(o.defaults?.lock ? {lock: o.defaults.lock} : {}),
    ...(o.defaults?.flow ? {flow: o.defaults.flow} : {}),
  }
}

export async function manualRequest(o: ManualOptions & {containerId: string; ifname: string; netns?: string}): Promise<CniRequest> {
  const base = manualNodeRequest(o)
  validateContainerId(o.containerId)
  validateIfname(o.ifname)
  if (o.command === 'ADD' || o.command === 'CHECK') {
    if (!o.netns) throw new PnError('PN_CNI_INVALID_ENV', `${o.command.toLowerCase()} attachment: --netns is required`, {hint: 'pass --netns /run/netns/NAME'})
    await requireNetns(o.netns)
  }
  if (o.command === 'ADD' && base.conf.prevResult) {
    throw new PnError('PN_CNI_UNSUPPORTED_FIELD', 'add attachment: unsupported field prevResult (pn does not run chained)', {hint: 'drop the prevResult'})
  }
  return {...base, containerId: o.containerId, ifname: o.ifname, ...(o.netns ? {netns: o.netns} : {})}
}

/** For a hand-run CHECK without --prev-result: the result ADD printed, rebuilt from the endpoint record. */
export async function prevResultFromEndpoint(stateDir: string, containerId: string, ifname: string, version: string): Promise<Record<string, unknown>> {
  const ep = await getEndpoint(stateDir, containerId, ifname)
  if (!ep) {
    throw new PnError('PN_ENDPOINT_NOT_FOUND', `check attachment ${containerId}:${ifname}: no endpoint record to compare with`, {
      hint: 'run `pn cni add` first, or pass --prev-result FILE with the ADD result',
    })
  }
  return buildResult(version, {...ep, netns: ep.netns}) as unknown as Record<string, unknown>
}

/** Read a saved ADD result (the JSON `pn cni add` printed) for CHECK. */
export function readPrevResultFile(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new PnError('PN_INVALID_ARGUMENT', `read prev result ${file}: ${(err as Error).message}`, {
      hint: 'pass the JSON printed by `pn cni add`',
    })
  }
}
