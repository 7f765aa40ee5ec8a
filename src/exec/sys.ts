/**
 * The Node-API addon native/pn-sys.c (dist/native/pn-sys.node): the syscalls pn needs and Node
 * has no API for — flock(2) held by this process (./flock.ts), BPF maps by pin path
 * (src/kernel/maps.ts, src/datapath/bpf/op-list.ts), and the agent's socket credentials
 * (src/agent/syscalls.ts). Loaded on first use with process.dlopen (one small library and no
 * other: ≈ 0.2 ms, so pn-cni loads it on every call that takes a lock).
 */
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {getSystemErrorName} from 'node:util'
import {PnError} from '../errors.js'

/** dist/src/exec → dist/native (the pn-cni bundle sits in dist/src/entry: the same depth). */
export const SYS_ADDON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/pn-sys.node')

export interface MapInfo {
  type: number
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  id: number
  name: string
  /** What a lookup returns: valueSize, or for a per-CPU map valueSize rounded up to 8 × possible CPUs. */
  valueBytes: number
  /** The map type has BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH (else one syscall per element). */
  batchUpdate: boolean
  batchDelete: boolean
}

/** What a write did: `done` entries from the start were processed (minus `skipped`, absent keys of deletes), then `errno` (0: none). */
export interface MapWriteResult {
  done: number
  skipped: number[]
  errno: number
}

/** What one frame did: `done` records from the start took effect (minus `skipped`), then `failed`. */
export interface FrameResult {
  done: number
  /** Deletes of keys that were not there (not an error; nothing to undo). */
  skipped: number[]
  failed?: {index: number; errno: number; error: string}
}

/** A lock wait in progress (opaque). */
export type LockWaitHandle = {readonly __lockWait: unique symbol}

export interface SysAddon {
  peercred(fd: number): {pid: number; uid: number; gid: number; groups: number[]}
  peerClosed(fd: number): boolean
  /** Something to read on `fd` (or its peer closed) within `ms` milliseconds. */
  readable(fd: number, ms: number): boolean
  tryLock(fd: number): boolean
  /** The fd holding the lock, or -1 when another open file holds a conflicting one. */
  lockTry(path: string, shared: boolean): number
  /** `done(r)`: the fd holding the lock, or -errno (-ECANCELED: abandoned and already released). */
  lockWait(path: string, shared: boolean, done: (r: number) => void): LockWaitHandle
  lockAbandon(handle: LockWaitHandle): void
  unlock(fd: number): void
  mapInfo(path: string): MapInfo
  mapWrite(path: string, op: 1 | 2, keys: Buffer, values: Buffer | null, count: number, missingOk: boolean): MapWriteResult
  /** `layout`: [record size, key offset, value offset] (src/datapath/bpf/op-list.ts defines it). */
  mapWriteFrame(paths: readonly string[], frame: Buffer, layout: readonly [number, number, number]): FrameResult
  mapLookup(path: string, key: Buffer): Buffer | null
  mapDump(path: string): {keys: Buffer; values: Buffer; errs: number[]; count: number}
  progGet(path: string): {id: number; name: string; tag: string} | null
}

let loaded: SysAddon | undefined

/** The addon, loaded on first use; PN_TOOL_MISSING when it was not built. */
export function sys(): SysAddon {
  if (loaded) return loaded
  const m = {exports: {}} as {exports: SysAddon}
  try {
    process.dlopen(m, SYS_ADDON)
  } catch (err) {
    throw new PnError('PN_TOOL_MISSING', `load addon ${SYS_ADDON}: ${(err as Error).message.split('\n')[0]}`, {
      hint: 'build it: npm run build (needs clang and the node headers, /usr/include/node)',
    })
  }
  loaded = m.exports
  return loaded
}

/** errno number → name (`ENOENT`; the kernel's ENOTSUPP, 524, is in no libc table). */
export function errnoName(errno: number): string {
  if (errno === 524) return 'ENOTSUPP'
  const name = getSystemErrorName(-errno)
  return /^E[A-Z0-9]+$/.test(name) ? name : `E${errno}`
}
