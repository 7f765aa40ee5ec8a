/**
 * The node agent's entry: composes the agent server (src/agent) with the CNI protocol and
 * flows (src/cni), exactly as pn-cni does for one call, but once per process: one runner, one
 * lock helper, per-request options built from the environment the client forwarded (so
 * PN_LOCK_TIMEOUT_MS behaves as it does in the standalone path; the test hooks only with
 * --test-hooks, see TEST_HOOK_VARS).
 */
import {appendFileSync, promises as fs} from 'node:fs'
import path from 'node:path'
import {AgentServer, type AgentStats} from '../agent/server.js'
import {AGENT_OP_VAR} from '../agent/client.js'
import {lockAgentInstance, writeAgentPidFile} from '../agent/instance.js'
import {flockLocker} from '../exec/flock.js'
import {kernelClock} from '../kernel/clock.js'
import {encodeOp} from '../kernel/native.js'
import {agentPidFile} from '../agent/paths.js'
import {formatSplit, RequestTimer, type RequestTiming} from '../agent/timing.js'
import {FALLBACK_EXIT, type WireRequest, type WireResponse} from '../agent/wire.js'
import {toCniError} from '../cni/errors.js'
import {startClusterAgent, type ClusterAgent, type StartClusterAgentOptions} from '../cluster/agent.js'
import {defaultHandlers} from '../cni/handlers.js'
import {runProtocol} from '../cni/protocol.js'
import {formatResult} from '../cni/result.js'
import {PnError, toPnError} from '../errors.js'
import {NetlinkWorker, WorkerRunner} from '../exec/netlink-worker.js'
import {SpawnRunner, type Runner} from '../exec/runner.js'
import {ensureDir} from '../state/files.js'
import {readNodeContext} from '../node/context.js'
import {reconcileNode} from '../node/reconcile.js'
import {answerServiceRequest, SERVICE_OP} from '../service/request.js'
import {entryOptions, kernelOf, requestStateDir} from './env.js'
import {builtHelper, NETLINK_BINARY} from './native.js'


export interface AgentMainOptions {
  stateDir: string
  /** Agent diagnostics (start, stop, refusals); request logs follow each netconf's logFile. */
  log: (msg: string) => void
  maxInflight?: number
  maxQueued?: number
  queueTimeoutMs?: number
  traceExec?: boolean
  /** false: no kernel worker, every ip/tc/bpftool command is spawned (for comparisons). */
  kernelWorker?: boolean
  /** Kernel workers (default DEFAULT_KERNEL_WORKERS), started with the agent. */
  kernelWorkers?: number
  /** Besides root, the gid whose members may use the agent (socket 0660 root:group). */
  group?: number
  maxConnections?: number
  idleTimeoutMs?: number
  maxRequestBytes?: number
  /**
   * Honour the test hooks a request carries (TEST_HOOK_VARS). Off unless a test asks for it
   * (`pn agent start --test-hooks`, a hidden flag the systemd unit never sets): in production a
   * request's environment cannot make the agent fail, stall or hold a lock on purpose.
   */
  testHooks?: boolean
  /** `--cluster`: register the node, publish its endpoints, follow the store (src/cluster/agent.ts). */
  cluster?: Omit<StartClusterAgentOptions, 'stateDir' | 'runner' | 'log'>
}

/** Kernel workers of an agent: enough for a burst's deletions to overlap (each keeps its worker until the kernel's ack), ≈ 2 MB each. */
export const DEFAULT_KERNEL_WORKERS = 8

/** The fault-injection and timing hooks of the entries (src/entry/env.ts). */
export const TEST_HOOK_VARS = ['PN_CNI_FAIL_AFTER', 'PN_TEST_HOLD_LOCK_MS', 'PN_TEST_CHECKPOINT_DELAY_MS'] as const

/** A request's environment as the agent uses it: without the test hooks unless they are enabled. */
export function requestEnv(env: Record<string, string>, testHooks: boolean): Record<string, string> {
  if (testHooks) return env
  return Object.fromEntries(Object.entries(env).filter(([k]) => !(TEST_HOOK_VARS as readonly string[]).includes(k) && !k.startsWith('PN_TEST_')))
}

export interface RunningAgent {
  server: AgentServer
  stats(): AgentStats
  /** Graceful stop (abort: interrupt the requests in flight too); idempotent. */
  stop(opts?: {abort?: boolean}): Promise<void>
  /** Resolves once stopped. */
  stopped: Promise<void>
}

/** The agent's own log: a file (appended), else stderr (a supervisor's journal). Lines are timestamped once. */
export function agentLogger(logFile?: string): (msg: string) => void {
  return (msg) => {
    const line = /^\d{4}-\d\d-\d\dT/.test(msg) ? msg : `${new Date().toISOString()} pn-agent[${process.pid}] ${msg}`
    if (logFile) {
      try {
        appendFileSync(logFile, line + '\n')
        return
      } catch {
        // stderr when the log file cannot be written
      }
    }
    process.stderr.write(line + '\n')
  }
}

function cniVersionOf(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin) as Record<string, unknown>).cniVersion
    return typeof v === 'string' ? v : undefined
  } catch {
    return undefined
  }
}

export async function startAgent(opts: AgentMainOptions): Promise<RunningAgent> {
  const stateDir = path.resolve(opts.stateDir)
  await ensureDir(stateDir)
  // First, before anything else is touched: one agent per state dir (src/agent/instance.ts).
  const instance = lockAgentInstance(stateDir)
  try {
    return await startLocked(stateDir, opts, () => instance.release())
  } catch (err) {
    instance.release()
    throw err
  }
}

async function startLocked(stateDir: string, opts: AgentMainOptions, unlock: () => void): Promise<RunningAgent> {
  const netnsIno = String((await fs.stat('/proc/self/ns/net')).ino)
  const spawner = new SpawnRunner(opts.traceExec ? (argv) => opts.log(`exec: ${argv.join(' ')}`) : undefined)
  // The kernel ops of ADD and DEL go to long-lived kernel workers (the native backend) instead of
  // an ip or tc process each; without the built helper, with --no-kernel-worker or with
  // PN_KERNEL=tools every op runs as a process (the tools backend). Several workers: a veth
  // deletion keeps one busy for an RCU grace period, and deletions at once share theirs
  // (src/kernel/native.ts).
  const off = opts.kernelWorker === false ? 'disabled' : kernelOf(process.env.PN_KERNEL) === 'tools' ? 'PN_KERNEL=tools' : !builtHelper(NETLINK_BINARY) ? `${NETLINK_BINARY} not built` : undefined
  const workers = off ? [] : Array.from({length: Math.max(1, opts.kernelWorkers ?? DEFAULT_KERNEL_WORKERS)}, () => new NetlinkWorker(NETLINK_BINARY))
  if (off) opts.log(`kernel worker off: ${off}; every kernel command is a process`)
  const runner: Runner = workers.length > 0
    ? new WorkerRunner(spawner, workers, opts.traceExec ? (line) => opts.log(`netlink: ${line}`) : undefined, {
      onLateFailure: (what, why) => opts.log(`${what}: answered once the link was gone, then failed: ${why}`),
    })
    : spawner
  const stopWorkers = () => Promise.all(workers.map((w) => w.stop()))
  // Started now, while this process is small: a spawn forks the whole heap (page tables copied),
  // which during a burst, when the extra workers are first needed, stopped the event loop for
  // ≈ 50 ms each. A query of `lo` starts one; its answer does not matter.
  const warm = Buffer.from(encodeOp({kind: 'link.get', name: 'lo'}) + '\n', 'latin1')
  await Promise.all(workers.map((w) => w.request(undefined, 1, warm).catch(() => undefined)))

  // ── Start-up recovery ─────────────────────────────────────────────────────────────────────
  // The agent keeps no state of its own that a crash could lose: every request reads and writes
  // the node's files under the same locks as the standalone path, so a restarted agent starts
  // from what is on disk. What a reboot leaves behind (endpoints whose netns and devices are
  // gone) is reaped here, before the socket accepts requests — the same step `pn node init` runs.
  const node = await readNodeContext(stateDir)
  if (node) {
    const rec = await reconcileNode(stateDir, node, {runner})
    for (const r of rec.reaped) opts.log(`reconcile: reaped endpoint ${r.id} (${r.containerId}/${r.ifname}, ${r.hostIfname}, ${r.ips.join(' ')}): netns and veth gone`)
    for (const s of rec.suspect) opts.log(`reconcile: kept endpoint ${s.id}: ${s.reason}`)
    for (const x of rec.repaired ?? []) opts.log(`reconcile: ${x.subject} (${x.kind}): ${x.action}`)
    for (const e of rec.errors) opts.log(`reconcile: endpoint ${e.id}: ${e.step} failed: ${e.message}`)
    opts.log(`reconcile: ${rec.reaped.length} reaped, ${rec.kept} kept`)
  }

  // The cluster side starts here and never waits on the store (it retries in the background).
  const cluster: ClusterAgent | undefined = opts.cluster ? await startClusterAgent({...opts.cluster, stateDir, runner, log: (m) => opts.log(m)}) : undefined

  const refuse = (req: WireRequest | undefined, err: PnError): WireResponse => ({
    exitCode: 1,
    stdout: formatResult(toCniError(err, req ? cniVersionOf(req.stdin) : undefined)) + '\n',
    stderr: '',
  })
  const testHooks = opts.testHooks === true
  if (testHooks) opts.log('test hooks on (--test-hooks): requests may carry ' + TEST_HOOK_VARS.join(', '))
  const handle = async (wire: WireRequest, signal: AbortSignal, timing: RequestTiming): Promise<WireResponse> => {
    // This request's runner and locker, timed: its log line splits its time (src/agent/timing.ts).
    const timer = new RequestTimer(timing)
    const req = {...wire, env: requestEnv(wire.env, testHooks)}
    // A netconf naming another node's state dir is not ours to serve (the client found this
    // socket through a path that resolves elsewhere): the standalone path handles it.
    const dir = requestStateDir(req.stdin, req.env)
    if (dir !== undefined && dir !== stateDir) return {exitCode: FALLBACK_EXIT, stdout: '', stderr: ''}
    const started = Date.now()
    let logFile: string | undefined
    const prefix = () => `${new Date().toISOString()} pn-agent[${process.pid}] ${req.env.CNI_COMMAND ?? '-'} ${req.env.CNI_CONTAINERID ?? '-'}:${req.env.CNI_IFNAME ?? '-'}`
    const log = (msg: string) => {
      const line = `${prefix()} ${msg}`
      if (logFile) {
        try {
          appendFileSync(logFile, line + '\n')
          return
        } catch {
          // the agent's own log when the netconf's logFile cannot be written
        }
      }
      opts.log(line)
    }
    const stderr: string[] = []
    const eo = entryOptions(req.env, (line) => stderr.push(line))
    if (req.env[AGENT_OP_VAR] === SERVICE_OP) {
      // A service change from a program (src/service/request.ts): no process start, warm code.
      const out = await answerServiceRequest(runner, stateDir, req.stdin, {lock: eo.lock})
      log(`service request: exit ${out.exitCode} after ${Date.now() - started} ms`)
      return {...out, stderr: stderr.join('')}
    }
    try {
      const run = () => kernelClock.run(timer.clock, () => runProtocol({
        env: req.env,
        stdin: req.stdin,
        defaults: {stateDir, signal, lock: {...eo.lock, locker: timer.locker(eo.lock?.locker ?? flockLocker)}, flow: eo.flow, failAfter: eo.failAfter},
        runner,
        handlers: defaultHandlers,
        log,
        onConf: (conf) => {
          logFile = conf.logFile
        },
      }))
      const out = cluster ? await cluster.aroundCni(req.env, run) : await run()
      if (out.command !== 'VERSION') log(`exit ${out.exitCode} after ${Date.now() - started} ms: ${formatSplit(timer.split())}`)
      return {exitCode: out.exitCode, stdout: out.stdout, stderr: stderr.join('')}
    } catch (err) {
      return refuse(req, toPnError(err, 'run cni in the agent'))
    }
  }
  const server = new AgentServer({
    stateDir,
    netnsIno,
    handle,
    refuse,
    log: opts.log,
    ...(opts.maxInflight ? {maxInflight: opts.maxInflight} : {}),
    ...(opts.maxQueued !== undefined ? {maxQueued: opts.maxQueued} : {}),
    ...(opts.queueTimeoutMs ? {queueTimeoutMs: opts.queueTimeoutMs} : {}),
    ...(opts.group !== undefined ? {group: opts.group} : {}),
    ...(opts.maxConnections ? {maxConnections: opts.maxConnections} : {}),
    ...(opts.idleTimeoutMs ? {idleTimeoutMs: opts.idleTimeoutMs} : {}),
    ...(opts.maxRequestBytes ? {maxRequestBytes: opts.maxRequestBytes} : {}),
    ...(cluster ? {moreStats: () => ({cluster: cluster.status()})} : {}),
  })
  try {
    await server.listen()
    await writeAgentPidFile(stateDir)
  } catch (err) {
    await server.close()
    await cluster?.stop()
    await stopWorkers()
    throw err
  }
  opts.log(`pn agent ${process.pid} serving ${stateDir} on ${server.socket}`)

  let stopping: Promise<void> | undefined
  let resolveStopped!: () => void
  const stopped = new Promise<void>((r) => (resolveStopped = r))
  const stop = (o: {abort?: boolean} = {}) => {
    if (o.abort) server.abort()
    stopping ??= (async () => {
      const s = server.stats()
      opts.log(`stopping: ${s.inflight} request(s) in flight, ${s.queued} queued`)
      await server.close(o)
      await cluster?.stop()
      await stopWorkers()
      // Only our own pid file: a new agent may already have started on this node.
      const pid = Number((await fs.readFile(agentPidFile(stateDir), 'utf8').catch(() => '')).trim())
      if (pid === process.pid) await fs.rm(agentPidFile(stateDir), {force: true})
      opts.log(`stopped after ${server.stats().served} request(s)`)
      // Last: a new agent may start on this state dir from here on.
      unlock()
      resolveStopped()
    })()
    return stopping
  }
  return {server, stats: () => server.stats(), stop, stopped}
}


/**
 * Signals for a foreground agent: the first SIGTERM/SIGINT stops it gracefully (requests in
 * flight finish), a second interrupts them (they unwind) — systemd's stop, then its kill.
 * Replaces the one-shot handlers of src/entry/signals.ts, which exit when no flow runs.
 */
export function stopOnSignals(agent: RunningAgent): void {
  let count = 0
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(sig)
    process.on(sig, () => {
      count++
      void agent.stop({abort: count > 1})
    })
  }
}
