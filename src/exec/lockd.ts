/**
 * The agent's locker: in-process keyed mutexes in front of ONE long-lived `pn-lockd` helper
 * (native/pn-lockd.c) that holds the kernel flocks. Requests of the agent for the same lock file
 * queue in-process (FIFO, no polling, no process start); only then does the helper take the
 * flock, which is what excludes a standalone `pn` working on the same files — the same
 * `<file>.lock` flocks it takes with `flock … cat`. Shared locks (the node lock) skip the mutex:
 * only an exclusive holder (`pn node reset`) conflicts with them.
 *
 * Protocol limits (native/pn-lockd.c checks the same): a lock path of at most 4095 bytes without
 * a newline or NUL (refused here with PN_INVALID_ARGUMENT, before the helper sees it), a timeout
 * of at most 2^31-1 ms (longer waits are clamped to it), an answer line of at most 4200 bytes (a
 * longer one is a broken helper: it is killed and its waiting requests fail).
 */
import {PnError} from '../errors.js'
import {LockBusyError, type HeldLock, type LockSpec, type Locker} from './flock.js'
import {adoptHelper, spawnHelper, type HelperProcess} from './helper-process.js'

/** The protocol's limits, as native/pn-lockd.c has them. */
export const LOCKD_LIMITS = {pathBytes: 4095, timeoutMs: 2 ** 31 - 1, lineBytes: 4200} as const

/** A FIFO mutex per key, in-process. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  /** Wait for the key; resolves to its release function. */
  async lock(key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((r) => (release = r))
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    return () => {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Keys somebody holds or waits for. */
  get size(): number {
    return this.tails.size
  }
}

export class LockServer implements Locker {
  private child?: HelperProcess
  private nextId = 1
  private readonly waiting = new Map<number, (answer: string) => void>()
  private readonly mutex = new KeyedMutex()
  private buffered: Buffer = Buffer.alloc(0)
  private exited?: Promise<void>
  private starting?: Promise<void>

  /**
   * `binary`: the built dist/native/pn-lockd. `fd`: a socket to one the parent process already
   * started (src/exec/helper-process.ts), used first; after it is gone the server spawns `binary`.
   */
  constructor(
    private readonly binary: string,
    private adoptFd?: number,
  ) {}

  async start(): Promise<void> {
    const fd = this.adoptFd
    this.adoptFd = undefined
    const child = fd === undefined ? spawnHelper(this.binary) : adoptHelper(fd)
    await child.started.catch((e: NodeJS.ErrnoException) => {
      throw new PnError(e.code === 'ENOENT' ? 'PN_TOOL_MISSING' : 'PN_COMMAND_FAILED', `start lock helper ${this.binary}: ${e.message}`, {hint: 'build pn (npm run build compiles native/*.c)'})
    })
    child.onData((d) => this.onData(d))
    this.exited = child.gone.then(() => {
      for (const w of this.waiting.values()) w('err lock helper exited')
      this.waiting.clear()
      this.child = undefined
    })
    this.child = child
  }

  private onData(d: Buffer): void {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, d]) : d
    let nl
    if (this.buffered.indexOf(10) < 0 && this.buffered.length > LOCKD_LIMITS.lineBytes) {
      this.buffered = Buffer.alloc(0)
      this.child?.kill(`protocol error: an answer line over ${LOCKD_LIMITS.lineBytes} bytes`)
      return
    }
    while ((nl = this.buffered.indexOf(10)) >= 0) {
      // Whole lines only: a multi-byte character split between reads stays intact.
      const line = this.buffered.subarray(0, nl).toString('utf8')
      this.buffered = this.buffered.subarray(nl + 1)
      const sp = line.indexOf(' ')
      const id = Number(line.slice(0, sp))
      const w = this.waiting.get(id)
      this.waiting.delete(id)
      w?.(line.slice(sp + 1))
    }
  }

  private ask(spec: LockSpec): {id: number; answer: Promise<string>} {
    const child = this.child
    if (!child) throw new PnError('PN_COMMAND_FAILED', `lock ${spec.path}: lock helper is not running`, {hint: 'restart the pn agent'})
    if (/[\n\0]/.test(spec.path) || Buffer.byteLength(spec.path) > LOCKD_LIMITS.pathBytes) {
      throw new PnError('PN_INVALID_ARGUMENT', `lock ${JSON.stringify(spec.path.slice(0, 80))}: the path has a newline or NUL, or is over ${LOCKD_LIMITS.pathBytes} bytes`, {
        hint: 'use a shorter state dir (--state-dir, PN_STATE_DIR)',
      })
    }
    const id = this.nextId++
    const answer = new Promise<string>((resolve) => this.waiting.set(id, resolve))
    const timeoutMs = Math.min(LOCKD_LIMITS.timeoutMs, Math.max(0, Math.round(spec.timeoutMs) || 0))
    child.send(`L\t${id}\t${spec.shared ? 's' : 'x'}\t${timeoutMs}\t${spec.path}\n`, () => !this.waiting.has(id))
    return {id, answer}
  }

  private unlock(id: number): void {
    this.child?.send(`U\t${id}\n`)
  }

  async acquire(locks: LockSpec[]): Promise<HeldLock> {
    // Started on first use (pn-cni may need no lock at all), and again after the helper died:
    // its locks died with it.
    if (!this.child) await (this.starting ??= this.start().finally(() => (this.starting = undefined)))
    const undo: (() => void)[] = []
    const releaseAll = () => {
      for (const u of undo.reverse()) u()
      undo.length = 0
    }
    try {
      for (let [index, spec] of locks.entries()) {
        // Longer than the protocol (and a Node timer) allows is as good as forever: clamped.
        spec = {...spec, timeoutMs: Math.min(LOCKD_LIMITS.timeoutMs, Math.max(0, spec.timeoutMs || 0))}
        if (!spec.shared) {
          // In-process queue first; its wait counts against the lock's timeout like flock -w.
          const started = Date.now()
          const free = await withTimeout(this.mutex.lock(spec.path), spec.timeoutMs)
          if (!free) throw new LockBusyError(index, spec.path, spec.timeoutMs)
          undo.push(free)
          spec = {...spec, timeoutMs: Math.max(0, spec.timeoutMs - (Date.now() - started))}
        }
        const {id, answer} = this.ask(spec)
        const a = await answer
        if (a === 'busy') throw new LockBusyError(index, spec.path, spec.timeoutMs)
        if (a !== 'ok') throw new PnError('PN_COMMAND_FAILED', `lock ${spec.path}: ${a.replace(/^err /, '')}`)
        undo.push(() => this.unlock(id))
      }
    } catch (err) {
      releaseAll()
      throw err
    }
    let released = false
    return {
      release: async () => {
        if (released) return
        released = true
        releaseAll()
      },
    }
  }

  /** Close the helper's stdin: it exits and the kernel drops every lock it held. */
  async stop(): Promise<void> {
    if (!this.child) return
    this.child.end()
    await this.exited
  }
}

/**
 * The mutex wait, bounded. A wait that times out must not take the mutex later: the queued
 * acquisition is released the moment it is granted.
 */
async function withTimeout(p: Promise<() => void>, ms: number): Promise<(() => void) | undefined> {
  let timer: NodeJS.Timeout | undefined
  let timedOut = false
  const r = await Promise.race([
    p,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true
        resolve(undefined)
      }, Math.max(0, ms))
    }),
  ])
  clearTimeout(timer)
  if (r === undefined && timedOut) {
    void p.then((release) => release())
    return undefined
  }
  return r
}
