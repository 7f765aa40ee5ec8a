/**
 * The cluster store's key space and its values. Under `<prefix>/cluster/` (the pool keeps
 * `<prefix>/pool/` beside it, src/ipam/pool-etcd.ts):
 *
 *   schema                 layout version ("1"), written by `pn cluster init`
 *   v1/nodes/<name>        ClusterNode, under the node's lease
 *   v1/endpoints/<ip>      ClusterEndpoint, under its node's lease
 *   v1/services/<shard>    the services whose frontend hashes to the shard (00…3f): a JSON list
 *                          in the apply file's format
 *   v1/services-table      {digest, count, writtenAt}: written with every table change, in the
 *                          same transaction; the compare that makes a table write atomic
 *   v1/applied/<node>      {revision, at}: the store revision the node's agent has fully applied,
 *                          under the node's lease
 *   v1/identities/<id>     {id, labels, createdAt}: a security identity and its label set
 *   v1/identity-labels/<h> {id, labels, unusedSince?}: the same by label set (h: sha256 of its
 *                          key), created only if absent: the compare that gives one set one number
 *   v1/namespaces/<ns>     {labels}: a namespace's labels (pn namespace label)
 *   v1/policies/<ns>/<n>   a NetworkPolicy, its canonical networking.k8s.io/v1 object
 *                          (identities.ts, namespaces.ts, policies.ts)
 *
 * Services are sharded so that a change to one service sends one shard (not the whole table) to
 * every watching agent, while a whole-table write still fits one etcd transaction (64 shards +
 * the table key, under etcd's default limit of 128 operations per transaction).
 */
import {PnError} from '../errors.js'
import {backendKey, frontendKey, parseServiceList, type ServiceSpec} from '../service/model.js'
import {sha256Hex} from '../state/digest.js'

/** The layout version this pn writes and reads. */
export const CLUSTER_SCHEMA_VERSION = 1
export const SERVICE_SHARDS = 64

/** How a node's pod CIDRs are reached from the others. */
export type NodeReach = 'direct' | 'bgp' | 'tunnel'
export const NODE_REACH: readonly NodeReach[] = ['direct', 'bgp', 'tunnel']

export interface ClusterNode {
  name: string
  /** The node's own addresses (the next hop to its pod CIDRs), one per family at most used. */
  nodeIps: string[]
  podCidrs: string[]
  reach: NodeReach
  registeredAt: string
  /** The lease the node's keys hang on (decimal), as the store reports it. */
  leaseId?: string
}

export interface ClusterEndpoint {
  ip: string
  node: string
  containerId: string
  ifname?: string
  namespace?: string
  pod?: string
  labels: Record<string, string>
  /** The security identity (network policy, the next issue); null until it is assigned. */
  identity: number | null
}

export interface AppliedRevision {
  node: string
  revision: number
  at: string
}

export interface ServiceTableMark {
  digest: string
  count: number
  writtenAt: string
}

/** The keys of one store, under `<prefix>/cluster/`. */
export class ClusterKeys {
  readonly base: string
  readonly schema: string
  readonly v1: string

  constructor(prefix: string) {
    this.base = `${prefix}/cluster/`
    this.schema = `${this.base}schema`
    this.v1 = `${this.base}v${CLUSTER_SCHEMA_VERSION}/`
  }

  node(name: string): string {
    return `${this.v1}nodes/${name}`
  }

  endpoint(ip: string): string {
    return `${this.v1}endpoints/${ip}`
  }

  shard(index: number): string {
    return `${this.v1}services/${index.toString(16).padStart(2, '0')}`
  }

  get table(): string {
    return `${this.v1}services-table`
  }

  applied(node: string): string {
    return `${this.v1}applied/${node}`
  }

  identity(id: number): string {
    return `${this.v1}identities/${id}`
  }

  /** The label-set key of an identity, hashed (a label set is long and holds `/`). */
  identityLabels(labelSetKey: string): string {
    return `${this.v1}identity-labels/${sha256Hex(labelSetKey).slice(0, 40)}`
  }

  namespace(name: string): string {
    return `${this.v1}namespaces/${name}`
  }

  policy(namespace: string, name: string): string {
    return `${this.v1}policies/${namespace}/${name}`
  }

  /**
   * The first key of the desired state: every key of nodes/, endpoints/, services/ and
   * services-table sorts at or after it, the schema key and every applied report before it
   * (`applied/` is the first space under v1/, and '0' follows '/'). A watch from here to the end
   * of the base sees what an agent converges to and not the other agents' reports.
   */
  get desiredStart(): string {
    return `${this.v1}applied0`
  }
}

/** The shard a service lives in (by its frontend). */
export function shardOf(spec: ServiceSpec): number {
  return parseInt(sha256Hex(frontendKey(spec.frontend)).slice(0, 8), 16) % SERVICE_SHARDS
}

/** One line per service, sorted by frontend: what the table's digest is taken over. */
export function canonicalServices(services: ServiceSpec[]): string {
  return services
    .map((s) => `${frontendKey(s.frontend)} ${s.backends.map(backendKey).join(',')}`)
    .sort()
    .join('\n')
}

export function servicesDigest(services: ServiceSpec[]): string {
  return sha256Hex(canonicalServices(services))
}

/** A shard's value: the apply file's format, sorted by frontend. */
export function encodeShard(services: ServiceSpec[]): string {
  const rows = services.map((s) => ({frontend: frontendKey(s.frontend), backends: s.backends.map(backendKey)}))
  rows.sort((a, b) => (a.frontend < b.frontend ? -1 : a.frontend > b.frontend ? 1 : 0))
  return JSON.stringify(rows)
}

export function decodeShard(key: string, text: string): ServiceSpec[] {
  return parseServiceList(text, `key ${key}`)
}

function corrupt(key: string, cause: string): PnError {
  return new PnError('PN_CLUSTER_CORRUPT', `read cluster store key ${key}: ${cause}`, {
    hint: 'pn skips the key; the writer of the key (an agent, pn service apply --cluster) rewrites it, or delete it by hand',
    details: {key},
  })
}

function parse(key: string, text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw corrupt(key, 'not valid JSON')
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw corrupt(key, 'not a JSON object')
  return v as Record<string, unknown>
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')

export function decodeNode(key: string, text: string, leaseId?: string): ClusterNode {
  const v = parse(key, text)
  if (typeof v.name !== 'string' || !isStrings(v.nodeIps) || !isStrings(v.podCidrs) || !NODE_REACH.includes(v.reach as NodeReach) || typeof v.registeredAt !== 'string') {
    throw corrupt(key, 'not a node {name, nodeIps, podCidrs, reach, registeredAt}')
  }
  return {name: v.name, nodeIps: v.nodeIps, podCidrs: v.podCidrs, reach: v.reach as NodeReach, registeredAt: v.registeredAt, ...(leaseId ? {leaseId} : {})}
}

export function decodeEndpoint(key: string, text: string): ClusterEndpoint {
  const v = parse(key, text)
  const labels = v.labels as Record<string, unknown> | undefined
  const opt = (k: string) => v[k] === undefined || typeof v[k] === 'string'
  if (typeof v.ip !== 'string' || typeof v.node !== 'string' || typeof v.containerId !== 'string' || !opt('ifname') || !opt('namespace') || !opt('pod') ||
    !labels || typeof labels !== 'object' || !Object.values(labels).every((x) => typeof x === 'string') ||
    !(v.identity === null || Number.isInteger(v.identity))) {
    throw corrupt(key, 'not an endpoint {ip, node, containerId, labels, identity}')
  }
  return {
    ip: v.ip,
    node: v.node,
    containerId: v.containerId,
    ...(v.ifname ? {ifname: v.ifname as string} : {}),
    ...(v.namespace ? {namespace: v.namespace as string} : {}),
    ...(v.pod ? {pod: v.pod as string} : {}),
    labels: labels as Record<string, string>,
    identity: v.identity as number | null,
  }
}

export function decodeApplied(key: string, text: string, node: string): AppliedRevision {
  const v = parse(key, text)
  if (!Number.isInteger(v.revision) || typeof v.at !== 'string') throw corrupt(key, 'not {revision, at}')
  return {node, revision: v.revision as number, at: v.at}
}

export function decodeTableMark(key: string, text: string): ServiceTableMark {
  const v = parse(key, text)
  if (typeof v.digest !== 'string' || !Number.isInteger(v.count) || typeof v.writtenAt !== 'string') throw corrupt(key, 'not {digest, count, writtenAt}')
  return {digest: v.digest, count: v.count as number, writtenAt: v.writtenAt}
}
