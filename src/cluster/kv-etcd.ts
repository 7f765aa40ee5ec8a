/**
 * The cluster store's key-value contract (kv.ts) on etcd v3, over the connection the pool uses
 * (src/state/etcd-store.ts: locations, TLS, deadlines, errors in pn's words), with one client
 * kept open for the store's life: leases and watches live as long as the client.
 *
 * Transactions are etcd's own (compare mod revisions, puts with a lease). Watches are etcd3's
 * watchers, which reconnect by themselves and resume after the last revision they delivered;
 * when etcd cancels one because its start revision was compacted, the store says so
 * (onCompacted) instead of an error, and the caller resyncs from a fresh read.
 */
import {PnError} from '../errors.js'
import {EtcdConnection, prefixEnd, type EtcdTlsFiles} from '../state/etcd-store.js'
import {leaseLost, type ClusterKv, type KvCompare, type KvEntry, type KvEvent, type KvLease, type KvWatch, type KvWatchHandlers, type KvWatchOptions, type KvWrite} from './kv.js'

/** The etcd3 client, as the connection hands it out (etcd3 is loaded there, lazily). */
type Etcd3 = Parameters<Parameters<EtcdConnection['run']>[1]>[1]
type Watcher = ReturnType<ReturnType<Etcd3['watch']>['watcher']>

export interface EtcdKvOptions {
  tls?: EtcdTlsFiles
  timeoutMs?: number
}

const isCompacted = (err: unknown) => /compacted/i.test((err as Error)?.message ?? '')
const isLeaseGone = (err: unknown) => /lease not found|EtcdLeaseInvalidError|lease.*(expired|invalid)/i.test(`${(err as Error)?.name ?? ''} ${(err as Error)?.message ?? ''}`)

export class EtcdKv implements ClusterKv {
  readonly location: string
  private readonly conn: EtcdConnection

  constructor(location: string, opts: EtcdKvOptions = {}) {
    this.conn = new EtcdConnection({location, what: 'cluster store', tls: opts.tls, timeoutMs: opts.timeoutMs, keepOpen: true})
    this.location = location
  }

  range(prefix: string): Promise<{revision: number; kvs: KvEntry[]}> {
    return this.conn.run('read', async (_kv, client) => {
      const r = await client.kv.range({key: Buffer.from(prefix), range_end: prefixEnd(prefix)})
      return {
        revision: Number(r.header.revision),
        kvs: (r.kvs ?? []).map((kv) => ({
          key: kv.key.toString('utf8'),
          value: kv.value?.toString('utf8') ?? '',
          createRevision: Number(kv.create_revision),
          modRevision: Number(kv.mod_revision),
          ...(kv.lease && kv.lease !== '0' ? {lease: String(kv.lease)} : {}),
        })),
      }
    })
  }

  txn(compares: KvCompare[], writes: KvWrite[]): Promise<{succeeded: boolean; revision: number}> {
    return this.conn.run('write', async (_kv, client) => {
      const request = {
        compare: compares.map((c) => ({key: Buffer.from(c.key), target: 2 /* CompareTarget.Mod */, result: 0 /* CompareResult.Equal */, mod_revision: String(c.modRevision)})),
        success: writes.map((w) =>
          'put' in w
            ? {request_put: {key: Buffer.from(w.put), value: Buffer.from(w.value), ...(w.lease ? {lease: w.lease} : {})}}
            : {request_delete_range: {key: Buffer.from(w.delete)}},
        ),
        failure: [],
      }
      try {
        const r = await client.kv.txn(request as unknown as Parameters<Etcd3['kv']['txn']>[0])
        return {succeeded: r.succeeded, revision: Number(r.header.revision)}
      } catch (err) {
        const leased = writes.find((w) => 'put' in w && w.lease) as {put: string; lease: string} | undefined
        if (leased && isLeaseGone(err)) throw leaseLost(this.location, leased.put, leased.lease)
        throw err
      }
    })
  }

  async grantLease(ttlSeconds: number): Promise<KvLease> {
    const client = await this.client()
    const lease = client.lease(ttlSeconds, {autoKeepAlive: false})
    lease.on('lost', () => undefined) // reported through keepAlive() returning false
    const id = await this.conn.run('grant lease in', () => lease.grant())
    return {
      id,
      ttlSeconds,
      keepAlive: () =>
        this.conn.run('keep lease alive in', async () => {
          try {
            await lease.keepaliveOnce()
            return true
          } catch (err) {
            if (isLeaseGone(err)) return false
            throw err
          }
        }),
      revoke: () => this.conn.run('revoke lease in', () => lease.revoke()),
    }
  }

  watch(prefix: string, fromRevision: number, h: KvWatchHandlers, opts: KvWatchOptions = {}): KvWatch {
    let closed = false
    let watcher: Watcher | undefined
    const stop = async () => {
      closed = true
      await watcher?.cancel().catch(() => undefined)
    }
    /** After a cancel or a failed start: compacted history, or a real error. */
    const failed = async (err: unknown, from: number) => {
      if (closed) return
      closed = true
      if (isCompacted(err) || (await this.compactedAt(from))) return h.onCompacted(from)
      h.onError(err instanceof PnError ? err : this.conn.unreachable('watch', (err as Error)?.message ?? String(err), err))
    }
    void (async () => {
      try {
        const client = await this.client()
        if (await this.compactedAt(fromRevision)) return failed(new Error('compacted'), fromRevision)
        if (closed) return
        const builder = opts.startKey ? client.watch().inRange({start: Buffer.from(opts.startKey), end: prefixEnd(prefix)}) : client.watch().prefix(prefix)
        watcher = builder.startRevision(String(fromRevision)).watcher()
        let next = fromRevision
        watcher.on('data', (res) => {
          if (closed) return
          const byRev = new Map<number, KvEvent[]>()
          for (const ev of res.events ?? []) {
            const rev = Number(ev.kv.mod_revision)
            const del = ev.type === 'Delete'
            const e: KvEvent = {
              type: del ? 'delete' : 'put',
              key: ev.kv.key.toString('utf8'),
              revision: rev,
              ...(del ? {} : {value: ev.kv.value?.toString('utf8') ?? ''}),
              ...(ev.kv.lease && ev.kv.lease !== '0' ? {lease: String(ev.kv.lease)} : {}),
            }
            byRev.set(rev, [...(byRev.get(rev) ?? []), e])
          }
          for (const [rev, events] of [...byRev].sort(([a], [b]) => a - b)) {
            next = rev + 1
            h.onEvents(rev, events)
          }
        })
        watcher.on('error', (err) => void failed(err, next))
      } catch (err) {
        void failed(err, fromRevision)
      }
    })()
    return {close: stop}
  }

  compact(revision: number): Promise<void> {
    return this.conn.run('compact', async (_kv, client) => {
      await client.kv.compact({revision: String(revision), physical: true})
    })
  }

  close(): Promise<void> {
    return this.conn.close()
  }

  /** The kept client (no deadline: a watch or lease outlives one operation). */
  private client(): Promise<Etcd3> {
    return this.conn.run('connect to', async (_kv, client) => client)
  }

  /** True when a read at `revision` is refused as compacted. */
  private async compactedAt(revision: number): Promise<boolean> {
    if (revision <= 1) return false
    try {
      await this.conn.run('read', (_kv, client) => client.kv.range({key: Buffer.from('\0'), revision: String(revision), limit: '1'}))
      return false
    } catch (err) {
      return isCompacted(err) || isCompacted((err as {cause?: unknown}).cause)
    }
  }
}
