/**
 * Node reset and pod attachments exclude each other. Every ADD/DEL/CHECK/GC holds a shared lock
 * on `<state-dir>/node.lock` for its whole run; `pn node reset` announces itself in
 * `<state-dir>/.resetting` (its pid), then takes the lock exclusively, which waits for the
 * attachments in flight to finish. While it runs, new attachments are refused at once with
 * PN_NODE_BUSY (CNI code 11, "try again later") instead of queueing behind it and then writing
 * into a node that no longer exists. A reset killed mid-way leaves a marker whose pid is dead,
 * which is ignored. node.lock itself stays (one file): deleting a lock file others may hold
 * open would let two holders lock different inodes.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PnError, isPnError} from '../errors.js'
import {acquireFlock} from '../exec/flock.js'
import {DEFAULT_LOCK_TIMEOUT_MS, ensureDir, fileExists, type LockOptions} from '../state/files.js'

export const nodeLockFile = (stateDir: string) => path.join(stateDir, 'node.lock')
const markerFile = (stateDir: string) => path.join(stateDir, '.resetting')

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The pid of a reset running on this node, if any. */
export async function resetInProgress(stateDir: string): Promise<number | undefined> {
  const pid = Number((await fs.readFile(markerFile(stateDir), 'utf8').catch(() => '')).trim())
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid) ? pid : undefined
}

function busy(action: string, pid?: number): PnError {
  return new PnError('PN_NODE_BUSY', `${action}: pn node reset is running on this node${pid ? ` (pid ${pid})` : ''}`, {
    hint: 'retry once the reset has finished (a runtime retries on CNI code 11); then `pn node init` first',
  })
}

/** Run an attachment operation under the node's shared lock; PN_NODE_BUSY while a reset runs. */
export async function withNodeShared<T>(stateDir: string, action: string, fn: () => Promise<T>): Promise<T> {
  // No state dir: no node, so no reset can be running (and DEL must not create one).
  if (!(await fileExists(stateDir))) return fn()
  let held
  try {
    held = await acquireFlock(nodeLockFile(stateDir), 0, {shared: true})
  } catch (err) {
    if (isPnError(err, 'PN_LOCK_TIMEOUT')) throw busy(action, await resetInProgress(stateDir))
    throw err
  }
  try {
    const pid = await resetInProgress(stateDir)
    if (pid) throw busy(action, pid)
    return await fn()
  } finally {
    await held.release()
  }
}

/** Run a reset under the node's exclusive lock, after the attachments in flight finished. */
export async function withNodeExclusive<T>(stateDir: string, fn: () => Promise<T>, lock: LockOptions = {}): Promise<T> {
  await ensureDir(stateDir)
  await fs.writeFile(markerFile(stateDir), `${process.pid}\n`)
  try {
    const held = await acquireFlock(nodeLockFile(stateDir), lock.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS)
    try {
      return await fn()
    } finally {
      await held.release()
    }
  } finally {
    await fs.rm(markerFile(stateDir), {force: true})
  }
}
