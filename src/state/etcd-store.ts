/**
 * etcd (v3, through the `etcd3` client) for state shared by several machines: the connection
 * (locations, TLS, one deadline per operation, errors mapped once), a small transaction
 * interface over it (EtcdKv) that the cluster pool's per-key layout is written against
 * (src/ipam/pool-etcd.ts), and EtcdStore, the older one-JSON-document-under-one-key store.
 *
 * etcd3 (and gRPC under it) is imported on first use only, so nothing that never opens an
 * etcd location (pn-cni above all) pays for loading it. Every operation has one deadline:
 * an unreachable cluster is PN_POOL_UNREACHABLE after `timeoutMs`, never a hang, and a
 * transaction that did not commit changed nothing.
 */
import {readFile} from 'node:fs/promises'
import {PnError} from '../errors.js'
import type {JsonFileSpec} from './files.js'
import type {Mutation, Store} from './store.js'

export const DEFAULT_ETCD_TIMEOUT_MS = 5000

export interface EtcdLocation {
  /** Client URLs (http://HOST:PORT, or https:// for etcds://). */
  hosts: string[]
  /** Key prefix, `/pn` unless the location names one. */
  prefix: string
  /** etcds://: TLS to every endpoint. */
  tls: boolean
}

/** Files for TLS to etcd (PEM): the CA that signed etcd's certificate, and a client certificate and key. */
export interface EtcdTlsFiles {
  ca?: string
  cert?: string
  key?: string
}

/** True for a location kept in etcd (`etcd://` plain, `etcds://` TLS) rather than a file. */
export function isEtcdUrl(location: string): boolean {
  return location.startsWith('etcd://') || location.startsWith('etcds://')
}

/** Parse `etcd[s]://HOST:PORT[,HOST:PORT…][/PREFIX]`. */
export function parseEtcdLocation(location: string): EtcdLocation {
  const bad = (cause: string) =>
    new PnError('PN_INVALID_ARGUMENT', `parse pool location ${JSON.stringify(location)}: ${cause}`, {
      hint: 'write etcd://HOST:PORT[,HOST:PORT…][/PREFIX] (or etcds://… for TLS), e.g. etcd://10.0.0.5:2379/pn',
    })
  const m = /^(etcds?):\/\/([^/]+)(\/.*)?$/.exec(location)
  if (!m) throw bad('not an etcd:// or etcds:// location')
  const tls = m[1] === 'etcds'
  const hosts = m[2].split(',').map((h) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(h)
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) throw bad(`${JSON.stringify(h)} is not HOST:PORT`)
    return `${tls ? 'https' : 'http'}://${hp[1]}:${hp[2]}`
  })
  const prefix = (m[3] ?? '/pn').replace(/\/+$/, '') || '/pn'
  if (!/^(\/[A-Za-z0-9._-]+)+$/.test(prefix)) throw bad(`prefix ${JSON.stringify(m[3])} must be /name[/name…] (letters, digits, . _ -)`)
  return {hosts, prefix, tls}
}

/**
 * Check the TLS files against the scheme: etcds:// with an optional CA (else the system's) and
 * a client certificate and key given together; etcd:// with none (a CA for a plain connection
 * is a mistake worth saying, not a silent downgrade). Returns the warning for plain http.
 */
export function checkEtcdTls(location: string, tls: EtcdTlsFiles = {}): string | undefined {
  const loc = parseEtcdLocation(location)
  const given = (['ca', 'cert', 'key'] as const).filter((k) => tls[k])
  if (!loc.tls) {
    if (given.length > 0) {
      throw new PnError('PN_INVALID_ARGUMENT', `open pool ${location}: ${given.map((k) => `--etcd-${k}`).join(', ')} given for a plain-http etcd:// location`, {
        hint: `write the location as ${location.replace(/^etcd:/, 'etcds:')} to talk TLS, or drop the TLS files`,
      })
    }
    return `pool over plain http: ${location} (anyone on the path can read and change allocations; use etcds:// with --etcd-ca, --etcd-cert and --etcd-key)`
  }
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw new PnError('PN_INVALID_ARGUMENT', `open pool ${location}: ${tls.cert ? '--etcd-cert without --etcd-key' : '--etcd-key without --etcd-cert'}`, {
      hint: 'a client certificate needs its key: pass both --etcd-cert and --etcd-key (PN_ETCD_CERT, PN_ETCD_KEY)',
    })
  }
  return undefined
}

/** A key as read: value as text, and the revisions transactions compare on. */
export interface EtcdKv {
  key: string
  value: string
  createRevision: number
  modRevision: number
}

/** A compare of a transaction: the key's create or mod revision equals a number (0: absent). */
export interface EtcdCompare {
  key: string
  target: 'create' | 'mod'
  equals: number
}

/** One operation of a transaction; reads answer with their keys, writes with none. */
export type EtcdOp =
  | {get: string}
  | {getPrefix: string; keysOnly?: boolean; /** Only keys created at or after this revision. */ minCreateRevision?: number}
  | {put: string; value: string}
  | {delete: string}
  | {deletePrefix: string}
  /** A transaction inside a branch (etcd ≥ 3.3): applied in the same revision, all or nothing with its parent. */
  | {txn: EtcdTxnRequest}

export interface EtcdTxnRequest {
  compare: EtcdCompare[]
  then: EtcdOp[]
  otherwise?: EtcdOp[]
}

export interface EtcdTxnResult {
  succeeded: boolean
  /** One entry per operation of the branch that ran: the keys a read found ([] for a write or a nested transaction). */
  reads: EtcdKv[][]
  /** One entry per operation of the branch that ran: a nested transaction's result (undefined for any other operation). */
  nested: (EtcdTxnResult | undefined)[]
  /** The store's revision the transaction saw (after it, when it wrote). */
  revision: number
}

/** What the pool's per-key layout needs from etcd: one transaction at a time. */
export interface EtcdKvClient {
  /** If every compare holds, run `then`, else `otherwise`; atomically. No compares: a consistent read. */
  txn(compare: EtcdCompare[], then: EtcdOp[], otherwise?: EtcdOp[]): Promise<EtcdTxnResult>
}

export interface EtcdConnectionOptions {
  /** The location as the user wrote it (for messages). */
  location: string
  /** What lives there, for messages (`cluster pool`). */
  what: string
  tls?: EtcdTlsFiles
  /** Deadline of one operation, connecting included. */
  timeoutMs?: number
  /** Keep one client across operations until close() (a long-lived caller: the benchmark). */
  keepOpen?: boolean
}

type Etcd3 = import('etcd3').Etcd3

/** The end of the key range that holds every key starting with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix)
  let i = b.length - 1
  while (i >= 0 && b[i] === 0xff) i--
  const end = Buffer.from(b.subarray(0, i + 1))
  end[i]++
  return end
}

/** The client side of an etcd cluster: connect, one deadline per operation, errors in pn's words. */
export class EtcdConnection {
  readonly location: string
  readonly hosts: string[]
  readonly prefix: string
  private readonly timeoutMs: number
  private kept?: Promise<Etcd3>

  constructor(private readonly opts: EtcdConnectionOptions) {
    const loc = parseEtcdLocation(opts.location)
    checkEtcdTls(opts.location, opts.tls)
    this.location = opts.location
    this.hosts = loc.hosts
    this.prefix = loc.prefix
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_ETCD_TIMEOUT_MS
  }

  private async connect(): Promise<Etcd3> {
    const tls = this.opts.tls ?? {}
    const read = async (what: string, file?: string): Promise<Buffer | undefined> => {
      if (!file) return undefined
      try {
        return await readFile(file)
      } catch (err) {
        throw new PnError('PN_INVALID_ARGUMENT', `read etcd ${what} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, {
          hint: `pass a PEM file with --etcd-${what === 'client key' ? 'key' : what === 'client certificate' ? 'cert' : 'ca'}`,
        })
      }
    }
    const [ca, cert, key] = [await read('ca', tls.ca), await read('client certificate', tls.cert), await read('client key', tls.key)]
    const {Etcd3} = await import('etcd3')
    return new Etcd3({
      hosts: this.hosts,
      dialTimeout: this.timeoutMs,
      // With https hosts and no credentials etcd3 uses the system's roots; a CA or a client
      // certificate needs explicit credentials (an undefined root falls back to the system's).
      ...(ca || cert ? {credentials: {rootCertificate: ca as Buffer, ...(cert ? {certChain: cert, privateKey: key} : {})}} : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : {deadline: Date.now() + this.timeoutMs}),
    })
  }

  /** Run `fn` with a client under one deadline; errors that are not pn's become PN_POOL_UNREACHABLE / PN_POOL_TLS. */
  async run<R>(op: string, fn: (kv: EtcdKvClient, client: Etcd3) => Promise<R>): Promise<R> {
    // Loading etcd3 and the TLS files is local work (slow only on a loaded machine): before the
    // deadline, which is etcd's to meet. The client dials on its first call.
    if (this.opts.keepOpen) this.kept ??= this.connect()
    const client = await (this.opts.keepOpen ? this.kept! : this.connect())
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.unreachable(op, `no answer within ${this.timeoutMs} ms`)), this.timeoutMs)
    })
    try {
      return await Promise.race([fn(kvClient(client), client), deadline])
    } catch (err) {
      if (err instanceof PnError) throw err
      throw this.failed(op, err)
    } finally {
      clearTimeout(timer)
      if (!this.opts.keepOpen) client.close()
    }
  }

  /** Close a kept client. */
  async close(): Promise<void> {
    const kept = this.kept
    this.kept = undefined
    if (kept) (await kept.catch(() => undefined))?.close()
  }

  private failed(op: string, err: unknown): PnError {
    const text = (err as Error)?.message ?? String(err)
    if (/certificate|handshake|SSL|TLS|alert/i.test(text)) {
      return new PnError('PN_POOL_TLS', `${op} ${this.opts.what} ${this.location}: TLS to etcd failed (${firstLine(text)})`, {
        hint: this.opts.tls?.cert
          ? 'check that --etcd-ca is the CA that signed etcd\'s certificate and that etcd trusts the CA of --etcd-cert'
          : 'etcd may require a client certificate: pass --etcd-cert and --etcd-key (PN_ETCD_CERT, PN_ETCD_KEY), and --etcd-ca for its CA',
        details: {hosts: this.hosts},
        cause: err,
      })
    }
    return this.unreachable(op, text, err)
  }

  unreachable(op: string, cause: string, err?: unknown): PnError {
    return new PnError('PN_POOL_UNREACHABLE', `${op} ${this.opts.what} ${this.location}: etcd unreachable (${firstLine(cause)})`, {
      hint: `check that etcd answers on ${this.hosts.join(', ')}; nothing was changed unless a retry shows the change (allocations are idempotent per node)`,
      details: {hosts: this.hosts},
      ...(err === undefined ? {} : {cause: err}),
    })
  }
}

function firstLine(text: string): string {
  return text.split('\n')[0].replace(/[.\s]*Resolution note:.*$/, '')
}

type RawOp = import('etcd3').IRequestOp

function rawOp(op: EtcdOp): RawOp {
  if ('get' in op) return {request_range: {key: Buffer.from(op.get)}}
  if ('getPrefix' in op) {
    return {
      request_range: {
        key: Buffer.from(op.getPrefix),
        range_end: prefixEnd(op.getPrefix),
        keys_only: op.keysOnly ?? false,
        ...(op.minCreateRevision ? {min_create_revision: String(op.minCreateRevision)} : {}),
      },
    }
  }
  if ('put' in op) return {request_put: {key: Buffer.from(op.put), value: Buffer.from(op.value)}}
  if ('delete' in op) return {request_delete_range: {key: Buffer.from(op.delete)}}
  if ('txn' in op) return {request_txn: rawTxn(op.txn) as unknown as import('etcd3').ITxnRequest}
  return {request_delete_range: {key: Buffer.from(op.deletePrefix), range_end: prefixEnd(op.deletePrefix)}}
}

function rawTxn(t: EtcdTxnRequest) {
  return {
    compare: t.compare.map((c) => ({
      key: Buffer.from(c.key),
      target: c.target === 'create' ? 1 : 2, // CompareTarget.Create, .Mod
      result: 0, // CompareResult.Equal
      ...(c.target === 'create' ? {create_revision: String(c.equals)} : {mod_revision: String(c.equals)}),
    })),
    success: t.then.map(rawOp),
    failure: (t.otherwise ?? []).map(rawOp),
  }
}

/** A transaction's answer in pn's terms; nested answers carry no header of their own (etcd sends revision 0), so the top one's revision. */
function txnResult(r: import('etcd3').ITxnResponse, revision: number): EtcdTxnResult {
  const responses = r.responses ?? []
  return {
    succeeded: r.succeeded,
    revision,
    reads: responses.map((resp) =>
      (resp.response_range?.kvs ?? []).map((kv) => ({
        key: kv.key.toString('utf8'),
        value: kv.value?.toString('utf8') ?? '',
        createRevision: Number(kv.create_revision),
        modRevision: Number(kv.mod_revision),
      })),
    ),
    nested: responses.map((resp) => (resp.response_txn ? txnResult(resp.response_txn, revision) : undefined)),
  }
}

function kvClient(client: Etcd3): EtcdKvClient {
  return {
    async txn(compare, then, otherwise = []) {
      // The KV service's Txn, as etcd3's own builders call it (raw ops: ranges with keys_only, nested transactions).
      const r = await client.kv.txn(rawTxn({compare, then, otherwise}) as unknown as import('etcd3').ITxnRequest)
      return txnResult(r, Number(r.header.revision))
    },
  }
}

export interface EtcdStoreOptions<T> {
  /** The location as the user wrote it (for messages). */
  location: string
  /** The key under the location's prefix, e.g. `cluster-pool`. */
  name: string
  /** How to validate the stored JSON (the same spec as the file store's). */
  spec: JsonFileSpec<T>
  tls?: EtcdTlsFiles
  /** Deadline of one read, update or remove, connecting included. */
  timeoutMs?: number
  /** Compare-and-swap attempts before giving up on a hot key. */
  maxAttempts?: number
  /** One client for every operation until close(). */
  keepOpen?: boolean
}

/**
 * One JSON document under one key; `update` is optimistic: read it with its mod revision, run
 * the mutation, and write it back in a transaction that only commits if the revision is
 * unchanged (compare-and-swap); the loser re-reads and re-runs. Every writer conflicts with
 * every other, so it does not scale with writers: the cluster pool no longer uses it (its
 * per-key layout is src/ipam/pool-etcd.ts); the benchmark still measures it for comparison.
 */
export class EtcdStore<T> implements Store<T> {
  readonly location: string
  readonly key: string
  private readonly conn: EtcdConnection
  private readonly maxAttempts: number

  constructor(private readonly opts: EtcdStoreOptions<T>) {
    this.conn = new EtcdConnection({location: opts.location, what: opts.spec.what, tls: opts.tls, timeoutMs: opts.timeoutMs, keepOpen: opts.keepOpen})
    this.location = opts.location
    this.key = `${this.conn.prefix}/${opts.name}`
    this.maxAttempts = opts.maxAttempts ?? 200
  }

  read(): Promise<T | undefined> {
    return this.conn.run('read', async (kv) => {
      const found = (await kv.txn([], [{get: this.key}])).reads[0][0]
      return found ? this.decode(found.value) : undefined
    })
  }

  update<R>(mutate: Mutation<T, R>): Promise<R> {
    return this.conn.run('update', async (kv) => {
      for (let attempt = 1; ; attempt++) {
        const found = (await kv.txn([], [{get: this.key}])).reads[0][0]
        const current = found ? this.decode(found.value) : undefined
        const {next, result} = await mutate(current)
        if (next === undefined) return result
        // Commit only if nobody wrote the key since we read it (or it still does not exist).
        const guard = found ? {key: this.key, target: 'mod' as const, equals: found.modRevision} : {key: this.key, target: 'create' as const, equals: 0}
        const txn = await kv.txn([guard], [{put: this.key, value: JSON.stringify(next, null, 2) + '\n'}])
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
    return this.conn.run('remove', async (kv) => {
      const found = (await kv.txn([], [{get: this.key}])).reads[0].length > 0
      if (found) await kv.txn([], [{delete: this.key}])
      return found
    })
  }

  close(): Promise<void> {
    return this.conn.close()
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
}
