/**
 * The cluster store's key-value contract (kv.ts) in a directory, for one machine: the whole
 * key space is one JSON document (`<dir>/cluster.json`) changed under its flock, with a global
 * revision, the recent history of changes (the last LOG_REVISIONS revisions; older is
 * "compacted"), and leases.
 *
 * Leases expire by timestamp, not by the holder's pid: a lease records `expiresAt` and every
 * keep-alive moves it on, as etcd does. So a holder that is alive but stuck loses its keys just
 * as on etcd, and nothing depends on pids being comparable (netns labs, containers). Expiry is
 * enforced by whoever touches the store next: every read and write first deletes the keys of
 * leases past their time (one revision per lease), and a watch checks on a timer, so keys of a
 * dead holder go within the TTL plus one watch tick.
 *
 * A watch follows the document with fs.watch on the directory (the write is a rename into it)
 * and a poll as a backstop; it reads the history from its revision on.
 */
import {watch as fsWatch, type FSWatcher} from 'node:fs'
import path from 'node:path'
import {PnError} from '../errors.js'
import {readJsonFile, updateJsonFile, type JsonFileSpec, type LockOptions} from '../state/files.js'
import {leaseLost, type ClusterKv, type KvCompare, type KvEntry, type KvEvent, type KvLease, type KvWatch, type KvWatchHandlers, type KvWatchOptions, type KvWrite} from './kv.js'

/** How many revisions of history the document keeps for watches. */
export const LOG_REVISIONS = 1000
/** How often a directory watch looks even without a file event (and checks lease expiry). */
const POLL_MS = 200

interface DirKey {
  value: string
  create: number
  mod: number
  lease?: string
}

interface DirDoc {
  format: 1
  revision: number
  /** Watches from a revision ≤ this are compacted. */
  compacted: number
  nextLease: number
  keys: Record<string, DirKey>
  leases: Record<string, {ttl: number; expiresAt: number}>
  log: KvEvent[]
}

const spec: JsonFileSpec<DirDoc> = {
  what: 'cluster store',
  corruptCode: 'PN_CLUSTER_CORRUPT',
  corruptHint: 'pn will not overwrite it; move the file away and run pn cluster init again (nodes re-register, agents re-publish)',
  validate: (v: unknown): v is DirDoc => {
    const d = v as DirDoc
    return !!d && d.format === 1 && Number.isInteger(d.revision) && Number.isInteger(d.compacted) && Number.isInteger(d.nextLease) &&
      typeof d.keys === 'object' && typeof d.leases === 'object' && Array.isArray(d.log)
  },
}

function emptyDoc(): DirDoc {
  return {format: 1, revision: 1, compacted: 0, nextLease: 1, keys: {}, leases: {}, log: []}
}

export interface DirKvOptions {
  lock?: LockOptions
  /** Revisions of history kept for watches (default LOG_REVISIONS). */
  history?: number
  /** The clock (tests). */
  now?: () => number
}

export class DirKv implements ClusterKv {
  readonly location: string
  readonly file: string
  private readonly now: () => number

  constructor(
    readonly dir: string,
    private readonly opts: DirKvOptions = {},
  ) {
    this.location = dir
    this.file = path.join(dir, 'cluster.json')
    this.now = opts.now ?? Date.now
  }

  async range(prefix: string): Promise<{revision: number; kvs: KvEntry[]}> {
    const doc = await this.current()
    const kvs = Object.entries(doc.keys)
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, k]) => ({key, value: k.value, createRevision: k.create, modRevision: k.mod, ...(k.lease ? {lease: k.lease} : {})}))
    return {revision: doc.revision, kvs}
  }

  txn(compares: KvCompare[], writes: KvWrite[]): Promise<{succeeded: boolean; revision: number}> {
    return this.change((doc) => {
      for (const c of compares) if ((doc.keys[c.key]?.mod ?? 0) !== c.modRevision) return {succeeded: false, revision: doc.revision}
      for (const w of writes) {
        if ('put' in w && w.lease && !doc.leases[w.lease]) {
          throw leaseLost(this.location, w.put, w.lease)
        }
      }
      if (writes.length === 0) return {succeeded: true, revision: doc.revision}
      const rev = doc.revision + 1
      const events: KvEvent[] = []
      for (const w of writes) {
        if ('put' in w) {
          const had = doc.keys[w.put]
          doc.keys[w.put] = {value: w.value, create: had?.create ?? rev, mod: rev, ...(w.lease ? {lease: w.lease} : {})}
          events.push({type: 'put', key: w.put, value: w.value, revision: rev, ...(w.lease ? {lease: w.lease} : {})})
        } else if (doc.keys[w.delete]) {
          delete doc.keys[w.delete]
          events.push({type: 'delete', key: w.delete, revision: rev})
        }
      }
      if (events.length > 0) this.commit(doc, events)
      return {succeeded: true, revision: doc.revision}
    })
  }

  async grantLease(ttlSeconds: number): Promise<KvLease> {
    const id = await this.change((doc) => {
      const id = String(doc.nextLease++)
      doc.leases[id] = {ttl: ttlSeconds, expiresAt: this.now() + ttlSeconds * 1000}
      return id
    })
    return {
      id,
      ttlSeconds,
      keepAlive: () =>
        this.change((doc) => {
          const l = doc.leases[id]
          if (!l) return false
          l.expiresAt = this.now() + l.ttl * 1000
          return true
        }),
      revoke: () => this.change((doc) => this.dropLease(doc, id)),
    }
  }

  watch(prefix: string, fromRevision: number, h: KvWatchHandlers, opts: KvWatchOptions = {}): KvWatch {
    const startKey = Buffer.from(opts.startKey ?? prefix)
    let seen = fromRevision - 1
    let closed = false
    let busy = false
    let again = false
    let watcher: FSWatcher | undefined
    let timer: NodeJS.Timeout | undefined
    const stop = () => {
      closed = true
      watcher?.close()
      clearInterval(timer)
    }
    const tick = async () => {
      if (closed) return
      if (busy) {
        again = true
        return
      }
      busy = true
      try {
        do {
          again = false
          const doc = await this.current()
          if (closed) return
          if (doc.revision <= seen) continue
          if (seen + 1 <= doc.compacted) {
            stop()
            h.onCompacted(doc.compacted)
            return
          }
          const byRev = new Map<number, KvEvent[]>()
          for (const e of doc.log) {
            if (e.revision > seen && e.key.startsWith(prefix) && Buffer.compare(Buffer.from(e.key), startKey) >= 0) byRev.set(e.revision, [...(byRev.get(e.revision) ?? []), e])
          }
          seen = doc.revision
          for (const [rev, events] of [...byRev].sort(([a], [b]) => a - b)) {
            if (closed) return
            h.onEvents(rev, events)
          }
        } while (again && !closed)
      } catch (err) {
        stop()
        h.onError(err instanceof PnError ? err : new PnError('PN_CLUSTER_CORRUPT', `watch cluster store ${this.location}: ${(err as Error).message}`))
      } finally {
        busy = false
      }
    }
    try {
      watcher = fsWatch(this.dir, {persistent: false}, () => void tick())
      watcher.on('error', () => undefined) // the poll carries on
    } catch {
      // No directory yet, or no inotify: the poll alone.
    }
    timer = setInterval(() => void tick(), POLL_MS)
    timer.unref()
    void tick()
    return {
      close: async () => stop(),
    }
  }

  compact(revision: number): Promise<void> {
    return this.change((doc) => {
      if (revision > doc.revision) throw new PnError('PN_INVALID_ARGUMENT', `compact cluster store ${this.location}: revision ${revision} is in the future (now ${doc.revision})`)
      doc.compacted = Math.max(doc.compacted, revision - 1)
      doc.log = doc.log.filter((e) => e.revision > doc.compacted)
    })
  }

  async close(): Promise<void> {}

  /** The document with due leases expired (a write only when one is due). */
  private async current(): Promise<DirDoc> {
    const doc = (await readJsonFile(this.file, spec)) ?? emptyDoc()
    if (!this.due(doc)) return doc
    return this.change((d) => d)
  }

  private due(doc: DirDoc): boolean {
    const now = this.now()
    return Object.values(doc.leases).some((l) => l.expiresAt <= now)
  }

  /** One locked read-modify-write; expired leases go first. Writes only when the document changed. */
  private change<R>(fn: (doc: DirDoc) => R): Promise<R> {
    return updateJsonFile(this.file, spec, (current) => {
      const doc = current ?? emptyDoc()
      const before = JSON.stringify(doc)
      const now = this.now()
      for (const [id, l] of Object.entries(doc.leases)) if (l.expiresAt <= now) this.dropLease(doc, id)
      const result = fn(doc)
      return {next: JSON.stringify(doc) === before && current ? undefined : doc, result}
    }, this.opts.lock)
  }

  private dropLease(doc: DirDoc, id: string): void {
    if (!doc.leases[id]) return
    delete doc.leases[id]
    const events: KvEvent[] = []
    const rev = doc.revision + 1
    for (const [key, k] of Object.entries(doc.keys)) {
      if (k.lease !== id) continue
      delete doc.keys[key]
      events.push({type: 'delete', key, revision: rev})
    }
    if (events.length > 0) this.commit(doc, events)
  }

  private commit(doc: DirDoc, events: KvEvent[]): void {
    doc.revision = events[0].revision
    doc.log.push(...events)
    const keepFrom = doc.revision - (this.opts.history ?? LOG_REVISIONS) + 1
    if (keepFrom - 1 > doc.compacted) {
      doc.compacted = keepFrom - 1
      doc.log = doc.log.filter((e) => e.revision >= keepFrom)
    }
  }
}
