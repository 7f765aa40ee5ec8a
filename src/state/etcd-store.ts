/**
 * A Store kept in etcd (v3, through the `etcd3` client), for state shared by several machines:
 * the cluster pool of a cluster that outgrew one host. The value is one JSON document under one
 * key; `update` is optimistic: read it with its mod revision, run the mutation, and write it
 * back in a transaction that only commits if the revision is unchanged (compare-and-swap). Two
 * operators racing for the same pool never both win; the loser re-reads and re-runs its
 * mutation, so the allocator logic stays the same pure code as over a file.
 *
 * etcd3 (and gRPC under it) is imported on first use only, so nothing that never opens an
 * etcd:// location (pn-cni above all) pays for loading it. Every operation has one deadline:
 * an unreachable cluster is PN_POOL_UNREACHABLE after `timeoutMs`, never a hang, and a
 * transaction that did not commit changed nothing.
 */
import {PnError} from '../errors.js'
import type {JsonFileSpec} from './files.js'
import type {Mutation, Store} from './store.js'

export const DEFAULT_ETCD_TIMEOUT_MS = 5000

export interface EtcdLocation {
  /** Client URLs (http://HOST:PORT). */
  hosts: string[]
  /** Key prefix, `/pn` unless the location names one. */
  prefix: string
}

/** Parse `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`. */
export function parseEtcdLocation(location: string): EtcdLocation {
  const bad = (cause: string) =>
    new PnError('PN_INVALID_ARGUMENT', `parse pool location ${JSON.stringify(location)}: ${cause}`, {
      hint: 'write etcd://HOST:PORT[,HOST:PORT…][/PREFIX], e.g. etcd://10.0.0.5:2379/pn',
    })
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(location)
  if (!m) throw bad('not an etcd:// location')
  const hosts = m[1].split(',').map((h) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(h)
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) throw bad(`${JSON.stringify(h)} is not HOST:PORT`)
    return `http://${hp[1]}:${hp[2]}`
  })
  const prefix = (m[2] ?? '/pn').replace(/\/+$/, '') || '/pn'
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(prefix)) throw bad(`prefix ${JSON.stringify(m[2])} must be /name[/name…] (letters, digits, . _ -)`)
  return {hosts, prefix}
}

export interface EtcdStoreOptions<T> {
  /** The location as the user wrote it (for messages). */
  location: string
  /** The key under the location's prefix, e.g. `cluster-pool`. */
  name: string
  /** How to validate the stored JSON (the same spec as the file store's). */
  spec: JsonFileSpec<T>
  /** Deadline of one read, update or remove, connecting included. */
  timeoutMs?: number
  /** Compare-and-swap attempts before giving up on a hot key. */
  maxAttempts?: number
}

type Etcd3 = import('etcd3').Etcd3

export class EtcdStore<T> implements Store<T> {
  readonly location: string
  readonly key: string
  private readonly hosts: string[]
  private readonly timeoutMs: number
  private readonly maxAttempts: number

  constructor(private readonly opts: EtcdStoreOptions<T>) {
    const loc = parseEtcdLocation(opts.location)
    this.location = opts.location
    this.hosts = loc.hosts
    this.key = `${loc.prefix}/${opts.name}`
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_ETCD_TIMEOUT_MS
    this.maxAttempts = opts.maxAttempts ?? 200
  }

  read(): Promise<T | undefined> {
    return this.withClient('read', async (c) => {
      const r = await c.get(this.key).exec()
      const kv = r.kvs[0]
      return kv ? this.decode(kv.value.toString('utf8')) : undefined
    })
  }

  update<R>(mutate: Mutation<T, R>): Promise<R> {
    return this.withClient('update', async (c) => {
      for (let attempt = 1; ; attempt++) {
        const r = await c.get(this.key).exec()
        const kv = r.kvs[0]
        const current = kv ? this.decode(kv.value.toString('utf8')) : undefined
        const {next, result} = await mutate(current)
        if (next === undefined) return result
        // Commit only if nobody wrote the key since we read it (or it still does not exist).
        const guard = kv ? c.if(this.key, 'Mod', '==', kv.mod_revision) : c.if(this.key, 'Create', '==', 0)
        const txn = await guard.then(c.put(this.key).value(JSON.stringify(next, null, 2) + '\n')).commit()
        if (txn.succeeded) return result
        if (attempt >= this.maxAttempts) {
          throw new PnError('PN_LOCK_TIMEOUT', `update ${this.opts.spec.what} ${this.location}: lost ${attempt} compare-and-swap races in a row`, {
            hint: 'too many writers at once; retry',
          })
        }
        // Lost the race: back off a little (jittered) and redo the read-modify-write.
        await new Promise((res) => setTimeout(res, Math.random() * Math.min(200, 5 * attempt)))
      }
    })
  }

  remove(): Promise<boolean> {
    return this.withClient('remove', async (c) => {
      const r = await c.delete().key(this.key).exec()
      return Number(r.deleted) > 0
    })
  }

  private decode(text: string): T {
    const corrupt = (cause: string) =>
      new PnError(this.opts.spec.corruptCode, `read ${this.opts.spec.what} ${this.location} (key ${this.key}): ${cause}`, {
        hint: this.opts.spec.corruptHint ?? 'pn will not overwrite it; inspect the key',
        details: {key: this.key},
      })
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (err) {
      throw corrupt(`not valid JSON (${(err as Error).message})`)
    }
    if (!this.opts.spec.validate(value)) throw corrupt('unexpected content')
    return value
  }

  /** One client per operation, one deadline over all of it, errors mapped once. */
  private async withClient<R>(op: string, fn: (c: Etcd3) => Promise<R>): Promise<R> {
    const {Etcd3} = await import('etcd3')
    const client = new Etcd3({
      hosts: this.hosts,
      dialTimeout: this.timeoutMs,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : {deadline: Date.now() + this.timeoutMs}),
    })
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.unreachable(op, `no answer within ${this.timeoutMs} ms`)), this.timeoutMs)
    })
    try {
      return await Promise.race([fn(client), deadline])
    } catch (err) {
      if (err instanceof PnError) throw err
      throw this.unreachable(op, (err as Error).message ?? String(err), err)
    } finally {
      clearTimeout(timer)
      client.close()
    }
  }

  private unreachable(op: string, cause: string, err?: unknown): PnError {
    return new PnError('PN_POOL_UNREACHABLE', `${op} ${this.opts.spec.what} ${this.location}: etcd unreachable (${cause.split('\n')[0].replace(/[.\s]*Resolution note:.*$/, '')})`, {
      hint: `check that etcd answers on ${this.hosts.join(', ')}; nothing was changed unless a retry shows the change (allocations are idempotent per node)`,
      details: {hosts: this.hosts, key: this.key},
      ...(err === undefined ? {} : {cause: err}),
    })
  }
}
