/**
 * The CNI protocol: CNI_* env + netconf on stdin → exactly one JSON document on stdout and an
 * exit code. Validation runs in the order the reference plugins use (VERSION ignores stdin; the
 * config is decoded before the command is checked; env variables next), so a runtime sees the
 * same error codes from pn as from ptp. The flows are injected, which keeps this testable
 * without root.
 */
import path from 'node:path'
import {PnError, toPnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import type {FlowOptions} from '../flow/plan.js'
import {DEFAULT_STATE_DIR, type LockOptions} from '../state/files.js'
import {parseCniArgs, parseCommand, readCniEnv, requireEnv, validateContainerId, validateIfname} from './env.js'
import {toCniError} from './errors.js'
import {requireNetns} from '../datapath/netns.js'
import {parseNetConf, type NetConf} from './netconf.js'
import {formatResult} from './result.js'
import {versionResult} from './version.js'
import type {CniRequest, NodeRequest} from './request.js'
import {allowsCheck, allowsGcStatus, type CniCommand, type CniResult} from './spec.js'

export {versionResult} from './version.js'

export interface Handlers {
  add(req: CniRequest): Promise<CniResult>
  del(req: CniRequest): Promise<void>
  check(req: CniRequest): Promise<void>
  status(req: NodeRequest): Promise<void>
  gc(req: NodeRequest): Promise<void>
}

/** What the entry decided for every request (from its environment or its own config). */
export interface RequestDefaults {
  /** State dir when the netconf names none (pn-cni: PN_STATE_DIR). */
  stateDir?: string
  /** The request's interrupt. */
  signal?: AbortSignal
  lock?: LockOptions
  flow?: Pick<FlowOptions, 'beforeStep'>
  /** Test hook: ADD fails after this step. */
  failAfter?: string
}

export interface ProtocolIo {
  /** The CNI_* variables of this invocation. */
  env: NodeJS.ProcessEnv
  stdin: string
  defaults?: RequestDefaults
  runner: Runner
  handlers: Handlers
  /** Where logs go; set by the caller once the netconf (logFile) is known. */
  log: (msg: string) => void
  /** Called with the parsed netconf, so the caller can switch logging to its logFile. */
  onConf?: (conf: NetConf) => void
}

export interface ProtocolOutput {
  exitCode: number
  stdout: string
  command?: CniCommand
}

/** Run one CNI invocation end to end; never throws. */
export async function runProtocol(io: ProtocolIo): Promise<ProtocolOutput> {
  const env = readCniEnv(io.env)
  let conf: NetConf | undefined
  let command: CniCommand | undefined
  try {
    if (env.command === 'VERSION') {
      command = 'VERSION'
      return {exitCode: 0, stdout: JSON.stringify(versionResult(io.stdin)) + '\n', command}
    }
    if (env.command === undefined) parseCommand(undefined)
    conf = parseNetConf(io.stdin, env.command)
    io.onConf?.(conf)
    command = parseCommand(env.command)
    checkVersionAllows(command, conf.cniVersion)
    requireEnv(command, env)
    const d = io.defaults ?? {}
    const base: NodeRequest = {
      command,
      conf,
      args: parseCniArgs(env.args),
      stateDir: path.resolve(conf.stateDir || d.stateDir || DEFAULT_STATE_DIR),
      runner: io.runner,
      log: io.log,
      ...(d.failAfter ? {failAfter: d.failAfter} : {}),
      ...(d.signal ? {signal: d.signal} : {}),
      ...(d.lock ? {lock: d.lock} : {}),
      ...(d.flow ? {flow: d.flow} : {}),
    }
    if (command === 'STATUS') {
      await io.handlers.status(base)
      return {exitCode: 0, stdout: '', command}
    }
    if (command === 'GC') {
      await io.handlers.gc(base)
      return {exitCode: 0, stdout: '', command}
    }
    validateContainerId(env.containerId!)
    validateIfname(env.ifname!)
    const req: CniRequest = {...base, containerId: env.containerId!, ifname: env.ifname!, ...(env.netns ? {netns: env.netns} : {})}
    if (command === 'ADD') {
      refuseChaining(conf)
      await requireNetns(req.netns!)
      const result = await io.handlers.add(req)
      return {exitCode: 0, stdout: formatResult(result) + '\n', command}
    }
    if (command === 'CHECK') {
      await requireNetns(req.netns!)
      await io.handlers.check(req)
      return {exitCode: 0, stdout: '', command}
    }
    await io.handlers.del(req)
    return {exitCode: 0, stdout: '', command}
  } catch (err) {
    const pe = toPnError(err, `run cni ${command ?? env.command ?? ''}`.trim())
    io.log(`error: ${pe.code} ${pe.message}${pe.hint ? ` (hint: ${pe.hint})` : ''}`)
    return {exitCode: 1, stdout: formatResult(toCniError(pe, conf?.cniVersion)) + '\n', command}
  }
}

function checkVersionAllows(command: CniCommand, version: string): void {
  if (command === 'CHECK' && !allowsCheck(version)) {
    throw new PnError('PN_CNI_INCOMPATIBLE_VERSION', `check cni version: config version "${version}" does not allow CHECK`, {
      hint: 'CHECK exists from cniVersion 0.4.0 on',
    })
  }
  if ((command === 'GC' || command === 'STATUS') && !allowsGcStatus(version)) {
    throw new PnError('PN_CNI_INCOMPATIBLE_VERSION', `check cni version: config version "${version}" does not allow ${command}`, {
      hint: `${command} exists from cniVersion 1.1.0 on`,
    })
  }
}

/**
 * pn creates the pod interface, so it must be first in a plugin list. A prevResult on ADD means
 * another plugin ran before it; like cilium-cni outside chaining mode, pn refuses rather than
 * silently discarding that plugin's interfaces.
 */
function refuseChaining(conf: NetConf): void {
  if (!conf.prevResult) return
  const ifs = Array.isArray(conf.prevResult.interfaces)
    ? (conf.prevResult.interfaces as {name?: string}[]).map((i) => i?.name).filter(Boolean).join(',')
    : ''
  throw new PnError('PN_CNI_UNSUPPORTED_FIELD', `add attachment: unsupported field prevResult=${JSON.stringify({interfaces: ifs || '[]'})} (pn does not run chained)`, {
    hint: 'put pn first in the plugin list (it creates the pod interface); chain other plugins after it',
    details: {key: 'prevResult'},
  })
}
