/**
 * The agent's kernel worker: one long-lived `pn-netlink` helper (native/pn-netlink.c) that
 * applies pn's kernel ops (links, addresses, routes, neighbours, sysctls, tc hooks) with
 * rtnetlink, so an agent request starts no `ip` or `tc` process. A process start costs 10–20 ms
 * here; an ADD ran six.
 *
 * This file is the process and the framing: a request is a netns path and a body of op lines,
 * an answer is a code and a body (JSON, or a refusal's reason). What the lines and the JSON say
 * is src/kernel/native.ts (the NativeBackend). If the helper dies, the request it was running
 * fails — a half-done batch is never replayed — and the next request starts a new helper.
 *
 * Protocol limits (the C side checks the same: native/pn-netlink.c): a request over them is
 * never sent (the backend splits an apply first), and an answer over them is a broken worker:
 * it is killed and its requests fail.
 */
import {PnError} from '../errors.js'
import {adoptHelper, spawnHelper, type HelperProcess} from './helper-process.js'
import type {DetachOptions, RunOptions, RunResult, Runner, StreamOptions, StreamedChild} from './runner.js'

/** The protocol's limits, as native/pn-netlink.c has them. */
export const WORKER_LIMITS = {
  netnsBytes: 4095,
  /** Ops of one request. */
  ops: 65536,
  /** A request's body (its op lines). */
  bodyBytes: 16 << 20,
  /** An answer's header line, and its body. */
  answerHeaderBytes: 128,
  answerBytes: 64 << 20,
} as const

/** An answer: code 0 with a JSON body, or -2 (refused, nothing done) with the reason. */
export interface WorkerAnswer {
  code: 0 | -2
  body: Buffer
}

const ANSWER_HEADER = /^([0-9]{1,15}) (0|-2) ([0-9]{1,9})$/

interface Pending {
  resolve: (a: WorkerAnswer) => void
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
    readonly binary: string,
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
      const [id, code, len] = m ? m.slice(1).map(Number) : []
      if (!m || len > WORKER_LIMITS.answerBytes) return this.broken(`a malformed answer header "${head.slice(0, 60)}"`)
      const end = nl + 1 + len
      if (this.buffer.length < end) return
      const body = Buffer.from(this.buffer.subarray(nl + 1, end))
      this.buffer = this.buffer.subarray(end)
      const p = this.pending.get(id)
      this.pending.delete(id)
      p?.resolve({code: code as 0 | -2, body})
    }
  }

  /** The worker broke the protocol: its requests fail, it is killed, the next request starts another. */
  broken(why: string): void {
    const child = this.child
    if (!child) return
    this.fail(child, new Error(`protocol error: ${why}`))
    child.kill(`protocol error: ${why}`)
  }

  /** The helper's pid while it runs (tests kill it to check the restart). */
  get pid(): number | undefined {
    return this.child?.pid
  }

  /** Whether stop() was called (then requests fail: the caller uses the tools). */
  get isStopped(): boolean {
    return this.stopped
  }

  /** Send one request: `count` op lines in `body`, applied inside `netns` when given. */
  /**
   * Send one request; the answer comes back in order. `gaveUp`: the caller may stop waiting once
   * it says so (an adopted helper, which waits synchronously, then returns before the answer).
   */
  request(netns: string | undefined, count: number, body: Buffer, gaveUp?: () => boolean): Promise<WorkerAnswer> {
    if (this.stopped) return Promise.reject(new PnError('PN_COMMAND_FAILED', `kernel worker ${this.binary}: stopped`))
    const ns = Buffer.from(netns ?? '', 'utf8')
    if (count < 1 || count > WORKER_LIMITS.ops || body.length > WORKER_LIMITS.bodyBytes || ns.length > WORKER_LIMITS.netnsBytes || ns.includes(0)) {
      return Promise.reject(
        new PnError('PN_COMMAND_FAILED', `send ${count} kernel ops to the worker: over its limits (1..${WORKER_LIMITS.ops} ops, ${WORKER_LIMITS.bodyBytes} bytes, a netns path of ${WORKER_LIMITS.netnsBytes} bytes)`, {
          hint: 'this is a bug in pn: the native backend splits an apply before it gets here',
        }),
      )
    }
    const child = this.child ?? this.start()
    const id = this.nextId++
    const answer = new Promise<WorkerAnswer>((resolve, reject) => this.pending.set(id, {resolve, reject}))
    child.send(Buffer.concat([Buffer.from(`${id} ${ns.length} ${count} ${body.length}\n`, 'latin1'), ns, body]), () => !this.pending.has(id), gaveUp)
    return answer
  }

  /** Close the helper's stdin and wait for it to exit; later requests fail (use the tools). */
  async stop(): Promise<void> {
    this.stopped = true
    const child = this.child
    if (!child) return
    child.end()
    await child.gone
  }
}

/**
 * The agent's runner: every command is `inner`'s (a real spawn); it carries the kernel worker,
 * and kernelFor (src/kernel/tools.ts) gives a WorkerRunner the native backend, which sends the
 * kernel ops to the worker. `log`, when given, sees each op the worker applies.
 */
export class WorkerRunner implements Runner {
  readonly workers: readonly NetlinkWorker[]

  /**
   * `worker`: one kernel worker, or several (the agent's: a request goes to the least busy).
   * `earlyLinkDelete`: a lone link deletion in this netns is answered once the link is gone
   * (src/kernel/native.ts says why); `onLateFailure` hears of a failure after that answer.
   */
  constructor(
    readonly inner: Runner,
    worker: NetlinkWorker | readonly NetlinkWorker[],
    readonly log?: (line: string) => void,
    readonly earlyLinkDelete?: {onLateFailure?: (what: string, why: string) => void},
  ) {
    this.workers = Array.isArray(worker) ? [...(worker as readonly NetlinkWorker[])] : [worker as NetlinkWorker]
  }

  /** The first worker (the only one outside the agent). */
  get worker(): NetlinkWorker {
    return this.workers[0]
  }

  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.inner.run(file, args, opts)
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
