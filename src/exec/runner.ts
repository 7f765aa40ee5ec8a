/**
 * The one place pn spawns external programs (ip, tc, bpftool, clang, sysctl, nsenter …).
 * Always argv arrays, never a shell string. Two interchangeable spawners share this contract
 * and its error mapping:
 *  - ExecaRunner (execa, loaded on first use): the `pn` CLI's runner.
 *  - SpawnRunner (node:child_process): what `bin/pn-cni` uses, because
 *    importing execa alone costs ~70 ms — paid on every CNI exec, on the pod start-up path.
 * A RecordingRunner stands in for unit tests and --dry-run: it records every argv and answers
 * from a callback, so golden-argv tests need no root.
 */
import {spawn} from './child-process.js'
import {fsp as fs} from './fs.js'
import {PnError} from '../errors.js'

export interface RunOptions {
  /** Run inside this network namespace (any netns path: /run/netns/x, /proc/PID/ns/net) via nsenter. */
  netns?: string
  /** Data written to the child's stdin (for `ip -batch -`, `tc -batch -`, `bpftool batch file -`). */
  input?: string
  /** Return the result instead of throwing when the exit code is non-zero. */
  allowFailure?: boolean
  timeoutMs?: number
  env?: Record<string, string>
  /** Read-only commands still run under --dry-run. */
  readOnly?: boolean
}

export interface RunResult {
  argv: string[]
  exitCode: number
  stdout: string
  stderr: string
}

export interface StreamOptions {
  netns?: string
  /**
   * Kill the child when this process dies, even by SIGKILL (`setpriv --pdeathsig KILL`): a
   * reader such as `bpftool map event_pipe` would otherwise outlive a killed pn, blocked on a
   * perf buffer that never fills.
   */
  diesWithParent?: boolean
}

/** A long-running child whose stdout is consumed as it arrives (`bpftool map event_pipe`). */
export interface StreamedChild {
  argv: string[]
  pid?: number
  /** stdout as it arrives, in arbitrary chunks (not lines: bpftool's last line has no newline yet). */
  chunks: AsyncIterable<string>
  /** Resolves when the child has exited (with its stderr, for errors). */
  exited: Promise<{exitCode: number; stderr: string}>
  /** SIGTERM the child (SIGKILL after a grace period) and wait for it; idempotent. */
  stop(): Promise<void>
}

export interface DetachOptions {
  netns?: string
}

export interface Runner {
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>
  /** Start a long-running child and stream its stdout. */
  stream(file: string, args: readonly string[], opts?: StreamOptions): StreamedChild
  /**
   * Start a child in its own session that outlives this process (Ctrl-C's SIGINT to the
   * terminal's process group does not reach it): a watchdog. Returns its pid.
   */
  spawnDetached(file: string, args: readonly string[], opts?: DetachOptions): Promise<{argv: string[]; pid: number}>
  /**
   * Create a folder of kernel-facing state (on a bpffs: pins, qdisc markers); false when it was
   * there. Not a process, but a change like one: `--dry-run` shows it as `mkdir -p PATH`.
   */
  makeDir(path: string): Promise<boolean>
  /** Remove a file or folder tree of kernel-facing state (a pin, a bpffs folder); absent is fine. */
  remove(path: string): Promise<void>
  /**
   * Write a kernel-facing file (a /proc/sys knob of this process's netns) without a process;
   * `--dry-run` shows it as `tee PATH` with the content as input.
   */
  writeFile(path: string, content: string): Promise<void>
}

async function makeDirNow(path: string): Promise<boolean> {
  try {
    await fs.mkdir(path)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'ENOENT') throw err
  }
  await fs.mkdir(path, {recursive: true})
  return true
}

async function removeNow(path: string): Promise<void> {
  await fs.rm(path, {recursive: true, force: true})
}

/** Packages that provide the tools pn runs, for the hint of PN_TOOL_MISSING. */
const TOOL_PACKAGES: Record<string, string> = {
  ip: 'iproute2',
  tc: 'iproute2',
  bpftool: 'bpftool',
  clang: 'clang',
  nsenter: 'util-linux',
  flock: 'util-linux',
  setpriv: 'util-linux',
  sysctl: 'procps',
  iperf3: 'iperf3',
  ping: 'iputils-ping',
  bird: 'bird2',
  birdc: 'bird2',
  ss: 'iproute2',
}

/** The argv actually spawned: nsenter-wrapped when a netns path is given. */
export function effectiveArgv(file: string, args: readonly string[], opts: RunOptions = {}): string[] {
  return opts.netns ? ['nsenter', `--net=${opts.netns}`, '--', file, ...args] : [file, ...args]
}

export function toolMissing(tool: string): PnError {
  return new PnError('PN_TOOL_MISSING', `run ${tool}: command not found`, {
    hint: `install it (apt-get install ${TOOL_PACKAGES[tool] ?? tool}) or put it on PATH`,
  })
}

export function commandFailed(result: RunResult): PnError {
  const stderr = result.stderr.trim().split('\n').slice(-3).join('; ') || `exit code ${result.exitCode}`
  return new PnError('PN_COMMAND_FAILED', `run ${result.argv.join(' ')}: ${stderr}`, {
    details: {argv: result.argv, exitCode: result.exitCode, stderr: result.stderr},
  })
}

/** Turn a finished child into a result, or the PnError the caller should see. */
function settle(result: RunResult, opts: RunOptions): RunResult {
  if (result.exitCode !== 0 && !opts.allowFailure) throw commandFailed(result)
  return result
}

/** Sees every argv before it runs, and what goes to its stdin (an `ip -batch -` script …). */
export type CommandLogger = (argv: string[], input?: string) => void

/** The argv of a streamed child: nsenter-wrapped for a netns, setpriv-wrapped to die with us. */
export function streamArgv(file: string, args: readonly string[], opts: StreamOptions = {}): string[] {
  const argv = effectiveArgv(file, args, opts)
  return opts.diesWithParent ? ['setpriv', '--pdeathsig', 'KILL', '--', ...argv] : argv
}

/** node:child_process streaming, shared by both spawners (execa adds nothing here). */
function streamChild(argv: string[]): StreamedChild {
  const child = spawn(argv[0], argv.slice(1), {stdio: ['ignore', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')))
  const exited = new Promise<{exitCode: number; stderr: string}>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? toolMissing(argv[0]) : new PnError('PN_COMMAND_FAILED', `run ${argv[0]}: ${e.message}`, {details: {argv}})),
    )
    // 'exit', not 'close': 'close' waits for stdout to end, which never happens while a consumer
    // that stopped reading leaves data buffered in it.
    child.once('exit', (code, signal) => resolve({exitCode: code ?? (signal ? 128 : 1), stderr}))
  })
  exited.catch(() => undefined)
  child.stdout.setEncoding('utf8')
  let stopping: Promise<void> | undefined
  return {
    argv,
    pid: child.pid,
    chunks: child.stdout as AsyncIterable<string>,
    exited,
    stop() {
      stopping ??= (async () => {
        child.stdout.destroy()
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 2000)
        await exited.catch(() => undefined)
        clearTimeout(timer)
      })()
      return stopping
    },
  }
}

/** A detached child in its own session, stdio closed, not waited for. */
async function spawnDetachedNow(argv: string[]): Promise<{argv: string[]; pid: number}> {
  const child = spawn(argv[0], argv.slice(1), {detached: true, stdio: 'ignore'})
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? toolMissing(argv[0]) : e))
    child.once('spawn', () => resolve(child.pid!))
  })
  child.unref()
  return {argv, pid}
}

/**
 * What both real spawners share: folder changes in-process, streamed and detached children
 * through node:child_process (execa adds nothing there). They differ only in `run`.
 */
abstract class ProcessRunner implements Runner {
  constructor(protected readonly log?: CommandLogger) {}

  abstract run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>

  makeDir(path: string): Promise<boolean> {
    return makeDirNow(path)
  }

  remove(path: string): Promise<void> {
    return removeNow(path)
  }

  writeFile(path: string, content: string): Promise<void> {
    return fs.writeFile(path, content)
  }

  stream(file: string, args: readonly string[], opts: StreamOptions = {}): StreamedChild {
    const argv = streamArgv(file, args, opts)
    this.log?.(argv)
    return streamChild(argv)
  }

  spawnDetached(file: string, args: readonly string[], opts: DetachOptions = {}): Promise<{argv: string[]; pid: number}> {
    const argv = effectiveArgv(file, args, opts)
    this.log?.(argv)
    return spawnDetachedNow(argv)
  }
}

/** node:child_process spawner: no dependency to load, so the cheapest start for pn-cni. */
export class SpawnRunner extends ProcessRunner {

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const argv = effectiveArgv(file, args, opts)
    this.log?.(argv, opts.input)
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0], argv.slice(1), {
        env: opts.env ? {...process.env, ...opts.env} : process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: opts.timeoutMs,
      })
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (d: Buffer) => out.push(d))
      child.stderr.on('data', (d: Buffer) => err.push(d))
      child.on('error', (e: NodeJS.ErrnoException) => {
        reject(e.code === 'ENOENT' ? toolMissing(argv[0]) : new PnError('PN_COMMAND_FAILED', `run ${argv[0]}: ${e.message}`, {details: {argv}}))
      })
      child.on('close', (code, signal) => {
        const result: RunResult = {
          argv,
          exitCode: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8') + (signal ? `killed by ${signal}` : ''),
        }
        try {
          resolve(settle(result, opts))
        } catch (e) {
          reject(e)
        }
      })
      // EPIPE when a child exits before reading its input is reported by 'close' instead.
      child.stdin.on('error', () => undefined)
      child.stdin.end(opts.input ?? '')
    })
  }
}

/** execa spawner for the CLI; execa is imported on first use so pn-cni never pays for it. */
export class ExecaRunner extends ProcessRunner {

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const {execa} = await import('execa')
    const argv = effectiveArgv(file, args, opts)
    this.log?.(argv, opts.input)
    const child = await execa(argv[0], argv.slice(1), {
      input: opts.input ?? '',
      reject: false,
      timeout: opts.timeoutMs,
      env: opts.env,
      stripFinalNewline: false,
    })
    if (child.failed && child.exitCode === undefined) {
      if ((child as unknown as {code?: string}).code === 'ENOENT') throw toolMissing(argv[0])
      throw new PnError('PN_COMMAND_FAILED', `run ${argv[0]}: ${child.shortMessage ?? child.message}`, {details: {argv}})
    }
    return settle({argv, exitCode: child.exitCode ?? 1, stdout: String(child.stdout ?? ''), stderr: String(child.stderr ?? '')}, opts)
  }
}

export type Responder = (argv: string[], opts: RunOptions) => Partial<RunResult> | undefined

/**
 * Records every command. Without an inner runner it answers from `respond` (default: success,
 * empty output) and does folder changes for real (unit tests of pin/marker logic); with one, it
 * passes read-only commands through and records folder changes too (dry-run: look, don't touch).
 */
export class RecordingRunner implements Runner {
  readonly records: {argv: string[]; input?: string; netns?: string}[] = []

  constructor(private readonly respond?: Responder, private readonly inner?: Runner) {}

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const argv = effectiveArgv(file, args, opts)
    if (this.inner && opts.readOnly) {
      const answer = this.respond?.(argv, opts)
      if (answer) return settle({argv, exitCode: answer.exitCode ?? 0, stdout: answer.stdout ?? '', stderr: answer.stderr ?? ''}, opts)
      return this.inner.run(file, args, opts)
    }
    this.records.push({argv, ...(opts.input === undefined ? {} : {input: opts.input}), ...(opts.netns ? {netns: opts.netns} : {})})
    const answer = this.respond?.(argv, opts) ?? {}
    return settle({argv, exitCode: answer.exitCode ?? 0, stdout: answer.stdout ?? '', stderr: answer.stderr ?? ''}, opts)
  }

  /**
   * Records the argv; the stream yields the responder's stdout as one chunk (unit tests of a
   * decoder over canned `bpftool map event_pipe` output), then ends.
   */
  stream(file: string, args: readonly string[], opts: StreamOptions = {}): StreamedChild {
    const argv = streamArgv(file, args, opts)
    this.records.push({argv, ...(opts.netns ? {netns: opts.netns} : {})})
    const answer = this.respond?.(argv, {netns: opts.netns}) ?? {}
    const stdout = answer.stdout ?? ''
    return {
      argv,
      chunks: (async function* () {
        if (stdout) yield stdout
      })(),
      exited: Promise.resolve({exitCode: answer.exitCode ?? 0, stderr: answer.stderr ?? ''}),
      stop: async () => undefined,
    }
  }

  async spawnDetached(file: string, args: readonly string[], opts: DetachOptions = {}): Promise<{argv: string[]; pid: number}> {
    const argv = effectiveArgv(file, args, opts)
    this.records.push({argv, ...(opts.netns ? {netns: opts.netns} : {})})
    return {argv, pid: 0}
  }

  async makeDir(path: string): Promise<boolean> {
    if (!this.inner) return makeDirNow(path)
    this.records.push({argv: ['mkdir', '-p', path]})
    return fs.access(path).then(() => false, () => true)
  }

  async remove(path: string): Promise<void> {
    if (!this.inner) return removeNow(path)
    if (await fs.access(path).then(() => true, () => false)) this.records.push({argv: ['rm', '-rf', path]})
  }

  /** Recorded, never written (a dry run, or a unit test's fake /proc). */
  async writeFile(path: string, content: string): Promise<void> {
    this.records.push({argv: ['tee', path], input: content})
  }

  /** The recorded commands as printable lines (what `--dry-run` shows). */
  lines(): string[] {
    return this.records.map((r) => r.argv.join(' ') + (r.input ? ` <<EOF\n${r.input.trimEnd()}\nEOF` : ''))
  }

  /** True when any recorded argv starts with the given program name. */
  ran(program: string): boolean {
    return this.records.some((r) => r.argv[0] === program || (r.argv[0] === 'nsenter' && r.argv[3] === program))
  }
}
