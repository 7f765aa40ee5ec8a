/**
 * Advisory file locks: flock(2) held by this process itself, through the addon (./sys.ts,
 * native/pn-sys.c). The kernel drops a lock when its holder's file closes, and a process that
 * dies (SIGKILL, OOM) closes every file: a lock can never outlive its owner, and a waiter blocked
 * in flock(2) is granted the moment the holder is gone — by the kernel, with nobody polling and
 * no helper process whose death could take locks with it. host-local uses flock the same way.
 *
 * How a wait works: first flock(LOCK_NB) on the JS thread (the common case: free, no thread); a
 * lock held elsewhere gets a thread of its own blocked in flock(2) (not the libuv pool, which
 * pn-cni sizes to 2), whose grant comes back through a thread-safe function. A wait that times
 * out (or is aborted) reports LockBusyError at once; its thread lets the lock go the moment it
 * gets it. Exclusive waits of this process on one file queue in a FIFO in front of the kernel
 * (KeyedMutex): at most one thread per file waits in flock(2), and the agent's requests are
 * served in order. An abandoned wait keeps its place in that queue until its thread has let the
 * lock go, so it never races a later waiter of its own process.
 */
import {PnError} from '../errors.js'
import {KeyedMutex} from './keyed-mutex.js'
import {errnoName, sys, type LockWaitHandle} from './sys.js'

export interface HeldLock {
  release(): Promise<void>
}

/**
 * Who takes the locks; the default takes them in this process (flockLocker). Tests and a caller
 * that must order its locks some other way pass their own.
 */
export interface Locker {
  /** Take every lock of the chain in order; LockBusyError names the one that timed out. */
  acquire(locks: LockSpec[]): Promise<HeldLock>
}

export interface LockSpec {
  path: string
  /** 0: only if free now. Longer than 2^31-1 ms (a Node timer's limit) is as good as forever: clamped. */
  timeoutMs: number
  shared?: boolean
  /** Stop waiting when it aborts (PN_INTERRUPTED). */
  signal?: AbortSignal
}

/** A lock of a chain that could not be taken in time. */
export class LockBusyError extends PnError {
  constructor(readonly index: number, readonly path: string, timeoutMs: number) {
    super('PN_LOCK_TIMEOUT', `lock ${path}: still held by another pn process after ${timeoutMs} ms`, {
      hint: `another pn command is changing the same state; retry, or find it with \`fuser ${path}\``,
    })
  }
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1

/** This process's exclusive holders and waiters, one FIFO per lock file. */
const exclusive = new KeyedMutex()

/** The default locker: flock(2) in this process. */
export const flockLocker: Locker = {acquire: (locks) => acquireFlocks(locks)}

/**
 * Take the lock: exclusive (default) or shared (`shared`, for many readers against one writer).
 * `timeoutMs` 0 means "only if free now".
 */
export function acquireFlock(lockPath: string, timeoutMs: number, opts: {shared?: boolean; signal?: AbortSignal} = {}): Promise<HeldLock> {
  return acquireFlocks([{path: lockPath, timeoutMs, shared: opts.shared, signal: opts.signal}])
}

/** Take several locks in order; they are released together (newest first). LockBusyError.index names the one that timed out. */
export async function acquireFlocks(locks: LockSpec[]): Promise<HeldLock> {
  const held: (() => void)[] = []
  const releaseAll = () => {
    for (const r of held.reverse()) r()
    held.length = 0
  }
  try {
    for (const [index, spec] of locks.entries()) held.push(await lockOne(spec, index))
  } catch (err) {
    releaseAll()
    throw err
  }
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      releaseAll()
    },
  }
}

function lockError(spec: LockSpec, err: unknown): PnError {
  const e = err as NodeJS.ErrnoException
  if (e instanceof PnError) return e
  if (e instanceof TypeError) return new PnError('PN_INVALID_ARGUMENT', `lock ${JSON.stringify(spec.path.slice(0, 80))}: ${e.message}`, {hint: 'a lock path has no NUL byte'})
  return new PnError(e.code === 'EACCES' || e.code === 'EPERM' ? 'PN_NOT_ROOT' : 'PN_COMMAND_FAILED', `lock ${spec.path}: ${e.message}`, {
    hint: e.code === 'ENOENT' ? 'its directory is missing' : e.code === 'EACCES' || e.code === 'EPERM' ? 'run pn as root' : undefined,
    cause: err,
  })
}

function interrupted(spec: LockSpec): PnError {
  return new PnError('PN_INTERRUPTED', `lock ${spec.path}: interrupted while waiting`, {hint: 'the request was cancelled; nothing was changed under this lock'})
}

/** One lock; resolves to its release. */
async function lockOne(spec: LockSpec, index: number): Promise<() => void> {
  const timeoutMs = Math.min(MAX_TIMEOUT_MS, Math.max(0, Math.round(spec.timeoutMs) || 0))
  const started = Date.now()
  if (spec.signal?.aborted) throw interrupted(spec)
  const shared = Boolean(spec.shared)
  // An exclusive lock queues behind this process's other holders and waiters of the file first;
  // that wait counts against the timeout.
  let leave = () => {}
  if (!shared) {
    const queued = exclusive.lock(spec.path)
    const free = await raceDeadline(queued, timeoutMs, spec.signal)
    if (free === 'aborted' || free === 'timeout') {
      void queued.then((r) => r()) // our place comes later: given up the moment it does
      if (free === 'aborted') throw interrupted(spec)
      throw new LockBusyError(index, spec.path, spec.timeoutMs)
    }
    leave = free
  }
  let fd: number
  try {
    fd = sys().lockTry(spec.path, shared)
  } catch (err) {
    leave()
    throw lockError(spec, err)
  }
  if (fd >= 0) return releaser(fd, leave)
  const left = timeoutMs - (Date.now() - started)
  if (timeoutMs === 0 || left <= 0) {
    leave()
    throw new LockBusyError(index, spec.path, spec.timeoutMs)
  }
  return waitFor(spec, index, left, leave)
}

/** The queue's grant, or why we stopped waiting for it. */
async function raceDeadline<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | 'timeout' | 'aborted'> {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      p,
      new Promise<'timeout' | 'aborted'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), ms)
        onAbort = () => resolve('aborted')
        signal?.addEventListener('abort', onAbort, {once: true})
      }),
    ])
  } finally {
    clearTimeout(timer)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
  }
}

function releaser(fd: number, leave: () => void): () => void {
  let done = false
  return () => {
    if (done) return
    done = true
    try {
      sys().unlock(fd)
    } finally {
      leave()
    }
  }
}

/**
 * Block a thread in flock(2) for up to `ms`; owns `leave` (this process's place in the file's
 * queue). On timeout or abort the wait is abandoned: the caller hears at once, and the queue is
 * left only once the thread has let the lock go.
 */
function waitFor(spec: LockSpec, index: number, ms: number, leave: () => void): Promise<() => void> {
  return new Promise((resolve, reject) => {
    let settled = false
    let abandoned = false
    let timer: NodeJS.Timeout | undefined
    const onAbort = () => giveUp(interrupted(spec))
    const cleanup = () => {
      clearTimeout(timer)
      spec.signal?.removeEventListener('abort', onAbort)
    }
    let handle: LockWaitHandle
    try {
      handle = sys().lockWait(spec.path, Boolean(spec.shared), (r) => {
        if (abandoned) {
          // Nobody wants it any more: the thread let go already (-ECANCELED), or it got the lock
          // just before the wait was abandoned.
          if (r >= 0) sys().unlock(r)
          leave()
          return
        }
        settled = true
        cleanup()
        if (r >= 0) return resolve(releaser(r, leave))
        leave()
        reject(lockError(spec, Object.assign(new Error(`flock: ${errnoName(-r)}`), {code: errnoName(-r)})))
      })
    } catch (err) {
      leave()
      return reject(lockError(spec, err))
    }
    const giveUp = (err: PnError) => {
      if (settled) return
      settled = abandoned = true
      cleanup()
      sys().lockAbandon(handle)
      reject(err)
    }
    timer = setTimeout(() => giveUp(new LockBusyError(index, spec.path, spec.timeoutMs)), ms)
    spec.signal?.addEventListener('abort', onAbort, {once: true})
  })
}
