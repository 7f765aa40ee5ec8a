/**
 * One lock per attachment (`<state-dir>/cni/<containerId>:<ifname>.lock`), held for a whole
 * ADD/DEL/CHECK and by GC while it tears an attachment down: so a runtime that retries too
 * eagerly, or a GC sweep, never interleaves with another operation on the same pod. ADDs of
 * different pods never wait on this lock; they do serialise briefly on the IPAM state lock
 * (one read-modify-write of ipam.json per allocation and per confirm). All of them hold the
 * node's shared lock (src/node/lock.ts), which only `pn node reset` takes exclusively.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {withNodeShared} from '../node/lock.js'
import {withLock, type LockOptions} from '../state/files.js'
import {attachmentId} from './env.js'

export function attachmentLockFile(stateDir: string, containerId: string, ifname: string): string {
  return path.join(stateDir, 'cni', attachmentId(containerId, ifname))
}

/** Run fn for one attachment: node shared lock (refused while a reset runs), then the attachment's own. */
export function withAttachmentLock<T>(
  stateDir: string,
  containerId: string,
  ifname: string,
  action: string,
  fn: () => Promise<T>,
  lock: LockOptions = {},
): Promise<T> {
  return withNodeShared(stateDir, action, () => withAttachmentFileLock(stateDir, containerId, ifname, fn, lock))
}

/** The attachment's own lock alone, for a caller that already holds the node's shared lock (GC). */
export function withAttachmentFileLock<T>(stateDir: string, containerId: string, ifname: string, fn: () => Promise<T>, lock: LockOptions = {}): Promise<T> {
  return withLock(attachmentLockFile(stateDir, containerId, ifname), fn, lock)
}

/** Forget the attachment's lock file (after its DEL: nothing of it is left to protect). */
export async function removeAttachmentLock(stateDir: string, containerId: string, ifname: string): Promise<void> {
  await fs.rm(attachmentLockFile(stateDir, containerId, ifname) + '.lock', {force: true})
}
