/**
 * The one base command. It owns --json (one envelope for every command), the shared global
 * flags, warnings, and the mapping from PnError to exit code and human message. Commands
 * implement `execute()` (flags → one library call → typed result) and optionally `render()`.
 *
 * JSON envelope (stable, documented in docs/CLI.md):
 *   success: {"status":"ok","result":<command result>,"warnings":[…]}
 *   failure: {"status":"error","error":{"code":"PN_…","message":"…","hint":"…","details":{…}}}
 */
import {Command, Flags, Interfaces} from '@oclif/core'
import chalk from 'chalk'
import {entryOptions, type EntryOptions} from '../entry/env.js'
import {interruptOnSignals, type ProcessInterrupt} from '../entry/signals.js'
import {PnError, toPnError} from '../errors.js'
import type {RequestDefaults} from '../cni/protocol.js'
import {ExecaRunner, type Runner} from '../exec/runner.js'
import type {FlowOptions, Plan} from '../flow/plan.js'
import type {HostIpamTarget} from '../ipam/host.js'
import type {PoolStore} from '../ipam/pool.js'
import type {EtcdTlsFiles} from '../state/etcd-store.js'
import {resolveStateDir, type LockOptions} from '../state/files.js'
import {parseError, reportError, spoken} from './usage.js'

export type CmdFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type CmdArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

export interface Envelope<T> {
  status: 'ok'
  result: T
  warnings: string[]
}

export abstract class BaseCommand<C extends typeof Command, T = unknown> extends Command {
  static override enableJsonFlag = true

  static baseFlags = {
    'state-dir': Flags.string({
      summary: 'Directory holding pn state (node.json, IPAM state, endpoints).',
      env: 'PN_STATE_DIR',
      helpGroup: 'GLOBAL',
    }),
    verbose: Flags.boolean({
      summary: 'Print every external command (ip, tc, bpftool …) to stderr before running it.',
      helpGroup: 'GLOBAL',
    }),
  }

  protected flags!: CmdFlags<C>
  protected args!: CmdArgs<C>
  protected warnings: string[] = []
  protected stateDir = resolveStateDir()
  /** The runner this command spawns through (execa; echoing argv with --verbose). */
  protected runner!: Runner
  /** PN_* settings and test hooks, read once here and passed down (the library reads no env). */
  protected entry!: EntryOptions
  private interrupt?: ProcessInterrupt

  /** Do the work and return the typed result (which is also the JSON `result`). */
  abstract execute(): Promise<T>

  /** Human rendering of the result; default is a compact JSON dump. */
  protected render(result: T): string | undefined {
    return typeof result === 'string' ? result : JSON.stringify(result, null, 2)
  }

  /** Lock timeout and hooks for state files. */
  protected get lock(): LockOptions {
    return this.entry.lock
  }

  /** Per-request flow options: the interrupt signal (SIGINT/SIGTERM) and test hooks. */
  protected get flow(): FlowOptions {
    return {signal: this.interrupt?.signal, ...this.entry.flow}
  }

  /** What a hand-run CNI request inherits from this process: interrupt, locks, test hooks. */
  protected get cni(): {stateDir: string; runner: Runner; defaults: RequestDefaults} {
    const {signal, beforeStep} = this.flow
    return {
      stateDir: this.stateDir,
      runner: this.runner,
      defaults: {signal, lock: this.lock, flow: beforeStep ? {beforeStep} : {}, failAfter: this.entry.failAfter},
    }
  }

  /** The cluster pool named by --pool (PN_POOL), else the pool of --cluster (PN_CLUSTER), else `<state-dir>/cluster-pool.json`. */
  // Loaded when used (pool: etcd client; tasks: listr2): a command that needs neither does not pay
  // for their imports at start-up.
  protected async poolStore(flag?: string, cluster?: string): Promise<PoolStore> {
    const {openPoolStore, resolvePoolLocation} = await import('../ipam/pool.js')
    return openPoolStore(resolvePoolLocation(this.stateDir, flag ?? (await poolOfCluster(cluster))), {...this.lock, etcdTls: this.etcdTls})
  }

  /** TLS files for an etcds:// pool: --etcd-ca/--etcd-cert/--etcd-key, else PN_ETCD_CA/_CERT/_KEY. */
  protected get etcdTls(): EtcdTlsFiles {
    const f = this.flags as {'etcd-ca'?: string; 'etcd-cert'?: string; 'etcd-key'?: string}
    const env = this.entry.etcdTls
    const ca = f['etcd-ca'] ?? env.ca
    const cert = f['etcd-cert'] ?? env.cert
    const key = f['etcd-key'] ?? env.key
    return {...(ca ? {ca} : {}), ...(cert ? {cert} : {}), ...(key ? {key} : {})}
  }

  /** Host-scope IPAM named by --pod-cidr/--router-ip (standalone), else node.json's. */
  protected async ipam(f: {'pod-cidr'?: string[]; 'router-ip'?: string[]}): Promise<HostIpamTarget> {
    const {nodeIpamTarget} = await import('../node/ipam.js')
    return nodeIpamTarget(this.stateDir, {podCidrs: f['pod-cidr'], routerIps: f['router-ip'], lock: this.lock})
  }

  /** Run a plan: listr2 progress on a terminal (not with --json), plainly otherwise. */
  protected async runSteps<R>(plan: Plan<R>, action: string): Promise<R> {
    const {runTasks} = await import('./tasks.js')
    return runTasks(plan, action, {interactive: Boolean(process.stdout.isTTY) && !this.jsonEnabled(), ...this.flow})
  }

  public override async init(): Promise<void> {
    await super.init()
    this.entry = entryOptions(process.env, (line) => process.stderr.write(line))
    this.interrupt = interruptOnSignals()
    const {args, flags} = await this.parse({
      args: this.ctor.args,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    }).catch((err: Error) => {
      // Every parse failure (missing or unknown flag, extra word, bad value) is a usage error in pn's words.
      throw err instanceof PnError ? err : parseError(err, {id: this.id ?? '', flags: {...this.ctor.baseFlags, ...this.ctor.flags, json: {}}, args: this.ctor.args})
    })
    this.flags = flags as CmdFlags<C>
    this.args = args as CmdArgs<C>
    const f = flags as {'state-dir'?: string; verbose?: boolean}
    this.stateDir = resolveStateDir(f['state-dir'])
    // The CLI spawns through execa; --verbose echoes every argv first (a teaching aid in labs).
    this.runner = new ExecaRunner(f.verbose ? echoCommand : undefined)
  }

  public async run(): Promise<T> {
    const result = await this.execute()
    const lifted = liftWarnings(result)
    this.warnings.push(...lifted)
    if (!this.jsonEnabled()) {
      for (const w of this.warnings) process.stderr.write(chalk.yellow(`warning: ${w}\n`))
      const text = this.render(result)
      if (text !== undefined && text !== '') this.log(text)
    }
    return result
  }

  protected override toSuccessJson(result: unknown): Envelope<unknown> {
    return {status: 'ok', result, warnings: this.warnings}
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // oclif's exit() passes through (it is how a command ends with a code, not a failure).
    if (!(err instanceof PnError) && err.oclif && (err.oclif.exit === 0 || err.message.startsWith('EEXIT'))) throw err
    const pe = toPnError(err, `run ${spoken(this.id ?? '')}`)
    reportError(pe, this.jsonEnabled() || process.argv.includes('--json'), this.warnings)
    if (!this.jsonEnabled() && pe.code === 'PN_INTERNAL' && pe.cause instanceof Error && pe.cause.stack) {
      process.stderr.write(chalk.dim(pe.cause.stack + '\n'))
    }
    const exitCode = pe.code === 'PN_INTERRUPTED' ? (this.interrupt?.exitCode() ?? pe.exitCode) : pe.exitCode
    process.exitCode = exitCode
    this.exit(exitCode)
  }
}

/** --verbose: each argv, then the script it reads on stdin (`ip -batch -`, `bpftool batch file -`), indented. */
export function verboseText(argv: string[], input?: string): string {
  const script = input?.trimEnd() ? input.trimEnd().split('\n').map((l) => `    ${l}\n`).join('') : ''
  return `+ ${argv.join(' ')}\n${script}`
}

function echoCommand(argv: string[], input?: string): void {
  process.stderr.write(chalk.dim(verboseText(argv, input)))
}

/** Results may carry `warnings: string[]`; the envelope shows them once, at the top level. */
function liftWarnings(result: unknown): string[] {
  if (result && typeof result === 'object' && Array.isArray((result as {warnings?: unknown}).warnings)) {
    return ((result as {warnings: unknown[]}).warnings).map(String)
  }
  return []
}

/** The pool location of a cluster store location (undefined: none given). */
export async function poolOfCluster(cluster: string | undefined): Promise<string | undefined> {
  if (cluster === undefined) return undefined
  const {clusterPoolLocation, parseClusterLocation} = await import('../cluster/location.js')
  return clusterPoolLocation(parseClusterLocation(cluster))
}
