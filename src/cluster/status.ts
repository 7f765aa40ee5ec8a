/**
 * `pn cluster status`: every node the cluster knows (registered, or holding pod CIDRs in the
 * cluster's pool without a registration), its lease, the store revision its agent has applied,
 * and whether that covers the desired state.
 *
 * "Converged" compares the node's applied revision with the newest revision among the keys of
 * the desired state (nodes, endpoints, services). A removal leaves no key behind (an expired
 * node, a deleted endpoint), so a removal alone is not seen here until the next write; the
 * agents' own watch sees every change.
 */
import {PnError} from '../errors.js'
import type {PoolStore} from '../ipam/pool.js'
import {CLUSTER_SCHEMA_VERSION, type NodeReach} from './layout.js'
import type {ClusterStore} from './store.js'

export interface ClusterNodeStatus {
  name: string
  /** Registered under a live lease (false: holds pod CIDRs in the pool but has no registration). */
  alive: boolean
  nodeIps: string[]
  podCidrs: string[]
  reach?: NodeReach
  leaseId?: string
  /** Seconds since the node registered (the age of its lease). */
  leaseAgeSeconds?: number
  /** The store revision its agent reported as fully applied (null: no report yet). */
  appliedRevision: number | null
  /** null while there is no report. */
  converged: boolean | null
}

export interface ClusterStatus {
  location: string
  schema: number
  revision: number
  /** The newest revision among the desired state's keys (what "converged" compares with). */
  desiredRevision: number
  pool: string
  nodes: ClusterNodeStatus[]
  endpoints: number
  services: {count: number; consistent: boolean}
  /** Keys that did not decode. */
  problems: {key: string; message: string}[]
  warnings?: string[]
}

export interface ClusterStatusOptions {
  /** The cluster's pool, for nodes that hold pod CIDRs without a registration. */
  pool?: PoolStore
  now?: number
}

export async function clusterStatus(store: ClusterStore, opts: ClusterStatusOptions = {}): Promise<ClusterStatus> {
  const {state, desiredRevision} = await store.snapshotWithDesired()
  const now = opts.now ?? Date.now()
  const warnings = [...store.warnings]
  let poolNodes: {name: string; cidrs: string[]}[] = []
  if (opts.pool) {
    try {
      poolNodes = (await opts.pool.read())?.nodes ?? []
    } catch (err) {
      if (!(err instanceof PnError)) throw err
      warnings.push(`pool ${opts.pool.location}: ${err.message}`)
    }
  }
  const nodes: ClusterNodeStatus[] = []
  for (const n of state.nodes.values()) {
    const applied = state.applied.get(n.name)
    const registered = Date.parse(n.registeredAt)
    nodes.push({
      name: n.name,
      alive: true,
      nodeIps: n.nodeIps,
      podCidrs: n.podCidrs,
      reach: n.reach,
      ...(n.leaseId ? {leaseId: n.leaseId} : {}),
      ...(Number.isFinite(registered) ? {leaseAgeSeconds: Math.max(0, Math.round((now - registered) / 1000))} : {}),
      appliedRevision: applied?.revision ?? null,
      converged: applied ? applied.revision >= desiredRevision : null,
    })
  }
  for (const p of poolNodes) {
    if (state.nodes.has(p.name)) continue
    nodes.push({name: p.name, alive: false, nodeIps: [], podCidrs: p.cidrs, appliedRevision: null, converged: null})
  }
  nodes.sort((a, b) => a.name.localeCompare(b.name))
  const view = state.services()
  return {
    location: store.location,
    schema: CLUSTER_SCHEMA_VERSION,
    revision: state.revision,
    desiredRevision,
    pool: opts.pool?.location ?? store.poolLocation,
    nodes,
    endpoints: state.endpoints.size,
    services: {count: view.services.length, consistent: view.consistent},
    problems: [...state.problems].map(([key, e]) => ({key, message: e.message})),
    ...(warnings.length ? {warnings} : {}),
  }
}
