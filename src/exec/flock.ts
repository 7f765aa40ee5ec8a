/**
 * Advisory file locks for Node, which has no flock(2). pn holds a kernel flock through a
 * helper process: util-linux `flock -x -w T FILE cat`. `cat` starts only once the lock is held
 * and echoes the byte we pre-write to its stdin, which tells us we own the lock; closing stdin
 * ends `cat` and releases the lock. If pn dies (even by SIGKILL) its end of the pipe closes,
 * `cat` exits and the kernel drops the lock: a lock can never outlive its owner, so there is no
 * staleness heuristic to tune (unlike mkdir/PID lock files). host-local uses flock the same way.
 */
import {spawn} from 'node:child_process'
import {PnError} from '../errors.js'

export interface HeldLock {
  release(): Promise<void>
}

/** Exit code flock(1) uses for "timed out waiting" (its -E option), distinct from cat's. */
const FLOCK_TIMEOUT_EXIT = 75

/**
 * Take the lock: exclusive (default) or shared (`shared`, for many readers against one writer).
 * `timeoutMs` 0 means "only if free now" (flock -n).
 */
export async function acquireFlock(lockPath: string, timeoutMs: number, opts: {shared?: boolean} = {}): Promise<HeldLock> {
  const wait = timeoutMs <= 0 ? ['-n'] : ['-w', Math.max(timeoutMs / 1000, 0.01).toFixed(2)]
  // node:child_process rather than execa: this runs on every IPAM mutation, including from pn-cni.
  const child = spawn('flock', [opts.shared ? '-s' : '-x', ...wait, '-E', String(FLOCK_TIMEOUT_EXIT), lockPath, 'cat'], {
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
  if (!acquired) {
    const {code, error} = await exited
    if (error?.code === 'ENOENT') {
      throw new PnError('PN_TOOL_MISSING', 'run flock: command not found', {hint: 'install util-linux'})
    }
    if (code === FLOCK_TIMEOUT_EXIT) {
      throw new PnError('PN_LOCK_TIMEOUT', `lock ${lockPath}: still held by another pn process after ${timeoutMs} ms`, {
        hint: `another pn command is changing the same state; retry, or find it with \`fuser ${lockPath}\``,
      })
    }
    throw new PnError('PN_COMMAND_FAILED', `lock ${lockPath}: flock exited with ${code}${error ? ` (${error.message})` : ''}`, {
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
