/**
 * The cluster pool on etcd, one key per fact, so that nodes allocating at the same time conflict
 * only when they pick the same block (one JSON document under one key made every writer retry
 * against every other). Under `<prefix>/pool/`:
 *
 *   schema                  layout version ("1"), written with the config by init
 *   v1/config               {createdAt, clusterCidrs: [{cidr, maskSize}]}, written once by init
 *   v1/cursor/<clusterCidr> cidrset's next candidate (after the newest block): a hint, written without compare
 *   v1/cidrs/<block>        the node holding the block; created only if absent
 *   v1/nodes/<name>         {cidrs, allocatedAt}; created only if absent (re-alloc is idempotent)
 *
 * An allocation reads config, cursors, the node's key and the taken blocks in one consistent
 * read, then claims in one transaction that tries several candidate blocks in order, inside
 * etcd: an outer transaction checks that the pool is the one read (the schema key's revision, so
 * a pool re-created by init --force is never written into) and that the node has no key, then
 * one nested transaction per candidate creates its block key, the node key and the cursor hint if
 * the block key is absent, and else hands over to the next. A node that loses a block to another
 * moves on to the next candidate in the same round trip, without a re-read. The candidates are
 * cidrset's order (first cluster CIDR that is not full, free blocks from the cursor): on a
 * caller's first claim the first FIRST_CLAIM_DEPTH; after that CLAIM_DEPTH, the first ones when no
 * one else wrote during the caller's last round trip, else picked at random (in order) among the
 * first SPREAD_FACTOR x that many writes, so that racing nodes spread out instead of all trying
 * the same blocks. Only when every candidate is taken does it send another claim (the stats count
 * these as retries). A caller that keeps its client open keeps this view between allocations and
 * skips the read (see tryAllocate). Release deletes the node and its blocks in one transaction
 * guarded by the node key's revision; it leaves the cursor alone.
 */
import {formatCidr, parseCidr, type Cidr, type Family} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {checkEtcdTls, EtcdConnection, type EtcdCompare, type EtcdKv, type EtcdKvClient, type EtcdOp, type EtcdTlsFiles, type EtcdTxnRequest} from '../state/etcd-store.js'
import {CidrSet} from './cidrset.js'
import {POOL_CORRUPT_HINT, poolExhausted, poolNotFound, type PoolNode, type PoolState, type PoolStore} from './pool.js'

/** The layout version this pn writes and reads (the schema key). */
export const POOL_LAYOUT_VERSION = 1

/** Candidate blocks one claim transaction tries, in order, inside etcd (one nested transaction each). */
export const CLAIM_DEPTH = 8

/** The widest spread of the candidates: among the first this many free blocks from the cursor. */
export const MAX_SPREAD = 256

/** How many free blocks, per node that wrote during the last round trip, the candidates spread over. */
export const SPREAD_FACTOR = 3

/** etcd's default --max-txn-ops: the operation budget of one (nested) transaction. */
export const ETCD_MAX_TXN_OPS = 128

/**
 * Candidates of a caller's first claim, in order (contention not known yet): as many nodes as
 * this starting at once each get a block in their first round trip. Each level nests two
 * protobuf messages deeper, and the etcd3 client's protobufjs refuses a request nested more than
 * 100 deep: about 48 levels at most.
 */
export const FIRST_CLAIM_DEPTH = 32

export interface EtcdPoolOptions {
  tls?: EtcdTlsFiles
  timeoutMs?: number
  /**
   * One client for every operation until close() (a long-lived caller: the benchmark; the CLI
   * opens one per command), and a view of the taken blocks kept between allocations.
   */
  keepOpen?: boolean
  /** Random source of the spread under contention (tests: deterministic). */
  random?: () => number
}

interface PoolConfig {
  createdAt: string
  clusterCidrs: {cidr: string; maskSize: number}[]
}

interface View {
  schemaRev: number
  sets: CidrSet[]
  /** The store revision the view is as of: the read, or this caller's last transaction. */
  rev: number
}

interface Snapshot {
  state?: PoolState
  schemaRev: number
  legacyRev: number
}

export class EtcdPool implements PoolStore {
  readonly location: string
  readonly warnings: string[]
  /**
   * Allocations committed, transactions that lost every candidate to other nodes (each one more
   * round trip), and candidates found taken inside a transaction (no extra round trip). The
   * benchmark reports them.
   */
  readonly stats = {commits: 0, retries: 0, taken: 0}
  private readonly conn: EtcdConnection
  private readonly random: () => number
  private readonly schemaKey: string
  private readonly legacyKey: string
  private readonly base: string
  private readonly keepView: boolean
  /** keepOpen only: the blocks taken as of the caller's last transaction, so that the next allocation needs no read. */
  private view?: View
  /**
   * Writes by others during this caller's last round trip (store revisions it did not make): how
   * many nodes allocate at the same time, so how far to spread the next candidates (0: none;
   * undefined: no transaction yet).
   */
  private others?: number

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
      // A kept view misses others' blocks (the claim skips them inside etcd), releases and init
      // --force (which the claim compares); it is dropped before it could mislead: when its
      // candidates would go round past the last block (released blocks are due again) or it sees
      // the pool full.
      for (let attempt = 0; attempt < 5; attempt++) {
        const done = await this.tryAllocate(kv, node, now, attempt === 0 ? this.view : undefined)
        if (done) return done
      }
      throw new PnError('PN_LOCK_TIMEOUT', `allocate pod cidr for node ${node} in ${this.location}: the pool was re-created under this allocation again and again`, {hint: 'retry when no pn pool init --force runs'})
    })
  }

  /**
   * One allocation: from a fresh read of the pool, or (a kept view) straight from the view, which
   * each transaction's answer brings up to date along the candidates it tried. Undefined: redo
   * from a fresh read.
   */
  private async tryAllocate(kv: EtcdKvClient, node: string, now: number, cached: View | undefined): Promise<{changed: boolean; cidrs: string[]} | undefined> {
    const nodeKey = this.keyOf('nodes', node)
    this.view = undefined
    let sets: CidrSet[]
    let schemaRev: number
    let rev: number
    if (cached) {
      ;({sets, schemaRev, rev} = cached)
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
      rev = r.revision
    }
    const families = ([4, 6] as const).filter((f) => sets.some((s) => s.cluster.family === f))
    // etcd's operation budget for the whole nested transaction (see claim).
    const maxDepth = Math.floor((ETCD_MAX_TXN_OPS - families.length - 1) / (2 * families.length + 1))
    for (;;) {
      // Contention not known yet: a deep claim in cidrset's order. Else a shallow one, spread as
      // wide as the nodes that wrote during the last round trip (in order when there were none).
      const depth = Math.min(this.others === undefined ? FIRST_CLAIM_DEPTH : CLAIM_DEPTH, maxDepth)
      const window = this.others === undefined ? depth : Math.min(MAX_SPREAD, Math.max(depth, SPREAD_FACTOR * this.others))
      let levels: Pick[][]
      try {
        // A kept view does not go round past the last block: released blocks are due again
        // there, and the view does not know of releases elsewhere.
        levels = candidates(sets, families, node, window, depth, this.random, !cached)
      } catch (err) {
        if (cached) return undefined // full in a view that may miss releases: look again
        throw err
      }
      if (levels.length === 0) return undefined // a kept view at its end: read again (and wrap)
      const txn = await kv.txn(...this.claim(node, nodeKey, schemaRev, now, levels))
      if (!txn.succeeded) {
        const [[schema], [have]] = txn.reads
        // The same node allocated meanwhile (another process for it): its CIDRs, unchanged.
        if (have && schema?.modRevision === schemaRev) return {changed: false, cidrs: this.decodeNode(have).cidrs}
        // The pool was re-created (init --force) since this view or read: start again from a read.
        return undefined
      }
      const f = families.length
      const cursors = txn.reads.slice(0, f)
      // Walk down the levels that lost their blocks: those blocks are taken (with one family, the
      // level's only block; with two, the ones its reads found).
      const probes = f > 1 ? f : 0
      let r = txn.nested[f]!
      let level = 0
      while (!r.succeeded) {
        this.taken(sets, levels[level], probes ? r.reads : undefined)
        if (level === levels.length - 1) break
        r = r.nested[probes]!
        level++
      }
      if (r.succeeded) {
        const picks = levels[level]
        for (const p of picks) p.set.occupy(p.block)
        this.advance(picks, cursors)
        this.stats.commits++
        this.stats.taken += level
        this.others = Math.max(0, txn.revision - rev - 1)
        if (this.keepView) this.view = {schemaRev, sets, rev: txn.revision}
        return {changed: true, cidrs: picks.map((p) => formatCidr(p.block))}
      }
      // Every candidate was taken: one more round trip, from where the others got to.
      this.advance(levels[level], cursors, false)
      this.stats.retries++
      this.stats.taken += levels.length
      // As many nodes as wrote since the view, and at least twice as wide as this round.
      this.others = Math.max(txn.revision - rev, 2 * (this.others ?? 0), CLAIM_DEPTH)
      rev = txn.revision
    }
  }

  /**
   * The claim transaction. Outside: if the pool is the one read and the node has no key, read
   * the cursor hints (where others got to) and run the levels; else read the schema and the node.
   * Level i: if its blocks are free, create them and the node key and move the cursor hints past
   * them; else (two families: say which of them exist, and) run level i + 1.
   * etcd counts every level's largest list against one budget (--max-txn-ops, 128): f + 1 for
   * the outside and 2f + 1 a level for f families.
   */
  private claim(node: string, nodeKey: string, schemaRev: number, now: number, levels: Pick[][]): [EtcdCompare[], EtcdOp[], EtcdOp[]] {
    const cursorKeys = levels[0].map((p) => this.keyOf('cursor', formatCidr(p.set.cluster)))
    const level = (i: number): EtcdTxnRequest => {
      const picks = levels[i]
      const cidrs = picks.map((p) => formatCidr(p.block))
      const value: Omit<PoolNode, 'name'> = {cidrs, allocatedAt: new Date(now).toISOString()}
      return {
        compare: cidrs.map((c): EtcdCompare => ({key: this.keyOf('cidrs', c), target: 'create', equals: 0})),
        then: [
          ...cidrs.map((c): EtcdOp => ({put: this.keyOf('cidrs', c), value: node})),
          {put: nodeKey, value: JSON.stringify(value)},
          ...picks.map((p, j): EtcdOp => ({put: cursorKeys[j], value: String((p.index + 1) % p.set.maxCidrs)})),
        ],
        // One family: the level failed on its one block. Two: read which of them exist.
        otherwise: [...(cidrs.length > 1 ? cidrs.map((c): EtcdOp => ({get: this.keyOf('cidrs', c)})) : []), ...(i < levels.length - 1 ? [{txn: level(i + 1)}] : [])],
      }
    }
    return [
      [
        {key: this.schemaKey, target: 'mod', equals: schemaRev},
        {key: nodeKey, target: 'create', equals: 0},
      ],
      [...cursorKeys.map((k): EtcdOp => ({get: k})), {txn: level(0)}],
      [{get: this.schemaKey}, {get: nodeKey}],
    ]
  }

  /** Mark the blocks of a lost level that another node holds (reads: one per block; none: all of them). */
  private taken(sets: CidrSet[], picks: Pick[], reads: EtcdKv[][] | undefined): void {
    picks.forEach((p, j) => {
      if (!reads || reads[j]?.[0]) this.occupy(sets, formatCidr(p.block), this.keyOf('cidrs', formatCidr(p.block)))
    })
  }

  /**
   * Move each set's cursor past its pick (`own`) or leave it (a lost round), and on to the hint
   * (the cursor key as others left it) when that is ahead within half the set: others took the
   * blocks in between, as far as anyone knows; those still free come round again.
   */
  private advance(picks: Pick[], cursors: EtcdKv[][], own = true): void {
    picks.forEach((p, j) => {
      const set = p.set
      let next = own ? (p.index + 1) % set.maxCidrs : set.nextCandidate
      const hint = Number(cursors[j]?.[0]?.value)
      if (Number.isInteger(hint) && hint >= 0 && hint < set.maxCidrs) {
        const ahead = (hint - next + set.maxCidrs) % set.maxCidrs
        if (ahead > 0 && ahead < set.maxCidrs / 2) next = hint
      }
      set.nextCandidate = next
    })
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
  index: number
  block: Cidr
}

/**
 * Candidate levels of one claim, one pick per family each, in cidrset's order: in the first
 * cluster CIDR of the family that is not full, the free blocks from the cursor; the first
 * `depth` of them, or `depth` picked at random (order kept) among the first `window`.
 */
function candidates(sets: CidrSet[], families: readonly Family[], node: string, window: number, depth: number, random: () => number, wrap: boolean): Pick[][] {
  const perFamily = families.map((family) => {
    const fam = sets.filter((s) => s.cluster.family === family)
    const set = fam.find((s) => !s.isFull())
    if (!set) throw poolExhausted(node, family, fam)
    return sample(set.peekFree(window, {wrap}), depth, random).map((index): Pick => ({set, index, block: set.blockAt(index)}))
  })
  const n = Math.min(...perFamily.map((c) => c.length))
  return Array.from({length: n}, (_, i) => perFamily.map((c) => c[i]))
}

/** `k` of `items` at random, in their order (selection sampling); all of them when there are no more. */
function sample<T>(items: T[], k: number, random: () => number): T[] {
  if (items.length <= k) return items
  const out: T[] = []
  for (let i = 0; i < items.length && out.length < k; i++) {
    if (random() * (items.length - i) < k - out.length) out.push(items[i])
  }
  return out
}
