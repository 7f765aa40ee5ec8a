/**
 * The key-value contract the cluster store is written against, modelled on etcd v3 (the
 * directory backend imitates it on one machine): one global revision that every change
 * increments, transactions guarded by mod revisions, keys attached to leases (deleted when the
 * lease expires or is revoked), and watches of a prefix from a revision that fail with
 * "compacted" once the history they need is gone.
 */
import {PnError} from '../errors.js'

/** A key as read; revisions are the store's (0: absent). */
export interface KvEntry {
  key: string
  value: string
  createRevision: number
  modRevision: number
  /** The lease the key is attached to (decimal id), if any. */
  lease?: string
}

/** One change seen by a watch. */
export interface KvEvent {
  type: 'put' | 'delete'
  key: string
  /** The new value (put). */
  value?: string
  revision: number
  lease?: string
}

/** The key's mod revision equals `modRevision` (0: the key is absent). */
export interface KvCompare {
  key: string
  modRevision: number
}

export type KvWrite = {put: string; value: string; lease?: string} | {delete: string}

/** A lease granted by the store; its keys go when it expires or is revoked. */
export interface KvLease {
  readonly id: string
  readonly ttlSeconds: number
  /** Renew the lease; false when the store no longer has it (expired: its keys are gone). */
  keepAlive(): Promise<boolean>
  /** Revoke it now (its keys are deleted); idempotent. */
  revoke(): Promise<void>
}

export interface KvWatchHandlers {
  /** The changes of one revision, in order; revisions arrive in increasing order. */
  onEvents(revision: number, events: KvEvent[]): void
  /** The watch cannot start at the revision asked for: history up to `compactRevision` is gone. */
  onCompacted(compactRevision: number): void
  /** The watch stopped for another reason (it is closed). */
  onError(err: PnError): void
}

export interface KvWatchOptions {
  /** Watch only keys ≥ this one (it must lie under the watched prefix). */
  startKey?: string
}

export interface KvWatch {
  close(): Promise<void>
}

export interface ClusterKv {
  readonly location: string
  /** Every key under `prefix` and the revision of that consistent read. */
  range(prefix: string): Promise<{revision: number; kvs: KvEntry[]}>
  /** If every compare holds, apply `writes` atomically (one revision). */
  txn(compares: KvCompare[], writes: KvWrite[]): Promise<{succeeded: boolean; revision: number}>
  grantLease(ttlSeconds: number): Promise<KvLease>
  /**
   * Changes under `prefix` with revision ≥ `fromRevision`; with `opts.startKey`, only those of
   * keys at or after it (byte order) under `prefix`: the store does not send the others at all.
   */
  watch(prefix: string, fromRevision: number, handlers: KvWatchHandlers, opts?: KvWatchOptions): KvWatch
  /** Drop the history before `revision` (watches from an older revision fail as compacted). */
  compact(revision: number): Promise<void>
  close(): Promise<void>
}

/** A write under a lease the store no longer has: the node's registration expired (its keys are gone). */
export function leaseLost(location: string, key: string, lease: string): PnError {
  return new PnError('PN_CLUSTER_LEASE_LOST', `write ${key} in cluster store ${location}: lease ${lease} has expired (the node's keys were removed)`, {
    hint: 'register the node again (an agent does so on its own); its endpoints are published again with it',
    details: {key, lease},
  })
}
