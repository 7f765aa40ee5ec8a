/**
 * A cluster's desired state as one agent sees it: the store's keys decoded into nodes,
 * endpoints, services and applied revisions, at one store revision. Built from a consistent read
 * and moved forward by a watch's events, one revision at a time, so it is always the state of
 * one revision (never half a transaction). Pure: no I/O.
 */
import {PnError} from '../errors.js'
import type {ServiceSpec} from '../service/model.js'
import type {KvEntry, KvEvent} from './kv.js'
import {POLICY_SPACES, PolicyState, type PolicySpace} from './policy-state.js'
import {decodeApplied, decodeEndpoint, decodeNode, decodeShard, decodeTableMark, servicesDigest, type AppliedRevision, type ClusterEndpoint, type ClusterKeys, type ClusterNode, type ServiceTableMark} from './layout.js'

/** What an update touched, so a consumer redoes only that part. */
export interface StateChange {
  nodes: boolean
  endpoints: boolean
  services: boolean
  applied: boolean
  /** Identities, namespaces or policies (policy-state.ts). */
  policy?: boolean
}

export interface ServicesView {
  services: ServiceSpec[]
  /** The shards add up to the table key's digest (false: a torn or hand-edited table, do not apply). */
  consistent: boolean
  mark?: ServiceTableMark
}

export class ClusterState {
  revision = 0
  /** The schema key's value ("1"), if any. */
  schema?: string
  readonly nodes = new Map<string, ClusterNode>()
  readonly endpoints = new Map<string, ClusterEndpoint>()
  readonly applied = new Map<string, AppliedRevision>()
  /** Identities, namespaces' labels and NetworkPolicies. */
  readonly policy = new PolicyState()
  /** Keys that did not decode (skipped), by key. */
  readonly problems = new Map<string, PnError>()
  private readonly shards = new Map<string, ServiceSpec[]>()
  private mark?: ServiceTableMark
  private servicesCache?: ServicesView

  constructor(private readonly keys: ClusterKeys) {}

  /** The state of a consistent read of the cluster's keys. */
  static fromEntries(keys: ClusterKeys, revision: number, kvs: KvEntry[]): ClusterState {
    const s = new ClusterState(keys)
    for (const kv of kvs) s.set(kv.key, kv.value, kv.lease)
    s.revision = revision
    return s
  }

  /** Apply one revision's events (from a watch). */
  applyEvents(revision: number, events: KvEvent[]): StateChange {
    const change: StateChange = {nodes: false, endpoints: false, services: false, applied: false}
    for (const e of events) {
      const kind = e.type === 'put' ? this.set(e.key, e.value ?? '', e.lease) : this.unset(e.key)
      if (kind) change[kind] = true
    }
    this.revision = Math.max(this.revision, revision)
    return change
  }

  /** The services table (sorted by shard then frontend) and whether it is whole. */
  services(): ServicesView {
    if (this.servicesCache) return this.servicesCache
    const services = [...this.shards.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).flatMap(([, list]) => list)
    const consistent = this.mark ? servicesDigest(services) === this.mark.digest && services.length === this.mark.count : services.length === 0
    this.servicesCache = {services, consistent, ...(this.mark ? {mark: this.mark} : {})}
    return this.servicesCache
  }

  /** The kind of key `key` is, with its name, or undefined for a key pn does not know. */
  private classify(key: string): {kind: keyof StateChange | 'schema' | 'shard' | 'table'; name: string; space?: PolicySpace} | undefined {
    if (key === this.keys.schema) return {kind: 'schema', name: ''}
    if (key === this.keys.table) return {kind: 'table', name: ''}
    if (!key.startsWith(this.keys.v1)) return undefined
    const rest = key.slice(this.keys.v1.length)
    const slash = rest.indexOf('/')
    if (slash < 0) return undefined
    const [space, name] = [rest.slice(0, slash), rest.slice(slash + 1)]
    if (space === 'nodes') return {kind: 'nodes', name}
    if (space === 'endpoints') return {kind: 'endpoints', name}
    if (space === 'services') return {kind: 'shard', name}
    if (space === 'applied') return {kind: 'applied', name}
    if ((POLICY_SPACES as readonly string[]).includes(space)) return {kind: 'policy', name, space: space as PolicySpace}
    return undefined
  }

  private set(key: string, value: string, lease?: string): keyof StateChange | undefined {
    const c = this.classify(key)
    if (!c) return undefined
    this.problems.delete(key)
    try {
      switch (c.kind) {
        case 'schema':
          this.schema = value
          return undefined
        case 'nodes':
          this.nodes.set(c.name, decodeNode(key, value, lease))
          return 'nodes'
        case 'endpoints':
          this.endpoints.set(c.name, decodeEndpoint(key, value))
          return 'endpoints'
        case 'applied':
          this.applied.set(c.name, decodeApplied(key, value, c.name))
          return 'applied'
        case 'policy':
          this.policy.set(c.space!, c.name, key, value)
          return 'policy'
        case 'shard':
          this.servicesCache = undefined
          this.shards.set(c.name, decodeShard(key, value))
          return 'services'
        case 'table':
          this.servicesCache = undefined
          this.mark = decodeTableMark(key, value)
          return 'services'
      }
    } catch (err) {
      if (!(err instanceof PnError)) throw err
      // A value that does not decode is skipped (and reported), and what it held is gone.
      this.unset(key)
      this.problems.set(key, err)
      return c.kind === 'shard' || c.kind === 'table' ? 'services' : c.kind === 'schema' ? undefined : c.kind
    }
    return undefined
  }

  private unset(key: string): keyof StateChange | undefined {
    const c = this.classify(key)
    if (!c) return undefined
    this.problems.delete(key)
    switch (c.kind) {
      case 'schema':
        this.schema = undefined
        return undefined
      case 'nodes':
        this.nodes.delete(c.name)
        return 'nodes'
      case 'endpoints':
        this.endpoints.delete(c.name)
        return 'endpoints'
      case 'applied':
        this.applied.delete(c.name)
        return 'applied'
      case 'policy':
        this.policy.unset(c.space!, c.name)
        return 'policy'
      case 'shard':
        this.servicesCache = undefined
        this.shards.delete(c.name)
        return 'services'
      case 'table':
        this.servicesCache = undefined
        this.mark = undefined
        return 'services'
    }
  }
}
