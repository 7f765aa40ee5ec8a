/**
 * The cluster pool on etcd, one key per fact, so that nodes allocating at the same time conflict
 * only when they pick the same block (one JSON document under one key made every writer retry
 * against every other). Under `<prefix>/pool/`:
 *
 *   schema                  layout version ("1"), written with the config by init
 *   v1/config               {createdAt, clusterCidrs: [{cidr, maskSize}]}, written once by init
 *   v1/cursor/<clusterCidr> cidrset's next candidate: a hint, written without compare
 *   v1/cidrs/<block>        the node holding the block; created only if absent
 *   v1/nodes/<name>         {cidrs, allocatedAt}; created only if absent (re-alloc is idempotent)
 *
 * An allocation reads config, cursors, the node's key and the taken blocks in one consistent
 * read, picks as over a file (first cluster CIDR that is not full, first free block from the
 * cursor), and commits in one transaction that creates the block keys and the node key only if
 * all are absent. If another node took a block first, the transaction's other branch says which
 * keys exist and which blocks were taken since the node's read (a range with min_create_revision);
 * the node marks them taken and moves on from there (no re-read), after the n-th conflict to a
 * block picked at random among the next 4^n (at most 64) free ones, so that racing nodes spread out
 * instead of colliding on the same next block again. The transaction also compares the schema
 * key's revision, so a pool re-created meanwhile (init --force) is never written into. A caller
 * that keeps its client open keeps this view between allocations and skips the read (see
 * tryAllocate). Release deletes the node and its blocks in one transaction guarded by the node
 * key's revision; it leaves the cursor alone.
 */
import {formatCidr, parseCidr, type Cidr, type Family} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {checkEtcdTls, EtcdConnection, type EtcdCompare, type EtcdKv, type EtcdKvClient, type EtcdOp, type EtcdTlsFiles} from '../state/etcd-store.js'
import {CidrSet} from './cidrset.js'
import {POOL_CORRUPT_HINT, poolExhausted, poolNotFound, type PoolNode, type PoolState, type PoolStore} from './pool.js'

/** The layout version this pn writes and reads (the schema key). */
export const POOL_LAYOUT_VERSION = 1

export interface EtcdPoolOptions {
  tls?: EtcdTlsFiles
  timeoutMs?: number
  /**
   * One client for every operation until close() (a long-lived caller: the benchmark; the CLI
   * opens one per command), and a view of the taken blocks kept between allocations.
   */
  keepOpen?: boolean
  /** Random source of the spread after a conflict (tests: deterministic). */
  random?: () => number
}

interface PoolConfig {
  createdAt: string
  clusterCidrs: {cidr: string; maskSize: number}[]
}

interface View {
  schemaRev: number
  sets: CidrSet[]
  seen: number
}

interface Snapshot {
  state?: PoolState
  schemaRev: number
  legacyRev: number
}

export class EtcdPool implements PoolStore {
  readonly location: string
  readonly warnings: string[]
  /** Allocation transactions and how many lost a block to another node (the benchmark reports them). */
  readonly stats = {commits: 0, conflicts: 0}
  private readonly conn: EtcdConnection
  private readonly random: () => number
  private readonly schemaKey: string
  private readonly legacyKey: string
  private readonly base: string
  private readonly keepView: boolean
  /** keepOpen only: the blocks taken as of revision `seen`, so that the next allocation reads only newer ones. */
  private view?: View
  /** How spread this caller's first pick is: conflicts met by its last allocation (0 for a new one). */
  private contention = 0

  constructor(location: string, opts: EtcdPoolOptions = {}) {
    const plain = checkEtcdTls(location, opts.tls)
    this.conn = new EtcdConnection({location, what: 'cluster pool', tls: opts.tls, timeoutMs: opts.timeoutMs, keepOpen: opts.keepOpen})
    this.location = location
    this.warnings = plain ? [plain] : []
    this.random = opts.random ?? Math.random
    this.keepView = opts.keepOpen ?? false
    this.schemaKey = `${this.conn.prefix}/pool/schema`
    this.legacyKey = `${this.conn.prefix}/cluster-pool`
    this.base = `${this.conn.prefix}/pool/v${POOL_LAYOUT_VERSION}/`
  }

  /** The keys this layout uses (docs and tests). */
  keyOf(kind: 'config' | 'cursor' | 'cidrs' | 'nodes', name = ''): string {
    return kind === 'config' ? `${this.base}config` : `${this.base}${kind}/${name}`
  }

  read(): Promise<PoolState | undefined> {
    return this.conn.run('read', async (kv) => (await this.snapshot(kv)).state)
  }

  init(state: PoolState, force: boolean, check: (current: PoolState | undefined) => void): Promise<PoolState | undefined> {
    const config: PoolConfig = {createdAt: state.createdAt, clusterCidrs: state.clusterCidrs.map((c) => ({cidr: c.cidr, maskSize: c.maskSize}))}
    return this.conn.run('init', async (kv) => {
      for (let attempt = 1; attempt <= 20; attempt++) {
        const snap = await this.snapshot(kv, {legacyOk: true})
        // A pool in the old layout is replaced only with --force (it is not migrated: see docs/IPAM.md).
        if (snap.legacyRev && !force) throw this.legacy('init')
        check(snap.state)
        const txn = await kv.txn(
          [
            {key: this.schemaKey, target: 'mod', equals: snap.schemaRev},
            {key: this.legacyKey, target: 'mod', equals: snap.legacyRev},
          ],
          [
            {deletePrefix: this.keyOf('cidrs')},
            {deletePrefix: this.keyOf('nodes')},
            {deletePrefix: this.keyOf('cursor')},
            ...(snap.legacyRev ? [{delete: this.legacyKey}] : []),
            {put: this.schemaKey, value: String(POOL_LAYOUT_VERSION)},
            {put: this.keyOf('config'), value: JSON.stringify(config)},
          ],
        )
        if (txn.succeeded) return snap.state
      }
      throw new PnError('PN_LOCK_TIMEOUT', `init cluster pool ${this.location}: the pool kept changing under init`, {hint: 'retry when no other init runs'})
    })
  }

  allocate(node: string, now: number): Promise<{changed: boolean; cidrs: string[]}> {
    return this.conn.run('allocate pod cidr in', async (kv) => {
      // A kept view may be stale only by releases (and init --force, which the transaction
      // compares); it is dropped before it could mislead: when the search wraps past the cursor
      // (released blocks are due again) or sees the pool full.
      for (let attempt = 0; attempt < 5; attempt++) {
        const done = await this.tryAllocate(kv, node, now, attempt === 0 ? this.view : undefined)
        if (done) return done
      }
      throw new PnError('PN_LOCK_TIMEOUT', `allocate pod cidr for node ${node} in ${this.location}: the pool was re-created under this allocation again and again`, {hint: 'retry when no pn pool init --force runs'})
    })
  }

  /**
   * One allocation: from a fresh read of the pool, or (a kept view) straight from the view, which
   * the transaction's other branch brings up to date. Undefined: redo from a fresh read.
   */
  private async tryAllocate(kv: EtcdKvClient, node: string, now: number, cached: View | undefined): Promise<{changed: boolean; cidrs: string[]} | undefined> {
    const nodeKey = this.keyOf('nodes', node)
    this.view = undefined
    let sets: CidrSet[]
    let schemaRev: number
    let seen: number
    if (cached) {
      ;({sets, schemaRev, seen} = cached)
    } else {
      const r = await kv.txn([], [
        {get: this.schemaKey},
        {get: this.keyOf('config')},
        {get: nodeKey},
        {getPrefix: this.keyOf('cursor')},
        {getPrefix: this.keyOf('cidrs'), keysOnly: true},
        {get: this.legacyKey},
      ])
      const [schema, config, have, cursors, taken, legacy] = r.reads
      this.checkSchema(schema[0], legacy[0])
      if (have[0]) return {changed: false, cidrs: this.decodeNode(have[0]).cidrs}
      sets = this.sets(this.decodeConfig(config[0]), cursors)
      for (const k of taken) this.occupy(sets, k.key.slice(this.keyOf('cidrs').length), k.key)
      schemaRev = schema[0].modRevision
      seen = r.revision
    }
    const families = ([4, 6] as const).filter((f) => sets.some((s) => s.cluster.family === f))
    const start = new Map(sets.map((s) => [s, s.nextCandidate]))
    let conflicts = 0
    for (;;) {
      let picks: Pick[]
      try {
        picks = families.map((f) => pick(sets, f, node, Math.min(4 ** (conflicts + this.contention), 64), this.random))
      } catch (err) {
        if (cached) return undefined // full in a view that may miss releases: look again
        throw err
      }
      if (cached && picks.some((p) => p.set.indexOf(p.block) < start.get(p.set)!)) return undefined // wrapped
      const cidrs = picks.map((p) => formatCidr(p.block))
      const value: Omit<PoolNode, 'name'> = {cidrs, allocatedAt: new Date(now).toISOString()}
      const txn = await kv.txn(
        [
          {key: this.schemaKey, target: 'mod', equals: schemaRev},
          {key: nodeKey, target: 'create', equals: 0},
          ...cidrs.map((c): EtcdCompare => ({key: this.keyOf('cidrs', c), target: 'create', equals: 0})),
        ],
        [
          ...cidrs.map((c): EtcdOp => ({put: this.keyOf('cidrs', c), value: node})),
          {put: nodeKey, value: JSON.stringify(value)},
          ...picks.map((p): EtcdOp => ({put: this.keyOf('cursor', formatCidr(p.set.cluster)), value: String(p.cursor)})),
        ],
        // Else: the schema, the node key, the picked blocks, and every block taken since our last read.
        [
          {get: this.schemaKey},
          {get: nodeKey},
          ...cidrs.map((c): EtcdOp => ({get: this.keyOf('cidrs', c)})),
          {getPrefix: this.keyOf('cidrs'), keysOnly: true, minCreateRevision: seen + 1},
        ],
      )
      if (txn.succeeded) {
        this.stats.commits++
        // Every block created up to `seen` is in `sets` (ours too): the next allocation starts from them.
        if (this.keepView) this.view = {schemaRev, sets, seen}
        // A caller that keeps allocating starts its next search as spread as this one ended (and
        // narrower again when it meets no one): a lone caller always takes the first free block.
        this.contention = conflicts > 0 ? Math.min(conflicts, 3) : Math.max(0, this.contention - 1)
        return {changed: true, cidrs}
      }
      const [[schema], [have], ...rest] = txn.reads
      // The pool was re-created (init --force) since this view or read: start again from a read.
      if (schema?.modRevision !== schemaRev) return undefined
      // The same node allocated meanwhile (another process for it): its CIDRs, unchanged.
      if (have) return {changed: false, cidrs: this.decodeNode(have).cidrs}
      conflicts++
      this.stats.conflicts++
      for (const k of rest[picks.length]) this.occupy(sets, k.key.slice(this.keyOf('cidrs').length), k.key)
      seen = txn.revision
      picks.forEach((p, i) => {
        if (rest[i].length > 0) {
          // Taken by another node: it stays marked; search again from the first block this
          // pick skipped (or the one after it).
          p.set.nextCandidate = p.firstSkipped ?? p.set.nextCandidate
        } else {
          // Free (the other family's block conflicted): try the same block again.
          p.set.release(p.block)
          p.set.nextCandidate = p.firstSkipped ?? p.set.indexOf(p.block)
        }
      })
    }
  }

  release(node: string): Promise<string[] | undefined> {
    const nodeKey = this.keyOf('nodes', node)
    this.view = undefined
    return this.conn.run('release pod cidr in', async (kv) => {
      for (let attempt = 1; attempt <= 20; attempt++) {
        const r = await kv.txn([], [{get: this.schemaKey}, {get: nodeKey}, {get: this.legacyKey}])
        this.checkSchema(r.reads[0][0], r.reads[2][0])
        const have = r.reads[1][0]
        if (!have) return undefined
        const {cidrs} = this.decodeNode(have)
        const txn = await kv.txn(
          [{key: nodeKey, target: 'mod', equals: have.modRevision}],
          [{delete: nodeKey}, ...cidrs.map((c): EtcdOp => ({delete: this.keyOf('cidrs', c)}))],
        )
        if (txn.succeeded) return cidrs
      }
      throw new PnError('PN_LOCK_TIMEOUT', `release pod cidr of ${node} in ${this.location}: its key kept changing`, {hint: 'retry'})
    })
  }

  close(): Promise<void> {
    return this.conn.close()
  }

  /** The whole pool, from one consistent read of its keys. */
  private async snapshot(kv: EtcdKvClient, opts: {legacyOk?: boolean} = {}): Promise<Snapshot> {
    const r = await kv.txn([], [{get: this.schemaKey}, {getPrefix: this.base}, {get: this.legacyKey}])
    const [[schema], all, [legacy]] = r.reads
    if (!opts.legacyOk || !legacy) this.checkSchema(schema, legacy, {missingOk: true})
    if (!schema) return {schemaRev: 0, legacyRev: legacy?.modRevision ?? 0}
    if (schema.value !== String(POOL_LAYOUT_VERSION)) this.checkSchema(schema, legacy)
    const rest = (kind: string) => all.filter((k) => k.key.startsWith(this.keyOf(kind as 'cidrs')))
    const config = this.decodeConfig(all.find((k) => k.key === this.keyOf('config')))
    const cursor = new Map(rest('cursor').map((k) => [k.key.slice(this.keyOf('cursor').length), Number(k.value)]))
    const nodes: PoolNode[] = rest('nodes').map((k) => ({name: k.key.slice(this.keyOf('nodes').length), ...this.decodeNode(k)}))
    const held = new Map(rest('cidrs').map((k) => [k.key.slice(this.keyOf('cidrs').length), k.value]))
    for (const n of nodes) {
      for (const c of n.cidrs) {
        if (held.get(c) !== n.name) throw this.corrupt(`node ${n.name}'s cidr ${c} has no key ${this.keyOf('cidrs', c)} naming it`, this.keyOf('nodes', n.name))
        held.delete(c)
      }
    }
    for (const [c, owner] of held) throw this.corrupt(`block ${c} is held by ${owner}, which lists no such cidr`, this.keyOf('cidrs', c))
    return {
      schemaRev: schema.modRevision,
      legacyRev: legacy?.modRevision ?? 0,
      state: {
        version: 1,
        createdAt: config.createdAt,
        clusterCidrs: config.clusterCidrs.map((c) => ({...c, nextCandidate: validCursor(cursor.get(c.cidr))})),
        nodes,
      },
    }
  }

  /** A pool of this layout is there; else PN_POOL_NOT_FOUND, or PN_POOL_LAYOUT for an old or newer one. */
  private checkSchema(schema: EtcdKv | undefined, legacy: EtcdKv | undefined, opts: {missingOk?: boolean} = {}): void {
    if (!schema) {
      if (legacy) throw this.legacy('open')
      if (opts.missingOk) return
      throw poolNotFound(this.location)
    }
    if (schema.value !== String(POOL_LAYOUT_VERSION)) {
      throw new PnError('PN_POOL_LAYOUT', `open cluster pool ${this.location}: layout version ${JSON.stringify(schema.value)} (key ${this.schemaKey}) is not one this pn knows (${POOL_LAYOUT_VERSION})`, {
        hint: 'use the pn that made the pool, or re-create it with pn pool init --force',
        details: {key: this.schemaKey},
      })
    }
  }

  private legacy(action: string): PnError {
    return new PnError('PN_POOL_LAYOUT', `${action} cluster pool ${this.location}: key ${this.legacyKey} holds a pool in the single-key layout of an earlier pn; this pn keeps one key per block and node under ${this.conn.prefix}/pool/`, {
      hint: `pools are made from scratch: note the old allocations (etcdctl get ${this.legacyKey}), then run pn pool init --force --cidr … (it deletes the old key) and pn pool alloc / pn node init on each node again`,
      details: {key: this.legacyKey},
    })
  }

  private corrupt(cause: string, key: string): PnError {
    return new PnError('PN_POOL_CORRUPT', `read cluster pool ${this.location} (key ${key}): ${cause}`, {hint: POOL_CORRUPT_HINT, details: {key}})
  }

  private decodeConfig(kv: EtcdKv | undefined): PoolConfig {
    const key = this.keyOf('config')
    if (!kv) throw this.corrupt('the schema key is there but the config is not', key)
    const c = parseJson(kv.value) as PoolConfig | undefined
    const ok = !!c && typeof c.createdAt === 'string' && Array.isArray(c.clusterCidrs) && c.clusterCidrs.length > 0 &&
      c.clusterCidrs.every((x) => x && typeof x.cidr === 'string' && Number.isInteger(x.maskSize))
    if (!ok) throw this.corrupt('unexpected content', key)
    return c
  }

  private decodeNode(kv: EtcdKv): Omit<PoolNode, 'name'> {
    const n = parseJson(kv.value) as Omit<PoolNode, 'name'> | undefined
    if (!n || !Array.isArray(n.cidrs) || !n.cidrs.every((c) => typeof c === 'string') || typeof n.allocatedAt !== 'string') throw this.corrupt('unexpected content', kv.key)
    return {cidrs: n.cidrs, allocatedAt: n.allocatedAt}
  }

  private sets(config: PoolConfig, cursors: EtcdKv[]): CidrSet[] {
    const cursor = new Map(cursors.map((k) => [k.key.slice(this.keyOf('cursor').length), Number(k.value)]))
    try {
      return config.clusterCidrs.map((c) => new CidrSet(parseCidr(c.cidr).cidr, c.maskSize, validCursor(cursor.get(c.cidr))))
    } catch (err) {
      throw this.corrupt(`bad cluster cidr (${(err as Error).message})`, this.keyOf('config'))
    }
  }

  private occupy(sets: CidrSet[], text: string, key: string): void {
    let block: Cidr
    try {
      block = parseCidr(text).cidr
    } catch {
      throw this.corrupt(`${text} is not a cidr`, key)
    }
    const set = sets.find((s) => s.indexOf(block) >= 0)
    if (!set) throw this.corrupt(`${text} is not a block of any cluster cidr`, key)
    set.occupy(block)
  }
}

function validCursor(n: number | undefined): number {
  return n !== undefined && Number.isInteger(n) && n >= 0 ? n : 0
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

interface Pick {
  set: CidrSet
  block: Cidr
  /** The cursor hint to write: the first block skipped by the spread, else the one after the pick. */
  cursor: number
  firstSkipped?: number
}

/**
 * The next block of one family, as cidrset does (first cluster CIDR that is not full, first free
 * block from its cursor), or at random among the first `window` free ones after a conflict.
 */
function pick(sets: CidrSet[], family: Family, node: string, window: number, random: () => number): Pick {
  const fam = sets.filter((s) => s.cluster.family === family)
  const set = fam.find((s) => !s.isFull())
  if (!set) throw poolExhausted(node, family, fam)
  const skip = Math.floor(random() * Math.min(window, set.free))
  const skipped: Cidr[] = []
  let block = set.allocateNext()!
  for (let i = 0; i < skip; i++) {
    skipped.push(block)
    block = set.allocateNext()!
  }
  for (const s of skipped) set.release(s)
  const firstSkipped = skipped.length > 0 ? set.indexOf(skipped[0]) : undefined
  return {set, block, cursor: firstSkipped ?? set.nextCandidate, ...(firstSkipped === undefined ? {} : {firstSkipped})}
}
