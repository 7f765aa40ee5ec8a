/**
 * One lock per attachment (`<state-dir>/cni/<containerId>:<ifname>.lock`). IPAM and the endpoint
 * store lock their own files; this lock makes each ADD/DEL/CHECK of one attachment atomic
 * against GC (which walks every attachment) and against a runtime that retries too eagerly,
 * while ADDs of different pods never wait for each other.
 */
import path from 'node:path'
import {withLock} from '../state/files.js'
import {attachmentId} from './env.js'

export function attachmentLockFile(stateDir: string, containerId: string, ifname: string): string {
  return path.join(stateDir, 'cni', attachmentId(containerId, ifname))
}

export function withAttachmentLock<T>(stateDir: string, containerId: string, ifname: string, fn: () => Promise<T>): Promise<T> {
  return withLock(attachmentLockFile(stateDir, containerId, ifname), fn)
}
