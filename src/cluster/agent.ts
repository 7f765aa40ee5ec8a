/**
 * The agent's cluster side (`pn agent start --cluster …`): it registers the node under a lease,
 * publishes the node's endpoints (a queue: CNI ADD and DEL never wait on the store), follows the
 * store, and programs the node through the typed kernel interface from convergeNode's ops
 * (remote endpoints into pn_ipcache, with --auto-direct-routes routes to the peers' pod CIDRs)
 * and the service table through the same writer as `pn service apply`; then reports the store
 * revision it has fully applied.
 *
 * Nothing here blocks the agent: the store may be unreachable at start or at any time after.
 * Each store call that fails puts the agent in `retrying` (since when, why) and is retried with
 * backoff (0.5 s doubling to 10 s); the first one that works puts it back in `connected`. While
 * retrying the datapath is left as it is.
 */
import os from 'node:os'
import {canonicalIp} from '../cidr/cidr.js'
import {mapPath, pathExists} from '../datapath/bpf/bpffs.js'
import {POLICY_EP_MAP, writeEndpointIdentity, writeNodePolicy} from '../datapath/bpf/policy.js'
import {getEndpoint, listEndpoints, saveEndpoint, type EndpointRecord} from '../endpoint/store.js'
import {PnError, toPnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import type {KernelBackend} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'
import type {KernelResult} from '../kernel/ops.js'
import {requireNodeContext, type NodeContext} from '../node/context.js'
import {withAttachmentLock} from '../node/lock.js'
import {changeServices} from '../service/apply.js'
import type {ServiceSpec} from '../service/model.js'
import type {NodePolicy} from '../policy/types.js'
import {appliedFromKernel, convergeNode, serviceTableToApply, type ConvergeParts, type ConvergeSelf, type NodeApplied} from './converge.js'
import {collectIdentities, identityForPod} from './identities.js'
import type {ClusterEndpoint, NodeReach} from './layout.js'
import {nodePolicyFromCluster, type LocalEndpoint} from './policies.js'
import {PublicationQueue, type Publication} from './publish.js'
import type {ClusterState} from './state.js'
import {openClusterStore, type ClusterFollower, type ClusterStore, type NodeRegistration, type OpenClusterOptions} from './store.js'

export interface ClusterAgentOptions {
  store: ClusterStore
  stateDir: string
  node: NodeContext
  kernel: KernelBackend
  /** Apply the cluster's service table to the node (the `pn service apply` writer). */
  applyServices: (services: ServiceSpec[]) => Promise<void>
  autoDirectRoutes?: boolean
  /** How the other nodes reach this one's pod CIDRs (default: tunnel for a node in tunnel mode, else direct). */
  reach?: NodeReach
  /** The node's addresses (default: the uplink's global addresses). */
  nodeIps?: string[]
  ttlSeconds?: number
  log?: (msg: string) => void
  /** First retry delay (doubles up to maxRetryMs). */
  retryMs?: number
  maxRetryMs?: number
  /** Longest wait for each step of stop() (default 2 s). */
  stopStepMs?: number
  /**
   * How often the node's endpoint records are compared with what the store lists for the node
   * (default 30 s): CNI calls that took the standalone path (no agent, or one stopping) are
   * published, or withdrawn, within this time.
   */
  localResyncMs?: number
  /**
   * How often unused identities are collected (default 60 s). One agent does it: the one whose
   * node name sorts first among the registered nodes (the collector compares revisions, so two
   * at once after a node change are harmless, only wasted reads).
   */
  identityGcMs?: number
  /** How long an identity no endpoint uses is kept (default identities.ts IDENTITY_GRACE_MS). */
  identityGraceMs?: number
}

export type ClusterAgentStatus = {
  location: string
  node: string
  store: 'connected' | 'retrying'
  /** When the store last changed between connected and retrying (ISO). */
  since: string
  /** Why it is retrying. */
  error?: string
  registered: boolean
  leaseId?: string
  /** The store revision the node has fully applied (null until the first one). */
  appliedRevision: number | null
  /** The store revision the agent has seen. */
  seenRevision: number | null
  /** Endpoint publications waiting for the store. */
  queued: number
  published: number
  autoDirectRoutes: boolean
  /** Counts of what convergence has done since start (kernel changes). */
  converged: {ipcache: number; routes: number; serviceTables: number; policyOps: number}
  /** How many times the ipcache and the peer routes were diffed against the store (routes: only when nodes changed). */
  diffs: {ipcache: number; routes: number}
  /** Why the node's policy could not be written, until it is. */
  policyError?: string
  /** Why the node refused the cluster's service table, until it takes one. */
  servicesError?: string
}

export interface StartClusterAgentOptions extends Omit<ClusterAgentOptions, 'store' | 'node' | 'kernel' | 'applyServices'> {
  location: string
  store?: OpenClusterOptions
  runner: Runner
}

/**
 * `pn agent start --cluster`: open the store and start the cluster side for the node of
 * `stateDir` (which must be initialised: the node's name, uplink and pod CIDRs come from it).
 */
export async function startClusterAgent(opts: StartClusterAgentOptions): Promise<ClusterAgent> {
  const node = await requireNodeContext(opts.stateDir)
  const store = openClusterStore(opts.location, opts.store ?? {})
  for (const w of store.warnings) opts.log?.(`warning: ${w}`)
  const {location: _l, store: _s, runner, ...rest} = opts
  const agent = new ClusterAgent({
    ...rest,
    store,
    node,
    kernel: kernelFor(runner),
    applyServices: async (services) => {
      await changeServices(opts.stateDir, {kind: 'replace', services})
    },
  })
  agent.start()
  return agent
}

/** The uplink's global addresses (the agent runs in the node's netns). */
export function uplinkAddresses(uplink: string): string[] {
  return (os.networkInterfaces()[uplink] ?? []).filter((a) => !a.internal && !(a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80'))).map((a) => canonicalIp(a.address))
}

/** What the store holds for a local endpoint record: one entry per pod IP. */
export function endpointsOf(rec: EndpointRecord, node: string): ClusterEndpoint[] {
  return rec.ips.map((ip) => ({
    ip: canonicalIp(ip),
    node,
    containerId: rec.containerId,
    ifname: rec.ifname,
    ...(rec.podNamespace ? {namespace: rec.podNamespace} : {}),
    ...(rec.podName ? {pod: rec.podName} : {}),
    labels: rec.labels ?? {},
    identity: null,
  }))
}

/** Wait for `p` (its failure ignored) at most `ms`; `late` when it did not settle in time. */
async function settle(p: Promise<unknown> | undefined, ms: number, late: () => void): Promise<void> {
  if (!p) return
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), ms)
  })
  const r = await Promise.race([p.then(() => 'done', () => 'done'), timeout])
  clearTimeout(timer)
  if (r === 'late') late()
}

/** The node refused the cluster's service table (the kernel ops of the same convergence applied). */
class ServicesRefused extends Error {
  constructor(readonly cause: PnError) {
    super(cause.message)
  }
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err))

export class ClusterAgent {
  private reg?: NodeRegistration
  private follower?: ClusterFollower
  private readonly queue: PublicationQueue
  private stopped = false
  private storeState: 'connected' | 'retrying' = 'retrying'
  private since = new Date()
  private error?: string = 'not connected yet'
  private applied?: NodeApplied
  private appliedDigest?: string
  private appliedRevision: number | null = null
  private reportedRevision = 0
  private readonly counts = {ipcache: 0, routes: 0, serviceTables: 0, policyOps: 0}
  /** Endpoints, identities, namespaces or policies changed since the node's policy was last written. */
  private policyDirty = true
  /** The node policy last written (the writer diffs against it without reading the maps). */
  private policyApplied?: NodePolicy
  /** The identity last written into pn_ipcache for each local pod IP. */
  private readonly localIdentities = new Map<string, number>()
  private policyError?: string
  private converging?: Promise<void>
  private dirty = false
  /**
   * What changed since the node's peers were last diffed: nodes (the ipcache's node IPs and the
   * peer routes) or endpoints only (the ipcache). A service-only change diffs neither.
   */
  private readonly stale = {ipcache: true, routes: true}
  /** How many times each part was diffed against the store (status: the work convergence did). */
  private readonly diffs = {ipcache: 0, routes: 0}
  private flushRetry = false
  private reportRetry = false
  private servicesError?: string
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly delays = new Map<string, number>()
  private readonly self: ConvergeSelf
  private readonly log: (msg: string) => void

  constructor(private readonly opts: ClusterAgentOptions) {
    this.log = opts.log ?? (() => {})
    this.self = {name: opts.node.name, uplink: opts.node.uplink, bpffsRoot: opts.node.bpffsRoot, autoDirectRoutes: opts.autoDirectRoutes === true, podCidrs: opts.node.podCidrs,
      masquerade: opts.node.masquerade?.mode === 'bpf'}
    this.queue = new PublicationQueue((p) => this.send(p))
  }

  /** Start registering and following; returns at once (the store may be unreachable). */
  start(): void {
    this.later('register', 0, () => this.register())
    this.later('follow', 0, () => this.follow())
    this.scheduleLocalResync()
    this.scheduleIdentityGc()
  }

  private scheduleIdentityGc(): void {
    if (this.stopped) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.collectIdentities()
        .catch((err) => this.log(`cluster: collect unused identities: ${describe(err)}`))
        .finally(() => this.scheduleIdentityGc())
    }, this.opts.identityGcMs ?? 60_000)
    t.unref()
    this.timers.add(t)
  }

  private async collectIdentities(): Promise<void> {
    const nodes = this.follower ? [...this.follower.state.nodes.keys()].sort() : []
    if (!this.reg || this.reg.lost || nodes[0] !== this.opts.node.name) return
    const r = await collectIdentities(this.opts.store, this.opts.identityGraceMs === undefined ? {} : {graceMs: this.opts.identityGraceMs})
    if (r.freed.length > 0 || r.marked.length > 0) this.log(`cluster: identities: ${r.marked.length} marked unused, ${r.freed.length} freed (${r.freed.join(', ')})`)
  }

  private scheduleLocalResync(): void {
    if (this.stopped) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      void this.resyncLocal()
        .catch((err) => this.log(`cluster: compare the node's endpoints with the store: ${describe(err)}`))
        .finally(() => this.scheduleLocalResync())
    }, this.opts.localResyncMs ?? 30_000)
    t.unref()
    this.timers.add(t)
  }

  /**
   * Publish what the node's records hold and the store does not list (or lists otherwise), and
   * withdraw what the store lists for the node that no record holds; publications already queued
   * for an IP are left to the queue.
   */
  private async resyncLocal(): Promise<void> {
    const follower = this.follower
    if (!this.reg || this.reg.lost || !follower) return
    const queued = new Set(this.queue.list().map((p) => p.ip))
    const listed = follower.state.endpoints
    const mine = new Set<string>()
    let changes = 0
    for (const rec of await listEndpoints(this.opts.stateDir)) {
      for (const ep of endpointsOf(rec, this.opts.node.name)) {
        mine.add(ep.ip)
        if (queued.has(ep.ip)) continue
        const have = listed.get(ep.ip)
        if (have && have.node === ep.node && have.containerId === ep.containerId && have.ifname === ep.ifname) {
          // Relabelled in the store (pn endpoint label): the store's labels win, and the record
          // takes them, so a later publication (a new lease) does not undo the relabel.
          if (JSON.stringify(have.labels) !== JSON.stringify(ep.labels)) await this.adoptLabels(rec, have.labels)
          continue
        }
        this.queue.put(ep)
        changes++
      }
    }
    for (const ep of listed.values()) {
      if (ep.node !== this.opts.node.name || mine.has(ep.ip) || queued.has(ep.ip)) continue
      this.queue.delete(ep.ip)
      changes++
    }
    if (changes > 0) {
      this.log(`cluster: ${changes} endpoint publication(s) from comparing the node's records with the store`)
      await this.flush()
    }
  }

  /** Write the store's labels into a local endpoint record (under its attachment lock; a record replaced meanwhile is left alone). */
  private async adoptLabels(rec: EndpointRecord, labels: Record<string, string>): Promise<void> {
    await withAttachmentLock(this.opts.stateDir, rec.containerId, rec.ifname, 'take the cluster\'s labels of', async () => {
      const cur = await getEndpoint(this.opts.stateDir, rec.containerId, rec.ifname)
      if (!cur || cur.createdAt !== rec.createdAt) return
      const {labels: _old, ...rest} = cur
      await saveEndpoint(this.opts.stateDir, Object.keys(labels).length > 0 ? {...rest, labels} : rest)
    })
  }

  /** A CNI ADD succeeded: publish the endpoint's IPs (and write its policy, even before the store answers). */
  endpointAdded(rec: EndpointRecord): void {
    for (const ep of endpointsOf(rec, this.opts.node.name)) this.queue.put(ep)
    void this.flush()
    this.policyDirty = true
    this.kick()
  }

  /** A CNI DEL removed the endpoint: withdraw its IPs. */
  endpointDeleted(rec: EndpointRecord): void {
    for (const ip of rec.ips) this.queue.delete(canonicalIp(ip))
    void this.flush()
  }

  /**
   * Around one CNI request of the agent: the record before and after it. A DEL withdraws the IPs
   * of the record as it was. An ADD publishes the record's IPs, and withdraws those of the record
   * before it that it no longer holds: an ADD into the same netns replaces the attachment (a new
   * IP unless one is requested), and a failed one may have torn the old attachment down.
   */
  async aroundCni<T extends {exitCode: number}>(env: Record<string, string>, run: () => Promise<T>): Promise<T> {
    const cmd = env.CNI_COMMAND
    const id = env.CNI_CONTAINERID
    const ifname = env.CNI_IFNAME || 'eth0'
    if ((cmd !== 'ADD' && cmd !== 'DEL') || !id) return run()
    const before = await getEndpoint(this.opts.stateDir, id, ifname).catch(() => undefined)
    const out = await run()
    if (cmd === 'DEL') {
      if (out.exitCode === 0 && before) this.endpointDeleted(before)
      return out
    }
    const rec = await getEndpoint(this.opts.stateDir, id, ifname).catch(() => undefined)
    if (before) {
      const held = new Set((rec?.ips ?? []).map(canonicalIp))
      const gone = before.ips.filter((ip) => !held.has(canonicalIp(ip)))
      if (gone.length > 0) this.endpointDeleted({...before, ips: gone})
    }
    if (out.exitCode === 0 && rec) this.endpointAdded(rec)
    return out
  }

  status(): ClusterAgentStatus {
    return {
      location: this.opts.store.location,
      node: this.opts.node.name,
      store: this.storeState,
      since: this.since.toISOString(),
      ...(this.storeState === 'retrying' && this.error ? {error: this.error} : {}),
      registered: this.reg !== undefined && !this.reg.lost,
      ...(this.reg ? {leaseId: this.reg.leaseId} : {}),
      appliedRevision: this.appliedRevision,
      seenRevision: this.follower ? this.follower.state.revision : null,
      queued: this.queue.size,
      published: this.queue.sent,
      autoDirectRoutes: this.self.autoDirectRoutes,
      converged: {...this.counts},
      diffs: {...this.diffs},
      ...(this.servicesError ? {servicesError: this.servicesError} : {}),
      ...(this.policyError ? {policyError: this.policyError} : {}),
    }
  }

  /**
   * Stop following and keeping the lease alive. The node's keys are left to expire with the
   * lease (`revoke`: delete them now), and the kernel keeps what was applied.
   */
  async stop(opts: {revoke?: boolean} = {}): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    // Each step bounded: after etcd restarted under a watch, cancelling it has been seen to take
    // 20 s, and a stopping agent must not hold its node's CNI calls (they fall back) that long.
    const bounded = (what: string, p: Promise<unknown> | undefined) => settle(p, this.opts.stopStepMs ?? 2000, () => this.log(`cluster: stopping: ${what} did not finish in time; going on`))
    await bounded('closing the watch', this.follower?.close())
    await bounded('closing the lease', this.reg?.close({revoke: opts.revoke ?? false}))
    await bounded('the convergence in flight', this.converging)
    await bounded('closing the store', this.opts.store.close())
  }

  // ── store state ─────────────────────────────────────────────────────────────────────────

  private ok(): void {
    if (this.storeState === 'connected') return
    this.storeState = 'connected'
    this.since = new Date()
    this.error = undefined
    this.log(`cluster store ${this.opts.store.location}: connected`)
    // Back: send what queued up meanwhile, and watch again from the revision the node has (the
    // old watch may sit in its client's reconnect backoff for seconds after the store is back).
    void this.flush()
    this.refollow()
  }

  private refollow(): void {
    const old = this.follower
    if (!old || this.stopped) return
    this.follower = undefined
    // Closing marks the old watch closed at once (no more events from it); its cancel may take long.
    void settle(old.close(), this.opts.stopStepMs ?? 2000, () => {})
    this.later('follow', 0, () => this.follow(old.state))
  }

  private failed(what: string, err: unknown): void {
    const msg = `${what}: ${describe(err)}`
    if (this.storeState !== 'retrying') {
      this.storeState = 'retrying'
      this.since = new Date()
      this.log(`cluster store ${this.opts.store.location}: retrying (${msg})`)
    }
    this.error = msg
  }

  /** Run `fn` after `ms`; a failure (it throws) runs it again with a doubled delay. */
  private later(name: string, ms: number, fn: () => Promise<void>): void {
    if (this.stopped) return
    const t = setTimeout(() => {
      this.timers.delete(t)
      if (this.stopped) return
      fn().then(
        () => this.delays.delete(name),
        (err) => {
          this.failed(name, err)
          const base = this.opts.retryMs ?? 500
          const next = Math.min((this.delays.get(name) ?? base / 2) * 2, this.opts.maxRetryMs ?? 10_000)
          this.delays.set(name, next)
          this.later(name, next, fn)
        },
      )
    }, ms)
    this.timers.add(t)
  }

  // ── registration and publications ───────────────────────────────────────────────────────

  private async register(): Promise<void> {
    const nodeIps = this.opts.nodeIps ?? uplinkAddresses(this.opts.node.uplink)
    if (nodeIps.length === 0) {
      throw new PnError('PN_INVALID_ARGUMENT', `register node ${this.opts.node.name}: its uplink ${this.opts.node.uplink} has no address`, {hint: 'give the uplink an address, or start the agent with --node-ip'})
    }
    const reg = await this.opts.store.registerNode({name: this.opts.node.name, nodeIps, podCidrs: this.opts.node.podCidrs, reach: this.opts.reach ?? (this.opts.node.tunnel === 'vxlan' ? 'tunnel' : 'direct')}, {
      ...(this.opts.ttlSeconds ? {ttlSeconds: this.opts.ttlSeconds} : {}),
      onLost: () => {
        this.log(`cluster store: the lease of node ${this.opts.node.name} was lost; registering again`)
        this.failed('keep-alive', new Error('lease lost'))
        this.reg = undefined
        this.later('register', 0, () => this.register())
      },
      onKeepAliveError: (err) => this.failed('keep-alive', err),
    })
    if (this.stopped) {
      await reg.close({revoke: false}).catch(() => {})
      return
    }
    this.reg = reg
    this.ok()
    this.log(`cluster store: node ${reg.node.name} registered (${reg.node.nodeIps.join(', ')}; lease ${reg.leaseId}, ${reg.ttlSeconds} s)`)
    this.watchRenewals()
    // A new lease carries none of the node's endpoints: publish every local one again, and
    // withdraw those the store still lists for this node that are gone here. A failure here must
    // not register again (a second lease): what is queued is retried by the queue.
    await this.republish().catch((err) => this.failed('publish the node\'s endpoints', err))
    this.reportedRevision = 0
    this.kick()
  }

  /** Keep-alives that work again after failures mark the store connected. */
  private watchRenewals(): void {
    const reg = this.reg
    let last = reg?.renewedAt ?? 0
    const tick = () => {
      if (this.stopped || !reg || this.reg !== reg) return
      if (reg.renewedAt > last) {
        last = reg.renewedAt
        if (this.storeState === 'retrying' && reg.renewedAt > this.since.getTime()) this.ok()
      }
      const t = setTimeout(() => {
        this.timers.delete(t)
        tick()
      }, 250)
      t.unref()
      this.timers.add(t)
    }
    tick()
  }

  private async republish(): Promise<void> {
    const local = await listEndpoints(this.opts.stateDir)
    const mine = new Set<string>()
    for (const rec of local) {
      for (const ep of endpointsOf(rec, this.opts.node.name)) {
        mine.add(ep.ip)
        this.queue.put(ep)
      }
    }
    try {
      const state = this.follower?.state ?? (await this.opts.store.snapshot())
      for (const ep of state.endpoints.values()) if (ep.node === this.opts.node.name && !mine.has(ep.ip)) this.queue.delete(ep.ip)
    } finally {
      await this.flush()
    }
  }

  private async send(p: Publication): Promise<void> {
    const reg = this.reg
    if (!reg || reg.lost) throw new PnError('PN_CLUSTER_LEASE_LOST', `publish endpoint ${p.ip}: node ${this.opts.node.name} is not registered yet`, {hint: 'the agent registers it as soon as the store answers'})
    if (p.kind === 'put') {
      // The pod's security identity (its labels and its namespace's, one number cluster-wide):
      // allocated, or found, before the endpoint is published with it.
      let ep = p.endpoint
      if (ep.identity === null) ep = {...ep, identity: (await identityForPod(this.opts.store, ep.namespace ?? 'default', ep.labels)).id}
      await this.opts.store.publishEndpoint(ep, reg)
    }
    else await this.opts.store.deleteEndpoint(p.ip, this.opts.node.name)
  }

  /** Drain the queue; a failure retries with backoff (and on the next connect). */
  private async flush(): Promise<void> {
    if (this.stopped || !this.reg) return
    const done = await this.queue.drain()
    if (done) {
      if (this.queue.sent > 0) this.ok()
      return
    }
    this.failed('publish', this.queue.lastError)
    if (this.flushRetry) return
    this.flushRetry = true
    this.later('flush', this.opts.retryMs ?? 500, async () => {
      if (!(await this.queue.drain())) throw this.queue.lastError
      this.flushRetry = false
      this.ok()
    })
  }

  // ── following and converging ────────────────────────────────────────────────────────────

  private async follow(from?: ClusterState): Promise<void> {
    const follower = await this.opts.store.follow({
      ...(from ? {from} : {}),
      // The peers' applied reports are not the agent's business (N agents: N² events a change).
      desiredOnly: true,
      onUpdate: (_state, update) => {
        this.ok()
        // Only applied reports (ours and the peers'): nothing to program.
        if (!update.resync && !update.nodes && !update.endpoints && !update.services && !update.policy) return
        if (update.resync || update.nodes || update.endpoints) this.stale.ipcache = true
        if (update.resync || update.nodes) this.stale.routes = true
        if (update.resync || update.endpoints || update.policy) this.policyDirty = true
        this.kick()
      },
      onError: (err) => this.failed('watch', err),
      ...(this.opts.retryMs ? {retryMs: this.opts.retryMs} : {}),
    })
    if (this.stopped) {
      await follower.close()
      return
    }
    this.follower = follower
    this.stale.ipcache = this.stale.routes = true
    this.policyDirty = true
    this.log(`cluster store: following from revision ${follower.state.revision}`)
    this.ok()
    this.kick()
  }

  /** Converge once more (coalesced: one run at a time, and at most one more after it). */
  private kick(): void {
    this.dirty = true
    if (this.converging || this.stopped) return
    this.converging = (async () => {
      while (this.dirty && !this.stopped && this.follower) {
        this.dirty = false
        try {
          await this.convergeOnce(this.follower.state)
          this.delays.delete('converge')
        } catch (err) {
          // Read the kernel again next time: the ops before the failure may have applied (a
          // refused service table leaves the kernel ops' result known).
          if (!(err instanceof ServicesRefused)) this.applied = undefined
          const e = toPnError(err, 'converge node')
          this.log(`cluster: converge failed: ${e.message}`)
          const next = Math.min((this.delays.get('converge') ?? (this.opts.retryMs ?? 500) / 2) * 2, this.opts.maxRetryMs ?? 10_000)
          this.delays.set('converge', next)
          const t = setTimeout(() => {
            this.timers.delete(t)
            this.kick()
          }, next)
          this.timers.add(t)
          break
        }
      }
    })().finally(() => {
      this.converging = undefined
    })
  }

  /** What the node has applied, read from its kernel (at start and after a failure). */
  private async readApplied(): Promise<NodeApplied> {
    const [dump, r4, r6] = await this.opts.kernel.apply([
      {kind: 'map.dump', map: mapPath(this.self.bpffsRoot, 'pn_ipcache')},
      ...(this.self.autoDirectRoutes ? [{kind: 'route.list' as const, family: 4 as const}, {kind: 'route.list' as const, family: 6 as const}] : []),
    ])
    const entries = (dump as Extract<KernelResult, {kind: 'map.dump'}>).entries ?? []
    const routes = [r4, r6].flatMap((r) => (r ? (r as Extract<KernelResult, {kind: 'route.list'}>).routes ?? [] : []))
    // BPF masquerade: the node IPs this agent put in pn_nonmasq (converge.ts).
    const [nonMasq] = this.self.masquerade ? await this.opts.kernel.apply([{kind: 'map.dump', map: mapPath(this.self.bpffsRoot, 'pn_nonmasq')}]) : []
    const nodeIps = nonMasq ? (nonMasq as Extract<KernelResult, {kind: 'map.dump'}>).entries ?? [] : []
    return appliedFromKernel(entries, routes, this.self, nodeIps)
  }

  private async convergeOnce(state: ClusterState): Promise<void> {
    const revision = state.revision
    // Only what changed since the node's peers were last converged is diffed: nothing for a
    // service-only change, the ipcache for an endpoint event, the routes too only when the nodes
    // changed (the route diff sorts and parses every node: O(N) on every agent for every change).
    if (!this.applied) this.stale.ipcache = this.stale.routes = true
    if (this.stale.ipcache || this.stale.routes) {
      // Cleared first: a change that arrives while this runs marks it again (one more run).
      const parts: ConvergeParts = {...this.stale}
      this.stale.ipcache = this.stale.routes = false
      let plan: ReturnType<typeof convergeNode>
      try {
        this.applied ??= await this.readApplied()
        plan = convergeNode(state, this.applied, this.self, parts)
        if (parts.ipcache) this.diffs.ipcache++
        if (parts.routes) this.diffs.routes++
        if (plan.ops.length > 0) await this.opts.kernel.apply(plan.ops)
      } catch (err) {
        this.stale.ipcache = this.stale.routes = true
        throw err
      }
      if (plan.ops.length > 0) {
        const s = plan.summary
        this.counts.ipcache += s.ipcacheAdded + s.ipcacheUpdated + s.ipcacheDeleted
        this.counts.routes += s.routesAdded + s.routesReplaced + s.routesDeleted
        this.log(`cluster: revision ${revision}: ipcache +${s.ipcacheAdded} ~${s.ipcacheUpdated} -${s.ipcacheDeleted}, routes +${s.routesAdded} ~${s.routesReplaced} -${s.routesDeleted}`)
      }
      this.applied = plan.applied
    }
    if (this.policyDirty) await this.convergePolicy(state)
    // No table written yet: the cluster does not manage services, the node's own table stays.
    const view = state.services()
    const table = view.mark ? serviceTableToApply(view, this.appliedDigest) : {apply: false as const}
    if (table.apply) {
      try {
        await this.opts.applyServices(table.services)
      } catch (err) {
        // The node refused the table (a VIP that is one of its addresses, maps not loaded): the
        // endpoints and routes above stay applied, the revision is not reported as applied, and
        // the table is tried again (with backoff, or at the next change).
        const e = toPnError(err, 'apply the cluster\'s services')
        this.servicesError = `${e.code}: ${e.message}`
        throw new ServicesRefused(e)
      }
      this.servicesError = undefined
      this.appliedDigest = table.digest
      this.counts.serviceTables++
      this.log(`cluster: revision ${revision}: service table applied (${table.services.length} service(s))`)
    }
    this.appliedRevision = revision
    await this.report()
  }

  /**
   * Network policy on this node: its pods' identities into pn_ipcache, then every local
   * endpoint's policy map entries and the policy CIDRs, from the same resolution `pn policy
   * trace` reads (policies.ts). Only a node with the BPF datapath (its policy maps pinned)
   * enforces; on another one nothing is written and pods stay open.
   */
  private async convergePolicy(state: ClusterState): Promise<void> {
    this.policyDirty = false
    try {
      if (!(await pathExists(mapPath(this.self.bpffsRoot, POLICY_EP_MAP)))) return
      const local: (LocalEndpoint & {attachment: string})[] = []
      for (const rec of await listEndpoints(this.opts.stateDir)) {
        for (const ip of rec.ips) {
          const stored = state.endpoints.get(canonicalIp(ip))
          local.push({
            ip: canonicalIp(ip),
            endpointId: rec.endpointId,
            namespace: rec.podNamespace ?? 'default',
            ...(rec.podName ? {pod: rec.podName} : {}),
            labels: rec.labels ?? {},
            identity: stored && stored.node === this.opts.node.name ? stored.identity : null,
            // A new attachment of the same IP (DEL, then ADD) starts with identity 0 in pn_ipcache.
            attachment: `${canonicalIp(ip)} ${rec.createdAt}`,
          })
        }
      }
      // Identities first: a rule that names a pod's identity must find it in pn_ipcache.
      const byIdentity = new Map<number, typeof local>()
      for (const l of local) {
        if (!l.identity || this.localIdentities.get(l.attachment) === l.identity) continue
        byIdentity.set(l.identity, [...(byIdentity.get(l.identity) ?? []), l])
      }
      for (const [identity, eps] of byIdentity) {
        await writeEndpointIdentity(this.opts.kernel, this.self, eps.map((l) => l.ip), identity)
        for (const l of eps) this.localIdentities.set(l.attachment, identity)
      }
      const current = new Set(local.map((l) => l.attachment))
      for (const a of [...this.localIdentities.keys()]) if (!current.has(a)) this.localIdentities.delete(a)
      // One endpoint id per pod (a dual-stack pod has two IPs, one policy).
      const policy = nodePolicyFromCluster(state, local, this.policyApplied ? {previousCidrIdentities: this.policyApplied.cidrIdentities} : {})
      const seen = new Set<number>()
      policy.endpoints = policy.endpoints.filter((ep) => (seen.has(ep.endpointId) ? false : (seen.add(ep.endpointId), true)))
      const r = await writeNodePolicy(this.opts.kernel, this.self, policy, this.policyApplied)
      this.policyApplied = policy
      this.policyError = undefined
      if (r.changed) {
        this.counts.policyOps += r.mapOps
        this.log(`cluster: revision ${state.revision}: policy of ${r.endpoints.length} endpoint(s) written (${r.mapOps} map op(s)); CIDRs +${r.cidrs.added.length} ~${r.cidrs.updated.length} -${r.cidrs.removed.length}`)
      }
    } catch (err) {
      this.policyDirty = true
      this.policyApplied = undefined
      this.localIdentities.clear()
      const e = toPnError(err, 'write the node\'s network policy')
      this.policyError = `${e.code}: ${e.message}`
      throw err
    }
  }

  /** Tell the store the revision applied (under the lease); a failure is retried later. */
  private async report(): Promise<void> {
    const reg = this.reg
    const revision = this.appliedRevision
    if (!reg || reg.lost || revision === null || revision <= this.reportedRevision) return
    try {
      await this.opts.store.reportApplied(revision, reg)
      this.reportedRevision = revision
      this.ok()
    } catch (err) {
      this.failed('report applied revision', err)
      if (this.reportRetry) return
      this.reportRetry = true
      this.later('report', this.opts.retryMs ?? 500, async () => {
        this.reportRetry = false
        await this.report()
      })
    }
  }
}
