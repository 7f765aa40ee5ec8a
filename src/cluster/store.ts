/**
 * The cluster store: nodes, endpoints and services shared by every node of a cluster, in etcd
 * (`etcd://…`, `etcds://…`) or, for one machine, in a directory. One typed API over both
 * backends (kv.ts): register a node under a lease that a keep-alive renews (its keys go when
 * the holder dies), publish and delete endpoints under it, write the whole service table
 * atomically, report the revision an agent has applied, and follow the cluster (a consistent
 * read, then a watch from its revision; a compacted history is a full resync).
 *
 * Every write compares the schema key's revision, so nothing is written into a store whose
 * layout changed under it; a store with a newer schema is refused (PN_CLUSTER_SCHEMA).
 */
import {canonicalIp, tryParseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {checkService, frontendKey, type ServiceSpec} from '../service/model.js'
import {checkEtcdTls, type EtcdTlsFiles} from '../state/etcd-store.js'
import type {LockOptions} from '../state/files.js'
import type {ClusterKv, KvLease, KvWatch, KvWrite} from './kv.js'
import {DirKv} from './kv-dir.js'
import {EtcdKv} from './kv-etcd.js'
import {
  CLUSTER_SCHEMA_VERSION, ClusterKeys, encodeShard, NODE_REACH, SERVICE_SHARDS, servicesDigest, shardOf,
  type ClusterEndpoint, type ClusterNode, type NodeReach,
} from './layout.js'
import {clusterPoolLocation, parseClusterLocation, type ClusterLocation} from './location.js'
import {ClusterState, type StateChange} from './state.js'

export const DEFAULT_NODE_TTL_SECONDS = 10

export interface OpenClusterOptions {
  /** TLS files for an etcds:// store (--etcd-ca/--etcd-cert/--etcd-key, PN_ETCD_*). */
  etcdTls?: EtcdTlsFiles
  /** Deadline of one etcd operation. */
  timeoutMs?: number
  /** The directory backend's lock. */
  lock?: LockOptions
  /** The directory backend's clock (tests). */
  now?: () => number
  /** The directory backend's history, in revisions (tests). */
  history?: number
}

/** The store named by a location: etcd for etcd:// and etcds://, else a directory. */
export function openClusterStore(location: string, opts: OpenClusterOptions = {}): ClusterStore {
  const loc = parseClusterLocation(location)
  if (loc.kind === 'etcd') {
    const plain = checkClusterTls(location, opts.etcdTls)
      ? `cluster store over plain http: ${location} (anyone on the path can read and change the cluster's nodes, endpoints and services; use etcds:// with --etcd-ca, --etcd-cert and --etcd-key)`
      : undefined
    return new ClusterStore(new EtcdKv(location, {tls: opts.etcdTls, timeoutMs: opts.timeoutMs}), loc, plain ? [plain] : [])
  }
  if (opts.etcdTls && (opts.etcdTls.ca || opts.etcdTls.cert || opts.etcdTls.key)) {
    throw new PnError('PN_INVALID_ARGUMENT', `open cluster store ${location}: --etcd-ca/--etcd-cert/--etcd-key apply to an etcds:// store, not a directory`, {
      hint: 'drop the TLS files (PN_ETCD_CA, PN_ETCD_CERT, PN_ETCD_KEY), or point --cluster at etcds://HOST:PORT',
    })
  }
  return new ClusterStore(new DirKv(loc.dir, {lock: opts.lock, now: opts.now, history: opts.history}), loc, [])
}

/** The pool's TLS checks (etcd-store.ts), told in a cluster store's words. */
function checkClusterTls(location: string, tls?: EtcdTlsFiles): string | undefined {
  try {
    return checkEtcdTls(location, tls)
  } catch (err) {
    if (!(err instanceof PnError)) throw err
    throw new PnError(err.code, err.message.replace(/^open pool /, 'open cluster store '), {hint: err.hint, details: err.details})
  }
}

/** What a node publishes about itself. */
export interface NodeSpec {
  name: string
  nodeIps: string[]
  podCidrs: string[]
  reach: NodeReach
}

export interface RegisterOptions {
  ttlSeconds?: number
  /** The lease is gone (expired while the store was unreachable): the node's keys were removed. */
  onLost?: () => void
  /** A keep-alive failed (the store unreachable); the next one is tried on schedule. */
  onKeepAliveError?: (err: PnError) => void
}

/** A node registered under a lease, kept alive until close(). */
export interface NodeRegistration {
  readonly node: ClusterNode
  readonly leaseId: string
  readonly ttlSeconds: number
  /** True once the store dropped the lease. */
  readonly lost: boolean
  /** When the last keep-alive was answered (ms since the epoch). */
  readonly renewedAt: number
  /** Stop the keep-alive; `revoke` (default) deletes the node's keys now, else they expire with the TTL. */
  close(opts?: {revoke?: boolean}): Promise<void>
}

export interface InitClusterResult {
  location: string
  schema: number
  changed: boolean
  /** The pool of this cluster (`--pool` names the same one). */
  pool: string
}

export interface PutServicesResult {
  changed: boolean
  revision: number
  count: number
  digest: string
  /** Shards written or deleted. */
  shards: number
}

export interface FollowUpdate extends StateChange {
  revision: number
  /** The state was rebuilt from a fresh read (the watch's history was compacted). */
  resync: boolean
}

export interface FollowOptions {
  /** Resume from this state (its revision) instead of a fresh read. */
  from?: ClusterState
  onUpdate: (state: ClusterState, update: FollowUpdate) => void
  /** The watch failed; it is retried with backoff from the last revision applied. */
  onError?: (err: PnError) => void
  /** First retry delay after an error (doubles up to 10 s). */
  retryMs?: number
  /**
   * Watch only the desired state (nodes, endpoints, services): the agents' applied reports and
   * the schema key are not sent (state.applied keeps what the first read held). An agent
   * converges from these alone; with N agents every change makes N reports, and a watch of them
   * all would deliver N² events per change.
   */
  desiredOnly?: boolean
}

export interface ClusterFollower {
  readonly state: ClusterState
  close(): Promise<void>
}

const isIp = (s: string) => tryParseIp(s) !== undefined

export class ClusterStore {
  readonly location: string
  readonly keys: ClusterKeys
  private schemaRev?: number

  constructor(
    /** The key-value store; identities.ts, namespaces.ts and policies.ts write their keys through write() on it. */
    readonly kv: ClusterKv,
    readonly loc: ClusterLocation,
    readonly warnings: string[] = [],
  ) {
    this.location = loc.location
    this.keys = new ClusterKeys(loc.kind === 'etcd' ? loc.prefix : '')
  }

  /** The cluster's pool location (what `--pool` would name). */
  get poolLocation(): string {
    return clusterPoolLocation(this.loc)
  }

  /** Write the schema key; idempotent; refuses a store with another layout version. */
  async init(): Promise<InitClusterResult> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const {kvs} = await this.kv.range(this.keys.schema)
      const found = kvs.find((k) => k.key === this.keys.schema)
      const done = {location: this.location, schema: CLUSTER_SCHEMA_VERSION, pool: this.poolLocation}
      if (found) {
        this.checkSchema(found.value)
        this.schemaRev = found.modRevision
        return {...done, changed: false}
      }
      const r = await this.kv.txn([{key: this.keys.schema, modRevision: 0}], [{put: this.keys.schema, value: String(CLUSTER_SCHEMA_VERSION)}])
      if (r.succeeded) {
        this.schemaRev = r.revision
        return {...done, changed: true}
      }
    }
    throw new PnError('PN_LOCK_TIMEOUT', `init cluster store ${this.location}: the schema key kept changing`, {hint: 'retry when no other pn cluster init runs'})
  }

  /** Every key of the cluster, decoded, at one revision. */
  async snapshot(): Promise<ClusterState> {
    return (await this.snapshotWithDesired()).state
  }

  /** The snapshot and the newest mod revision among the desired state's keys (not the applied reports). */
  async snapshotWithDesired(): Promise<{state: ClusterState; desiredRevision: number}> {
    const {revision, kvs} = await this.kv.range(this.keys.base)
    const schema = kvs.find((k) => k.key === this.keys.schema)
    this.checkSchema(schema?.value)
    this.schemaRev = schema!.modRevision
    const applied = `${this.keys.v1}applied/`
    const desiredRevision = Math.max(0, ...kvs.filter((k) => k.key.startsWith(this.keys.v1) && !k.key.startsWith(applied)).map((k) => k.modRevision))
    return {state: ClusterState.fromEntries(this.keys, revision, kvs), desiredRevision}
  }

  /** Put the node's key under a new lease and keep the lease alive until close(). */
  async registerNode(spec: NodeSpec, opts: RegisterOptions = {}): Promise<NodeRegistration> {
    checkNodeSpec(spec)
    const ttlSeconds = opts.ttlSeconds ?? DEFAULT_NODE_TTL_SECONDS
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 2) {
      throw new PnError('PN_INVALID_ARGUMENT', `register node ${spec.name}: a lease TTL of ${ttlSeconds} s is too short`, {hint: 'give a TTL of at least 2 seconds (etcd rounds shorter ones up)'})
    }
    const lease = await this.kv.grantLease(ttlSeconds)
    const node: ClusterNode = {name: spec.name, nodeIps: spec.nodeIps, podCidrs: spec.podCidrs, reach: spec.reach, registeredAt: new Date().toISOString(), leaseId: lease.id}
    const {leaseId: _, ...value} = node
    await this.write(`register node ${spec.name} in`, [], [{put: this.keys.node(spec.name), value: JSON.stringify(value), lease: lease.id}])
    return new Registration(node, lease, opts)
  }

  /** Publish (create or replace) an endpoint under its node's lease. */
  async publishEndpoint(ep: ClusterEndpoint, reg: Pick<NodeRegistration, 'leaseId' | 'node'>): Promise<{revision: number}> {
    if (ep.node !== reg.node.name) {
      throw new PnError('PN_INVALID_ARGUMENT', `publish endpoint ${ep.ip}: it belongs to node ${ep.node}, the registration is node ${reg.node.name}'s`, {hint: 'publish an endpoint through its own node\'s registration'})
    }
    checkEndpoint(ep)
    const ip = canonicalIp(ep.ip)
    const r = await this.write(`publish endpoint ${ip} in`, [], [{put: this.keys.endpoint(ip), value: JSON.stringify({...ep, ip}), lease: reg.leaseId}])
    return {revision: r.revision}
  }

  /** Delete an endpoint if `node` still holds it (an IP reused by another node since is left alone). */
  async deleteEndpoint(ip: string, node: string): Promise<{deleted: boolean; revision: number}> {
    if (!isIp(ip)) throw new PnError('PN_INVALID_IP', `delete endpoint ${JSON.stringify(ip)}: not an IP address`, {hint: 'give the pod IP the endpoint was published with'})
    ip = canonicalIp(ip)
    const key = this.keys.endpoint(ip)
    for (let attempt = 0; attempt < 5; attempt++) {
      const {revision, kvs} = await this.kv.range(key)
      const found = kvs.find((k) => k.key === key)
      if (!found) return {deleted: false, revision}
      let holder: string | undefined
      try {
        holder = (JSON.parse(found.value) as {node?: string}).node
      } catch {
        holder = undefined
      }
      if (holder !== undefined && holder !== node) return {deleted: false, revision}
      const r = await this.write(`delete endpoint ${ip} from`, [{key, modRevision: found.modRevision}], [{delete: key}])
      if (r.succeeded) return {deleted: true, revision: r.revision}
    }
    throw new PnError('PN_LOCK_TIMEOUT', `delete endpoint ${ip} from cluster store ${this.location}: its key kept changing`, {hint: 'retry'})
  }

  /**
   * Make the cluster's services exactly `services`, atomically: one transaction writes the
   * shards that differ and the table key, guarded by the table key's revision as read, so two
   * writers at once end with one of the two tables (the loser re-reads and writes again).
   */
  async putServices(services: ServiceSpec[]): Promise<PutServicesResult> {
    const seen = new Set<string>()
    for (const s of services) {
      checkService(s)
      const k = frontendKey(s.frontend)
      if (seen.has(k)) throw new PnError('PN_SERVICE_CONFLICT', `write services to cluster store ${this.location}: frontend ${k} is listed twice`, {hint: 'merge the two entries into one'})
      seen.add(k)
    }
    const shards: ServiceSpec[][] = Array.from({length: SERVICE_SHARDS}, () => [])
    for (const s of services) shards[shardOf(s)].push(s)
    const want = new Map(shards.map((list, i) => [this.keys.shard(i), list.length > 0 ? encodeShard(list) : undefined]))
    const digest = servicesDigest(services)
    for (let attempt = 1; attempt <= 50; attempt++) {
      const {revision, kvs} = await this.kv.range(`${this.keys.v1}services`)
      const have = new Map(kvs.map((k) => [k.key, k]))
      const table = have.get(this.keys.table)
      const writes: KvWrite[] = []
      for (const [key, value] of want) {
        const cur = have.get(key)
        if (value === undefined && cur) writes.push({delete: key})
        else if (value !== undefined && cur?.value !== value) writes.push({put: key, value})
      }
      // Shards pn does not write (an unknown key under services/): removed too, the table is exactly `services`.
      for (const key of have.keys()) if (key !== this.keys.table && !want.has(key)) writes.push({delete: key})
      let tableDigest: string | undefined
      try {
        tableDigest = table ? (JSON.parse(table.value) as {digest?: string}).digest : undefined
      } catch {
        tableDigest = undefined
      }
      if (writes.length === 0 && tableDigest === digest) return {changed: false, revision, count: services.length, digest, shards: 0}
      const shardWrites = writes.length
      writes.push({put: this.keys.table, value: JSON.stringify({digest, count: services.length, writtenAt: new Date().toISOString()})})
      const r = await this.write(`write services to`, [{key: this.keys.table, modRevision: table?.modRevision ?? 0}], writes)
      if (r.succeeded) return {changed: true, revision: r.revision, count: services.length, digest, shards: shardWrites}
      await new Promise((res) => setTimeout(res, Math.random() * Math.min(100, 2 * attempt)))
    }
    throw new PnError('PN_LOCK_TIMEOUT', `write services to cluster store ${this.location}: lost 50 races in a row to other writers`, {hint: 'too many writers at once; retry'})
  }

  /** Record the store revision `node`'s agent has fully applied (under its lease). */
  async reportApplied(revision: number, reg: Pick<NodeRegistration, 'leaseId' | 'node'>): Promise<void> {
    await this.write(`report applied revision of ${reg.node.name} to`, [], [
      {put: this.keys.applied(reg.node.name), value: JSON.stringify({revision, at: new Date().toISOString()}), lease: reg.leaseId},
    ])
  }

  /** Raw changes under the cluster's keys from `fromRevision` (tests, tools); follow() is the typed way. */
  watch(fromRevision: number, handlers: Parameters<ClusterKv['watch']>[2]): KvWatch {
    return this.kv.watch(this.keys.base, fromRevision, handlers)
  }

  /**
   * Keep a ClusterState current: a consistent read (or `from`), then a watch from the next
   * revision. A compacted history rebuilds the state from a fresh read (`resync: true`); any other
   * watch failure is reported and the watch resumes, with backoff, after the last revision applied.
   */
  async follow(opts: FollowOptions): Promise<ClusterFollower> {
    let state = opts.from ?? (await this.snapshot())
    let watch: KvWatch | undefined
    let closed = false
    let delay = opts.retryMs ?? 500
    let timer: NodeJS.Timeout | undefined
    const all = (resync: boolean): FollowUpdate => ({nodes: true, endpoints: true, services: true, applied: true, policy: true, revision: state.revision, resync})
    const start = () => {
      if (closed) return
      watch = this.kv.watch(this.keys.base, state.revision + 1, {
        onEvents: (revision, events) => {
          if (closed) return
          delay = opts.retryMs ?? 500
          const change = state.applyEvents(revision, events)
          opts.onUpdate(state, {...change, revision, resync: false})
        },
        onCompacted: () => void resync(),
        onError: (err) => {
          opts.onError?.(err)
          retry(start)
        },
      }, opts.desiredOnly ? {startKey: this.keys.desiredStart} : {})
    }
    const retry = (fn: () => void) => {
      if (closed) return
      timer = setTimeout(fn, delay)
      delay = Math.min(delay * 2, 10_000)
    }
    const resync = async () => {
      if (closed) return
      try {
        state = await this.snapshot()
        if (closed) return
        opts.onUpdate(state, all(true))
        start()
      } catch (err) {
        opts.onError?.(err instanceof PnError ? err : new PnError('PN_INTERNAL', `resync cluster store ${this.location}: ${(err as Error).message}`))
        retry(() => void resync())
      }
    }
    start()
    return {
      get state() {
        return state
      },
      close: async () => {
        closed = true
        clearTimeout(timer)
        await watch?.close()
      },
    }
  }

  /** Drop history before `revision` (tests; an operator's etcdctl compact does the same). */
  compact(revision: number): Promise<void> {
    return this.kv.compact(revision)
  }

  close(): Promise<void> {
    return this.kv.close()
  }

  /** A write guarded by the schema key's revision (read once); a changed schema is re-checked. */
  async write(action: string, compares: {key: string; modRevision: number}[], writes: KvWrite[]): Promise<{succeeded: boolean; revision: number}> {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.schemaRev === undefined) await this.readSchema()
      const r = await this.kv.txn([{key: this.keys.schema, modRevision: this.schemaRev!}, ...compares], writes)
      if (r.succeeded) return r
      const before = this.schemaRev
      await this.readSchema()
      // The caller's own compare failed (the schema is unchanged): its answer. With no compare of
      // its own, only the schema's can fail: write again under the new revision.
      if (this.schemaRev === before && compares.length > 0) return r
      if (this.schemaRev === before) throw new PnError('PN_INTERNAL', `${action} cluster store ${this.location}: the write failed its schema compare with the schema unchanged`)
    }
    throw new PnError('PN_LOCK_TIMEOUT', `${action} cluster store ${this.location}: the schema key kept changing`, {hint: 'retry when no pn cluster init runs'})
  }

  private async readSchema(): Promise<void> {
    const {kvs} = await this.kv.range(this.keys.schema)
    const found = kvs.find((k) => k.key === this.keys.schema)
    this.checkSchema(found?.value)
    this.schemaRev = found!.modRevision
  }

  private checkSchema(value: string | undefined): void {
    if (value === undefined) {
      throw new PnError('PN_CLUSTER_NOT_FOUND', `open cluster store ${this.location}: no cluster there (key ${this.keys.schema} is absent)`, {
        hint: `create it with pn cluster init --cluster ${this.location}`,
        details: {key: this.keys.schema},
      })
    }
    if (value === String(CLUSTER_SCHEMA_VERSION)) return
    const newer = /^\d+$/.test(value) && Number(value) > CLUSTER_SCHEMA_VERSION
    throw new PnError('PN_CLUSTER_SCHEMA', `open cluster store ${this.location}: schema version ${JSON.stringify(value)} (key ${this.keys.schema}) is ${newer ? 'newer than' : 'not'} the one this pn knows (${CLUSTER_SCHEMA_VERSION})`, {
      hint: newer ? 'upgrade pn on this node to the version that wrote the store; this pn will not read or write it' : 'the key was not written by pn; inspect it',
      details: {key: this.keys.schema, schema: value, supported: CLUSTER_SCHEMA_VERSION},
    })
  }
}

/** A registration's keep-alive: every third of the TTL; a lease the store dropped is reported once. */
class Registration implements NodeRegistration {
  lost = false
  renewedAt = Date.now()
  private timer?: NodeJS.Timeout
  private stopped = false

  constructor(
    readonly node: ClusterNode,
    private readonly lease: KvLease,
    private readonly opts: RegisterOptions,
  ) {
    this.schedule()
  }

  get leaseId(): string {
    return this.lease.id
  }

  get ttlSeconds(): number {
    return this.lease.ttlSeconds
  }

  private schedule(): void {
    if (this.stopped || this.lost) return
    this.timer = setTimeout(() => void this.renew(), Math.max(500, (this.lease.ttlSeconds * 1000) / 3))
    this.timer.unref()
  }

  private async renew(): Promise<void> {
    try {
      const alive = await this.lease.keepAlive()
      if (this.stopped) return
      if (!alive) {
        this.lost = true
        this.opts.onLost?.()
        return
      }
      this.renewedAt = Date.now()
    } catch (err) {
      if (!this.stopped) this.opts.onKeepAliveError?.(err instanceof PnError ? err : new PnError('PN_INTERNAL', `keep lease ${this.lease.id} alive: ${(err as Error).message}`))
    }
    this.schedule()
  }

  async close(opts: {revoke?: boolean} = {}): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    if (opts.revoke ?? true) await this.lease.revoke()
  }
}

function checkNodeSpec(spec: NodeSpec): void {
  const bad = (cause: string, hint: string) => new PnError('PN_INVALID_ARGUMENT', `register node ${JSON.stringify(spec.name)}: ${cause}`, {hint})
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(spec.name)) throw bad('not a node name', 'a node name is a hostname: letters, digits, . - _')
  if (!NODE_REACH.includes(spec.reach)) throw bad(`reach ${JSON.stringify(spec.reach)} is not one of ${NODE_REACH.join(', ')}`, 'say how the node\'s pod CIDRs are reached: direct, bgp or tunnel')
  if (spec.nodeIps.length === 0 || !spec.nodeIps.every(isIp)) throw bad('needs at least one node IP', 'give the node\'s uplink address(es)')
}

function checkEndpoint(ep: ClusterEndpoint): void {
  if (!isIp(ep.ip) || ep.containerId === '') {
    throw new PnError('PN_INVALID_ARGUMENT', `publish endpoint ${JSON.stringify(ep.ip)}: needs a pod IP and a container id`, {hint: 'publish what CNI ADD returned: the pod IP and its container id'})
  }
}

/** Open the store at `location`, run `fn`, and close it (a command's one call). */
export async function withClusterStore<R>(location: string, opts: OpenClusterOptions, fn: (store: ClusterStore) => Promise<R>): Promise<R> {
  const store = openClusterStore(location, opts)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

/** `pn cluster init`: the schema key, once; the store's warnings (plain http) with the result. */
export function initCluster(location: string, opts: OpenClusterOptions = {}): Promise<InitClusterResult & {warnings?: string[]}> {
  return withClusterStore(location, opts, async (store) => ({...(await store.init()), ...(store.warnings.length ? {warnings: store.warnings} : {})}))
}
