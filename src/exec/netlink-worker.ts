/**
 * The agent's kernel worker: one long-lived `pn-netlink` helper (native/pn-netlink.c) that does
 * the `ip`, `tc` and `bpftool` command lines of a CNI ADD/DEL with rtnetlink and bpf(2), so an
 * agent request starts no process at all. A process start costs 10–20 ms here; an ADD ran six.
 *
 * It sits behind the Runner contract: `WorkerRunner` hands a command to the helper when the
 * helper knows its grammar and to the inner runner (a real spawn) otherwise — the helper says
 * "unsupported" before doing anything. Callers, golden tests and `--dry-run` see the same argv,
 * exit codes and the parts of the tools' output pn reads; only the agent composes it.
 * If the helper dies, the request it was running fails (a half-done batch must not be replayed
 * by the real tool) and the next command starts a new helper.
 *
 * Protocol limits (the C side checks the same: native/pn-netlink.c): a command over them never
 * goes to the worker — the real tool runs it — and an answer over them is a broken worker: it is
 * killed and its requests fail. The worker itself refuses (code -2) what is over its limits.
 */
import {PnError} from '../errors.js'
import {adoptHelper, spawnHelper, type HelperProcess} from './helper-process.js'
import {commandFailed, effectiveArgv, type DetachOptions, type RunOptions, type RunResult, type Runner, type StreamOptions, type StreamedChild} from './runner.js'

/** Programs the helper may answer for; everything else always spawns. */
const HANDLED = new Set(['ip', 'tc', 'bpftool'])

/** The protocol's limits, as native/pn-netlink.c has them. */
export const WORKER_LIMITS = {
  argc: 256,
  argvBytes: 1 << 20,
  netnsBytes: 4095,
  inputBytes: 16 << 20,
  /** Lines of a batch (the worker counts only non-blank, non-comment ones; this side counts all). */
  lines: 65536,
  /** An answer's header line, and its stdout and stderr each. */
  answerHeaderBytes: 128,
  answerBytes: 64 << 20,
} as const

/** Whether a command fits the worker's protocol; one that does not is spawned instead. */
export function fitsWorker(argv: readonly string[], netns: string | undefined, input: string): boolean {
  if (argv.length === 0 || argv.length > WORKER_LIMITS.argc || argv.some((a) => a.includes('\0'))) return false
  if (netns !== undefined && (netns.includes('\0') || Buffer.byteLength(netns) > WORKER_LIMITS.netnsBytes)) return false
  if (argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0) > WORKER_LIMITS.argvBytes) return false
  if (input.length > WORKER_LIMITS.inputBytes || Buffer.byteLength(input) > WORKER_LIMITS.inputBytes) return false
  let lines = input === '' || input.endsWith('\n') ? 0 : 1
  for (let i = input.indexOf('\n'); i >= 0; i = input.indexOf('\n', i + 1)) if (++lines > WORKER_LIMITS.lines) return false
  return lines <= WORKER_LIMITS.lines
}

const ANSWER_HEADER = /^([0-9]{1,15}) (-?[0-9]{1,3}) ([0-9]{1,9}) ([0-9]{1,9})$/

/** An answer of the helper: the tool's exit code and output, or undefined when it does not know the command. */
type Answer = {exitCode: number; stdout: string; stderr: string} | undefined

interface Pending {
  argv: readonly string[]
  resolve: (a: Answer) => void
  reject: (e: Error) => void
}

export class NetlinkWorker {
  private child?: HelperProcess
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private buffer: Buffer = Buffer.alloc(0)
  private stopped = false

  /**
   * `binary`: the built dist/native/pn-netlink. `fd`: a socket to one the parent process already
   * started (src/exec/helper-process.ts), used first; after it is gone the worker spawns `binary`.
   */
  constructor(
    private readonly binary: string,
    private adoptFd?: number,
  ) {}

  private start(): HelperProcess {
    const fd = this.adoptFd
    this.adoptFd = undefined
    const child = fd === undefined ? spawnHelper(this.binary) : adoptHelper(fd)
    child.onData((d) => this.onData(d))
    void child.gone.then((why) => this.fail(child, new Error(why)))
    this.child = child
    return child
  }

  private fail(child: HelperProcess, e: Error): void {
    if (this.child !== child) return
    this.child = undefined
    this.buffer = Buffer.alloc(0)
    for (const p of this.pending.values()) {
      p.reject(new PnError('PN_COMMAND_FAILED', `kernel worker ${this.binary}: ${e.message}`, {hint: 'build pn (npm run build compiles native/*.c); the agent restarts the worker on its next request'}))
    }
    this.pending.clear()
  }

  private onData(d: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, d]) : d
    for (;;) {
      const nl = this.buffer.indexOf(10)
      if (nl < 0) {
        if (this.buffer.length >= WORKER_LIMITS.answerHeaderBytes) this.broken('an answer header without its newline')
        return
      }
      const head = this.buffer.subarray(0, nl).toString('latin1')
      const m = nl < WORKER_LIMITS.answerHeaderBytes ? ANSWER_HEADER.exec(head) : null
      const [id, code, outLen, errLen] = m ? m.slice(1).map(Number) : []
      if (!m || code < -2 || code > 255 || outLen > WORKER_LIMITS.answerBytes || errLen > WORKER_LIMITS.answerBytes) {
        return this.broken(`a malformed answer header "${head.slice(0, 60)}"`)
      }
      const end = nl + 1 + outLen + errLen
      if (this.buffer.length < end) return
      const stdout = this.buffer.subarray(nl + 1, nl + 1 + outLen).toString('utf8')
      const stderr = this.buffer.subarray(nl + 1 + outLen, end).toString('utf8')
      this.buffer = this.buffer.subarray(end)
      const p = this.pending.get(id)
      this.pending.delete(id)
      if (!p) continue
      if (code === -2) {
        // Refused: over one of the worker's limits, nothing done.
        p.reject(
          new PnError('PN_COMMAND_FAILED', `run ${p.argv.join(' ')}: the kernel worker refused it: ${stderr.trim() || 'over its limits'}`, {
            hint: 'split the batch (at most 65536 lines, 16 MiB of input)',
            details: {argv: [...p.argv], stderr},
          }),
        )
      } else p.resolve(code === -1 ? undefined : {exitCode: code, stdout, stderr})
    }
  }

  /** The worker broke the protocol: its requests fail, it is killed, the next command starts another. */
  private broken(why: string): void {
    const child = this.child
    if (!child) return
    this.fail(child, new Error(`protocol error: ${why}`))
    child.kill(`protocol error: ${why}`)
  }

  /** The helper's pid while it runs (tests kill it to check the restart). */
  get pid(): number | undefined {
    return this.child?.pid
  }

  /** Run one command line in the helper (inside `netns` when given); undefined = not handled. */
  request(argv: readonly string[], netns: string | undefined, input: string): Promise<Answer> {
    if (this.stopped) return Promise.resolve(undefined)
    if (!fitsWorker(argv, netns, input)) {
      return Promise.reject(new PnError('PN_COMMAND_FAILED', `run ${argv.join(' ')}: the command is over the kernel worker's limits`, {hint: 'run it with the real tool (WorkerRunner does)'}))
    }
    const child = this.child ?? this.start()
    const id = this.nextId++
    const args = Buffer.from(argv.map((a) => a + '\0').join(''), 'utf8')
    const ns = Buffer.from(netns ?? '', 'utf8')
    const inp = Buffer.from(input, 'utf8')
    const answer = new Promise<Answer>((resolve, reject) => this.pending.set(id, {argv, resolve, reject}))
    child.send(Buffer.concat([Buffer.from(`${id} ${argv.length} ${args.length} ${ns.length} ${inp.length}\n`, 'latin1'), ns, args, inp]), () => !this.pending.has(id))
    return answer
  }

  /** Close the helper's stdin and wait for it to exit; later commands spawn the real tools. */
  async stop(): Promise<void> {
    this.stopped = true
    const child = this.child
    if (!child) return
    child.end()
    await child.gone
  }
}

/**
 * A Runner that sends what the worker can do to the worker and the rest to `inner`. `log`, when
 * given, sees each command the worker ran (the inner runner logs its own spawns).
 */
export class WorkerRunner implements Runner {
  constructor(
    private readonly inner: Runner,
    private readonly worker: NetlinkWorker,
    private readonly log?: (argv: string[]) => void,
  ) {}

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (!HANDLED.has(file) || opts.env || !fitsWorker([file, ...args], opts.netns, opts.input ?? '')) return this.inner.run(file, args, opts)
    const answer = await this.worker.request([file, ...args], opts.netns, opts.input ?? '')
    if (!answer) return this.inner.run(file, args, opts)
    const argv = effectiveArgv(file, args, opts)
    this.log?.(argv)
    const result: RunResult = {argv, ...answer}
    if (result.exitCode !== 0 && !opts.allowFailure) throw commandFailed(result)
    return result
  }

  stream(file: string, args: readonly string[], opts?: StreamOptions): StreamedChild {
    return this.inner.stream(file, args, opts)
  }

  spawnDetached(file: string, args: readonly string[], opts?: DetachOptions): Promise<{argv: string[]; pid: number}> {
    return this.inner.spawnDetached(file, args, opts)
  }

  makeDir(path: string): Promise<boolean> {
    return this.inner.makeDir(path)
  }

  remove(path: string): Promise<void> {
    return this.inner.remove(path)
  }

  writeFile(path: string, content: string): Promise<void> {
    return this.inner.writeFile(path, content)
  }
}
