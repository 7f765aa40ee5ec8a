/**
 * Cluster-pool IPAM (the operator's job): carve one pod CIDR per family and node out of the
 * cluster CIDRs, with Cilium's cluster-pool semantics: cluster CIDRs are used in the order
 * given (the first that is not full), and inside one, blocks go round-robin from a cursor
 * that release does not rewind (k8s cidrset). The pool file keeps the node list and each
 * cluster CIDR's cursor; the bitmaps are derived on load.
 */
import path from 'node:path'
import {cidrsOverlap, formatCidr, normalizeCidr, parseCidr, type Cidr, type Family} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import type {JsonFileSpec, LockOptions} from '../state/files.js'
import {FileStore, type Store} from '../state/store.js'
import {CidrSet, checkMaskSize} from './cidrset.js'
import {EtcdStore, isEtcdUrl, type EtcdTlsFiles} from '../state/etcd-store.js'
import {EtcdPool} from './pool-etcd.js'

export interface PoolClusterCidr {
  cidr: string
  maskSize: number
  /** k8s cidrset's nextCandidate: where the next search starts. */
  nextCandidate: number
}

export interface PoolNode {
  name: string
  cidrs: string[]
  allocatedAt: string
}

/** cluster-pool.json */
export interface PoolState {
  version: 1
  createdAt: string
  clusterCidrs: PoolClusterCidr[]
  nodes: PoolNode[]
}

/**
 * Where a pool lives, as the pool operations need it. A file (or MemoryStore) holds the whole
 * pool as one document (DocumentPool: read-modify-write under the file lock); etcd keeps one
 * key per block and node (EtcdPool, src/ipam/pool-etcd.ts).
 */
export interface PoolStore {
  readonly location: string
  /** About the location itself (a pool over plain http). */
  readonly warnings: string[]
  read(): Promise<PoolState | undefined>
  /** Write a new pool; `check` sees the current one (or none) first and throws to refuse. */
  init(state: PoolState, force: boolean, check: (current: PoolState | undefined) => void): Promise<PoolState | undefined>
  allocate(node: string, now: number): Promise<{changed: boolean; cidrs: string[]}>
  /** The node's CIDRs, now free; undefined when it held none. */
  release(node: string): Promise<string[] | undefined>
}

/** A pool location (a file path or etcd URL), a document store (tests: MemoryStore), or an open pool. */
export type PoolRef = string | Store<PoolState> | PoolStore

export const POOL_FILE = 'cluster-pool.json'

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//

/** True for a pool location kept in etcd (`etcd://` or `etcds://HOST:PORT[,…][/PREFIX]`) rather than a file. */
export function isEtcdLocation(location: string): boolean {
  return isEtcdUrl(location)
}

/**
 * Where the pool lives: `--pool` (the CLI maps PN_POOL onto it) if given, else
 * `<state-dir>/cluster-pool.json`. A location is a file path; other schemes (`etcd://…`)
 * are opened by openPoolStore and pass through unchanged.
 */
export function resolvePoolLocation(stateDir: string, flag?: string): string {
  if (!flag) return path.join(stateDir, POOL_FILE)
  return SCHEME.test(flag) ? flag : path.resolve(flag)
}

export interface OpenPoolOptions extends LockOptions {
  /** TLS files for an etcds:// location (--etcd-ca/--etcd-cert/--etcd-key, PN_ETCD_*). */
  etcdTls?: EtcdTlsFiles
}

/**
 * The pool behind a location: the one place that knows which backend a location names.
 * etcd://… (plain) and etcds://… (TLS) are an EtcdPool (per-key transactions; the lock options
 * do not apply, there is no lock file); a path is the pool file.
 */
export function openPoolStore(location: string, opts: OpenPoolOptions = {}): PoolStore {
  const {etcdTls, ...lock} = opts
  if (isEtcdLocation(location)) return new EtcdPool(location, {tls: etcdTls})
  if (SCHEME.test(location)) {
    throw new PnError('PN_INVALID_ARGUMENT', `open pool ${location}: unsupported pool location scheme`, {
      hint: 'use a file path, etcd://HOST:PORT[,HOST:PORT…][/PREFIX] or etcds://… (TLS) for --pool',
    })
  }
  if (etcdTls && (etcdTls.ca || etcdTls.cert || etcdTls.key)) {
    throw new PnError('PN_INVALID_ARGUMENT', `open pool ${location}: --etcd-ca/--etcd-cert/--etcd-key apply to an etcds:// pool, not a file`, {
      hint: 'drop the TLS files (PN_ETCD_CA, PN_ETCD_CERT, PN_ETCD_KEY), or point --pool at etcds://HOST:PORT',
    })
  }
  return new DocumentPool(new FileStore(location, spec, lock))
}

const spec: JsonFileSpec<PoolState> = {
  what: 'pool file',
  corruptCode: 'PN_POOL_CORRUPT',
  validate: (v: unknown): v is PoolState => {
    const s = v as PoolState
    return (
      !!s && s.version === 1 && Array.isArray(s.clusterCidrs) && Array.isArray(s.nodes) &&
      s.clusterCidrs.every((c) => c && typeof c.cidr === 'string' && Number.isInteger(c.maskSize) && Number.isInteger(c.nextCandidate)) &&
      s.nodes.every((n) => n && typeof n.name === 'string' && Array.isArray(n.cidrs) && n.cidrs.every((c) => typeof c === 'string'))
    )
  },
  corruptHint: 'pn never overwrites a damaged pool file (not even with init --force); inspect it, or move it away and run pn pool init',
}

export const POOL_CORRUPT_HINT = spec.corruptHint!

function storeOf(ref: PoolRef): PoolStore {
  if (typeof ref === 'string') return openPoolStore(ref)
  return 'allocate' in ref ? ref : new DocumentPool(ref)
}

const NODE_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/

export function checkNodeName(node: string): string {
  if (!NODE_RE.test(node ?? '')) {
    throw new PnError('PN_INVALID_ARGUMENT', `check node name ${JSON.stringify(node)}: use letters, digits, '.', '-' or '_' (1-253 chars, alphanumeric at both ends)`, {
      hint: 'node names are usually hostnames, e.g. node-1',
    })
  }
  return node
}

/** PN_POOL_EXHAUSTED: every cluster CIDR of the family is full. */
export function poolExhausted(node: string, family: Family, sets: CidrSet[]): PnError {
  return new PnError('PN_POOL_EXHAUSTED', `allocate pod cidr for node ${node}: every IPv${family} cluster cidr is full (${sets.map((s) => `${formatCidr(s.cluster)}: ${s.used}/${s.maxCidrs}`).join(', ')})`, {
    hint: 'release nodes that are gone (pn pool release NODE), or re-init the pool with more cluster CIDRs',
    details: {family},
  })
}

/** The pool in memory: one CidrSet per cluster CIDR (in order) and the node table. */
export class ClusterPool {
  readonly sets: CidrSet[]
  readonly nodes = new Map<string, PoolNode>()
  private readonly createdAt: string

  constructor(state: PoolState, source = 'pool file') {
    const corrupt = (cause: string) =>
      new PnError('PN_POOL_CORRUPT', `read ${source}: ${cause}`, {hint: spec.corruptHint, details: {file: source}})
    this.createdAt = state.createdAt
    try {
      this.sets = state.clusterCidrs.map((c) => new CidrSet(parseCidr(c.cidr).cidr, c.maskSize, c.nextCandidate))
    } catch (err) {
      throw corrupt(`bad cluster cidr (${(err as Error).message})`)
    }
    for (const n of state.nodes) {
      if (this.nodes.has(n.name)) throw corrupt(`node ${n.name} appears twice`)
      for (const text of n.cidrs) {
        let block: Cidr
        try {
          block = parseCidr(text).cidr
        } catch {
          throw corrupt(`node ${n.name} has an invalid cidr ${text}`)
        }
        const set = this.sets.find((s) => s.indexOf(block) >= 0)
        if (!set) throw corrupt(`node ${n.name}'s cidr ${text} is not a block of any cluster cidr`)
        if (!set.occupy(block)) throw corrupt(`cidr ${text} is allocated twice`)
      }
      this.nodes.set(n.name, {name: n.name, cidrs: [...n.cidrs], allocatedAt: n.allocatedAt})
    }
  }

  /** Families in the pool, IPv4 first. */
  families(): Family[] {
    return ([4, 6] as const).filter((f) => this.sets.some((s) => s.cluster.family === f))
  }

  allocate(node: string, now = Date.now()): {changed: boolean; cidrs: string[]} {
    const have = this.nodes.get(node)
    if (have) return {changed: false, cidrs: have.cidrs}
    const cidrs: string[] = []
    for (const family of this.families()) {
      const sets = this.sets.filter((s) => s.cluster.family === family)
      const set = sets.find((s) => !s.isFull())
      const block = set?.allocateNext()
      if (!block) throw poolExhausted(node, family, sets)
      cidrs.push(formatCidr(block))
    }
    this.nodes.set(node, {name: node, cidrs, allocatedAt: new Date(now).toISOString()})
    return {changed: true, cidrs}
  }

  release(node: string): string[] | undefined {
    const have = this.nodes.get(node)
    if (!have) return undefined
    for (const text of have.cidrs) {
      const block = parseCidr(text).cidr
      this.sets.find((s) => s.indexOf(block) >= 0)?.release(block)
    }
    this.nodes.delete(node)
    return have.cidrs
  }

  toState(): PoolState {
    return {
      version: 1,
      createdAt: this.createdAt,
      clusterCidrs: this.sets.map((s) => ({cidr: formatCidr(s.cluster), maskSize: s.maskSize, nextCandidate: s.nextCandidate})),
      nodes: [...this.nodes.values()],
    }
  }
}

export interface InitPoolOptions {
  cidrs: string[]
  /** Node mask for IPv4 cluster CIDRs. */
  maskSize?: number
  /** Node mask for IPv6 cluster CIDRs. */
  maskSizeV6?: number
  /** Replace an existing pool (forgets every node's allocation). */
  force?: boolean
  now?: () => number
}

export interface PoolCidrStatus {
  cidr: string
  family: Family
  maskSize: number
  capacity: number
  used: number
  free: number
  nextCandidate: number
}

export interface InitPoolResult {
  pool: string
  replaced: boolean
  clusterCidrs: PoolCidrStatus[]
  warnings?: string[]
}

function status(s: CidrSet): PoolCidrStatus {
  return {
    cidr: formatCidr(s.cluster),
    family: s.cluster.family,
    maskSize: s.maskSize,
    capacity: s.maxCidrs,
    used: s.used,
    free: s.free,
    nextCandidate: s.nextCandidate,
  }
}

/** Create a pool; PN_POOL_EXISTS when there is one, unless `force`. */
export async function initPool(ref: PoolRef, opts: InitPoolOptions): Promise<InitPoolResult> {
  if (!opts.cidrs || opts.cidrs.length === 0) {
    throw new PnError('PN_INVALID_ARGUMENT', 'init pool: no cluster cidr given', {hint: 'pass --cidr CIDR (repeatable)'})
  }
  const warnings: string[] = []
  const parsed: Cidr[] = []
  for (const text of opts.cidrs) {
    const n = normalizeCidr(text, 'cluster cidr')
    if (n.warning) warnings.push(n.warning)
    const clash = parsed.find((p) => cidrsOverlap(p, n.cidr))
    if (clash) {
      throw new PnError('PN_CIDR_OVERLAP', `init pool: cluster cidr ${n.text} overlaps ${formatCidr(clash)}`, {
        hint: 'give non-overlapping cluster CIDRs',
        details: {cidr: n.text, overlaps: formatCidr(clash)},
      })
    }
    parsed.push(n.cidr)
  }
  const maskFor = (c: Cidr): number => {
    const m = c.family === 4 ? opts.maskSize : opts.maskSizeV6
    if (m === undefined) {
      throw new PnError('PN_INVALID_MASK_SIZE', `init pool: no mask size for IPv${c.family} cluster cidr ${formatCidr(c)}`, {
        hint: c.family === 4 ? 'pass --mask-size N (e.g. 24)' : 'pass --mask-size-v6 N (e.g. 120)',
      })
    }
    checkMaskSize(c, m)
    return m
  }
  const clusterCidrs = parsed.map((c) => ({cidr: formatCidr(c), maskSize: maskFor(c), nextCandidate: 0}))
  if (opts.maskSizeV6 !== undefined && !parsed.some((c) => c.family === 6)) warnings.push('--mask-size-v6 ignored: no IPv6 cluster cidr')
  if (opts.maskSize !== undefined && !parsed.some((c) => c.family === 4)) warnings.push('--mask-size ignored: no IPv4 cluster cidr')

  const store = storeOf(ref)
  const state: PoolState = {version: 1, createdAt: new Date((opts.now ?? Date.now)()).toISOString(), clusterCidrs, nodes: []}
  const pool = new ClusterPool(state, store.location)
  const current = await store.init(pool.toState(), Boolean(opts.force), (current) => {
    if (current && !opts.force) {
      throw new PnError('PN_POOL_EXISTS', `init pool ${store.location}: a pool already exists (${current.clusterCidrs.map((c) => c.cidr).join(', ')}, ${current.nodes.length} node(s))`, {
        hint: 'use it as it is, or pass --force to replace it (forgets every node allocation)',
        details: {pool: store.location},
      })
    }
  })
  if (current && current.nodes.length > 0) warnings.push(`replaced a pool holding ${current.nodes.length} node allocation(s)`)
  warnings.push(...store.warnings)
  return {
    pool: store.location,
    replaced: current !== undefined,
    clusterCidrs: pool.sets.map(status),
    ...(warnings.length ? {warnings} : {}),
  }
}

export function poolNotFound(location: string): PnError {
  return new PnError('PN_POOL_NOT_FOUND', `read pool file ${location}: no pool there`, {
    hint: 'create it with pn pool init --cidr CIDR --mask-size N, or point --pool / PN_POOL at the shared pool file',
    details: {pool: location},
  })
}

async function openPool(store: PoolStore): Promise<ClusterPool> {
  const s = await store.read()
  if (!s) throw poolNotFound(store.location)
  return new ClusterPool(s, store.location)
}

/** A pool kept as one document (a file, MemoryStore): each change a locked read-modify-write. */
export class DocumentPool implements PoolStore {
  readonly warnings: string[] = []

  constructor(readonly store: Store<PoolState>) {}

  get location(): string {
    return this.store.location
  }

  read(): Promise<PoolState | undefined> {
    return this.store.read()
  }

  init(state: PoolState, _force: boolean, check: (current: PoolState | undefined) => void): Promise<PoolState | undefined> {
    return this.store.update((current) => {
      check(current)
      return {next: state, result: current}
    })
  }

  allocate(node: string, now: number): Promise<{changed: boolean; cidrs: string[]}> {
    return this.mutate((p) => {
      const r = p.allocate(node, now)
      return {changed: r.changed, result: r}
    })
  }

  release(node: string): Promise<string[] | undefined> {
    return this.mutate((p) => {
      const released = p.release(node)
      return {changed: released !== undefined, result: released}
    })
  }

  /** Locked read-modify-write of an existing pool; a missing one is never created here. */
  private async mutate<R>(fn: (p: ClusterPool) => {changed: boolean; result: R}): Promise<R> {
    await openPool(this) // fail fast (missing/corrupt) before taking the lock
    return this.store.update((current) => {
      if (!current) throw poolNotFound(this.location)
      const pool = new ClusterPool(current, this.location)
      const {changed, result} = fn(pool)
      return {next: changed ? pool.toState() : undefined, result}
    })
  }
}

export interface AllocatePodCidrsResult {
  changed: boolean
  node: string
  cidrs: string[]
  pool: string
  warnings?: string[]
}

/** The node's pod CIDRs (one per family in the pool); the same ones again for a known node. */
export async function allocatePodCidrs(ref: PoolRef, node: string, now: () => number = Date.now): Promise<AllocatePodCidrsResult> {
  checkNodeName(node)
  const store = storeOf(ref)
  const r = await store.allocate(node, now())
  return {changed: r.changed, node, cidrs: r.cidrs, pool: store.location, ...(store.warnings.length ? {warnings: [...store.warnings]} : {})}
}

export interface ReleasePodCidrsResult {
  changed: boolean
  node: string
  released: string[]
  pool: string
  warnings?: string[]
}

/** Give the node's pod CIDRs back; a node without any is a no-op (changed:false). */
export async function releasePodCidrs(ref: PoolRef, node: string): Promise<ReleasePodCidrsResult> {
  checkNodeName(node)
  const store = storeOf(ref)
  const released = await store.release(node)
  const warnings = [...(released ? [] : [`node ${node} holds no pod CIDR in ${store.location}`]), ...store.warnings]
  return {changed: released !== undefined, node, released: released ?? [], pool: store.location, ...(warnings.length ? {warnings} : {})}
}

export interface ListPoolResult {
  pool: string
  clusterCidrs: PoolCidrStatus[]
  nodes: PoolNode[]
  warnings?: string[]
}

export async function listPool(ref: PoolRef): Promise<ListPoolResult> {
  const store = storeOf(ref)
  const p = await openPool(store)
  return {
    pool: store.location,
    clusterCidrs: p.sets.map(status),
    nodes: [...p.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
    ...(store.warnings.length ? {warnings: [...store.warnings]} : {}),
  }
}

export interface ShowPoolNodeResult extends PoolNode {
  pool: string
  warnings?: string[]
}

/** One node's allocation; PN_NODE_UNKNOWN when the pool has none for it. */
export async function showPoolNode(ref: PoolRef, node: string): Promise<ShowPoolNodeResult> {
  checkNodeName(node)
  const store = storeOf(ref)
  const p = await openPool(store)
  const n = p.nodes.get(node)
  if (!n) {
    throw new PnError('PN_NODE_UNKNOWN', `show node ${node}: no pod CIDR allocated to it in ${store.location}`, {
      hint: `allocate one with pn pool alloc ${node}; see pn pool list`,
      details: {node, pool: store.location},
    })
  }
  return {...n, pool: store.location, ...(store.warnings.length ? {warnings: [...store.warnings]} : {})}
}

/**
 * The single-key etcd layout of earlier pn (the whole pool as one JSON value, compare-and-swap),
 * for the benchmark's comparison only: openPoolStore never opens it.
 */
export function singleKeyEtcdPool(location: string, opts: {tls?: EtcdTlsFiles; keepOpen?: boolean} = {}): DocumentPool & {close(): Promise<void>} {
  const store = new EtcdStore<PoolState>({location, name: 'cluster-pool', spec: {...spec, what: 'cluster pool'}, ...opts})
  return Object.assign(new DocumentPool(store), {close: () => store.close()})
}
