/**
 * Advisory file locks for Node, which has no flock(2). pn holds a kernel flock through a
 * helper process: util-linux `flock -x -w T FILE cat`. `cat` starts only once the lock is held
 * and echoes the byte we pre-write to its stdin, which tells us we own the lock; closing stdin
 * ends `cat` and releases the lock. If pn dies (even by SIGKILL) its end of the pipe closes,
 * `cat` exits and the kernel drops the lock: a lock can never outlive its owner, so there is no
 * staleness heuristic to tune (unlike mkdir/PID lock files). host-local uses flock the same way.
 */
import {execa} from 'execa'
import {PnError} from '../errors.js'

export interface HeldLock {
  release(): Promise<void>
}

export async function acquireFlock(lockPath: string, timeoutMs: number): Promise<HeldLock> {
  const seconds = Math.max(timeoutMs / 1000, 0.01).toFixed(2)
  const child = execa('flock', ['-x', '-w', seconds, '-E', '75', lockPath, 'cat'], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
    buffer: false,
  })
  child.stdin?.write('L')
  const acquired = await new Promise<boolean>((resolve) => {
    let done = false
    const finish = (ok: boolean) => {
      if (!done) {
        done = true
        resolve(ok)
      }
    }
    child.stdout?.once('data', () => finish(true))
    child.once('exit', () => finish(false))
    child.once('error', () => finish(false))
  })
  if (!acquired) {
    const result = await child
    const code = (result as unknown as {code?: string}).code
    if (code === 'ENOENT') {
      throw new PnError('PN_TOOL_MISSING', 'run flock: command not found', {hint: 'install util-linux'})
    }
    if (result.exitCode === 75) {
      throw new PnError('PN_LOCK_TIMEOUT', `lock ${lockPath}: still held by another pn process after ${timeoutMs} ms`, {
        hint: 'another pn command is changing the same state; retry, or find it with `fuser ' + lockPath + '`',
      })
    }
    throw new PnError('PN_COMMAND_FAILED', `lock ${lockPath}: flock exited with ${result.exitCode}`, {
      details: {stderr: String(result.stderr ?? '')},
    })
  }
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      child.stdin?.end()
      await child
    },
  }
}
