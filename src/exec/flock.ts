/**
 * Advisory file locks for Node, which has no flock(2). pn holds a kernel flock through a
 * helper process: util-linux `flock -x -w T FILE cat`. `cat` starts only once the lock is held
 * and echoes the byte we pre-write to its stdin, which tells us we own the lock; closing stdin
 * ends `cat` and releases the lock. If pn dies (even by SIGKILL) its end of the pipe closes,
 * `cat` exits and the kernel drops the lock: a lock can never outlive its owner, so there is no
 * staleness heuristic to tune (unlike mkdir/PID lock files). host-local uses flock the same way.
 */
import {spawn} from './child-process.js'
import {PnError} from '../errors.js'

export interface HeldLock {
  release(): Promise<void>
}

/**
 * Who takes the locks: by default a `flock … cat` helper per chain (acquireFlocks); a long-running
 * process (the node agent) passes one that asks a single long-lived helper instead (./lockd.ts).
 * Either way they are the same kernel flocks on the same files, so the two exclude each other.
 */
export interface Locker {
  /** Take every lock of the chain in order; LockBusyError names the one that timed out. */
  acquire(locks: LockSpec[]): Promise<HeldLock>
}

/** The default: one helper process per chain. */
export const flockLocker: Locker = {acquire: (locks) => acquireFlocks(locks)}

/** Exit code flock(1) uses for "timed out waiting" (its -E option) on the first lock of a chain; the n-th uses 75 + n. */
const FLOCK_TIMEOUT_EXIT = 75

export interface LockSpec {
  path: string
  /** 0: only if free now (flock -n). */
  timeoutMs: number
  shared?: boolean
}

/** A lock of a chain that could not be taken in time. */
export class LockBusyError extends PnError {
  constructor(readonly index: number, readonly path: string, timeoutMs: number) {
    super('PN_LOCK_TIMEOUT', `lock ${path}: still held by another pn process after ${timeoutMs} ms`, {
      hint: `another pn command is changing the same state; retry, or find it with \`fuser ${path}\``,
    })
  }
}

/**
 * Take the lock: exclusive (default) or shared (`shared`, for many readers against one writer).
 * `timeoutMs` 0 means "only if free now" (flock -n).
 */
export function acquireFlock(lockPath: string, timeoutMs: number, opts: {shared?: boolean} = {}): Promise<HeldLock> {
  return acquireFlocks([{path: lockPath, timeoutMs, shared: opts.shared}])
}

/**
 * Take several locks in order with ONE spawn: `flock A flock B … cat` (each flock execs the next
 * once it holds its lock, so the chain costs one process start, not one per lock — a CNI call
 * takes two). They are released together; a lock that times out is named by LockBusyError.index.
 */
export async function acquireFlocks(locks: LockSpec[]): Promise<HeldLock> {
  const argv: string[] = []
  locks.forEach((l, i) => {
    const wait = l.timeoutMs <= 0 ? ['-n'] : ['-w', Math.max(l.timeoutMs / 1000, 0.01).toFixed(2)]
    argv.push('flock', l.shared ? '-s' : '-x', ...wait, '-E', String(FLOCK_TIMEOUT_EXIT + i), l.path)
  })
  argv.push('cat')
  // node:child_process rather than execa: this runs on every IPAM mutation, including from pn-cni.
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const exited = new Promise<{code: number | null; error?: NodeJS.ErrnoException}>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({code: null, error}))
    child.once('close', (code) => resolve({code}))
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdin.on('error', () => undefined)
  child.stdin.write('L')
  const acquired = await Promise.race([
    new Promise<boolean>((resolve) => child.stdout.once('data', () => resolve(true))),
    exited.then(() => false),
  ])
  const names = locks.map((l) => l.path).join(', ')
  if (!acquired) {
    const {code, error} = await exited
    if (error?.code === 'ENOENT') {
      throw new PnError('PN_TOOL_MISSING', 'run flock: command not found', {hint: 'install util-linux'})
    }
    const busy = code === null ? -1 : code - FLOCK_TIMEOUT_EXIT
    if (busy >= 0 && busy < locks.length) throw new LockBusyError(busy, locks[busy].path, locks[busy].timeoutMs)
    throw new PnError('PN_COMMAND_FAILED', `lock ${names}: flock exited with ${code}${error ? ` (${error.message})` : ''}`, {
      details: {stderr},
    })
  }
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      child.stdin.end()
      await exited
    },
  }
}
