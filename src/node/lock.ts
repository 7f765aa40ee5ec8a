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
import {fsp as fs} from '../exec/fs.js'
import path from 'node:path'
import {PnError, isPnError} from '../errors.js'
import {acquireFlock, flockLocker, LockBusyError} from '../exec/flock.js'
import {validateContainerId, validateIfname} from '../datapath/validate.js'
import {attachmentFileName} from '../endpoint/store.js'
import {DEFAULT_LOCK_TIMEOUT_MS, ensureDir, fileExists, withLock, type LockOptions} from '../state/files.js'

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
  await fs.writeFile(markerFile(stateDir), `${process.pid}\n`, {mode: 0o600})
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

/**
 * One lock per attachment (`<state-dir>/cni/<containerId>:<ifname>.lock`), held for a whole
 * ADD/DEL/CHECK, by GC and by `pn node reset` while they tear an attachment down, and by
 * `pn veth create|delete`: so a runtime that retries too eagerly, a GC sweep or a reset never
 * interleaves with another operation on the same pod. Operations on different pods never wait
 * on it (they do serialise briefly on the IPAM state lock, one read-modify-write per change).
 */
export function attachmentLockFile(stateDir: string, containerId: string, ifname: string): string {
  // Validated before they become a path (a container id of `../x` must never name a file elsewhere).
  validateContainerId(containerId)
  validateIfname(ifname)
  return path.join(stateDir, 'cni', attachmentFileName(`${containerId}:${ifname}`))
}

/** The attachment's own lock alone, for a caller that already holds the node lock (GC, reset). */
export function withAttachmentFileLock<T>(stateDir: string, containerId: string, ifname: string, fn: () => Promise<T>, lock: LockOptions = {}): Promise<T> {
  return withLock(attachmentLockFile(stateDir, containerId, ifname), fn, lock)
}

/**
 * Node shared lock (refused at once while a reset runs), then the attachment's own — both taken
 * as one chain (a timeout names which: a busy node lock is a reset in progress).
 */
export async function withAttachmentLock<T>(
  stateDir: string,
  containerId: string,
  ifname: string,
  action: string,
  fn: () => Promise<T>,
  lock: LockOptions = {},
): Promise<T> {
  const file = attachmentLockFile(stateDir, containerId, ifname)
  // No state dir: no node, so no reset can be running (and DEL must not create one).
  if (!(await fileExists(stateDir))) return withLock(file, fn, lock)
  await ensureDir(path.dirname(file))
  let held
  try {
    held = await (lock.locker ?? flockLocker).acquire([
      {path: nodeLockFile(stateDir), timeoutMs: 0, shared: true},
      {path: `${file}.lock`, timeoutMs: lock.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS},
    ])
  } catch (err) {
    if (err instanceof LockBusyError && err.index === 0) throw busy(action, await resetInProgress(stateDir))
    throw err
  }
  try {
    const pid = await resetInProgress(stateDir)
    if (pid) throw busy(action, pid)
    await lock.whileHeld?.(`${file}.lock`)
    return await fn()
  } finally {
    await held.release()
  }
}

/** Forget the attachment's lock file (after its DEL: nothing of it is left to protect). */
export async function removeAttachmentLock(stateDir: string, containerId: string, ifname: string): Promise<void> {
  await fs.rm(attachmentLockFile(stateDir, containerId, ifname) + '.lock', {force: true})
}
