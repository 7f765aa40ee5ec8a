/**
 * Security identities in the cluster store: one number per label set (labels.ts), the same on
 * every node. Allocation is create-if-absent: a claim key per label set (identity-labels/<hash>)
 * and a key per number (identities/<id>), written in one transaction that requires both to be
 * absent, so two nodes allocating the same set at once end with one number, and two sets never
 * share one. Numbers start at IDENTITY_FIRST_CLUSTER; the lowest free one is taken.
 *
 * An identity is referenced by the endpoints that carry it (their keys, under their nodes'
 * leases: a dead node's references go with its lease). The collector marks an identity no
 * endpoint uses (`unusedSince` on its claim) and frees it a grace period later; an allocation of
 * the set in between clears the mark, and the free compares the claim's revision, so an identity
 * is never freed under a pod that just got it.
 */
import {PnError} from '../errors.js'
import {applyLabelChanges, labelSetKey, podLabelSet, splitLabelSet, type LabelChange, type Labels} from '../policy/labels.js'
import {IDENTITY_FIRST_CIDR, IDENTITY_FIRST_CLUSTER, IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD} from '../policy/types.js'
import type {KvWrite} from './kv.js'
import type {ClusterEndpoint} from './layout.js'
import {clusterCidrIdentities} from './policies.js'
import {decodeClaim, decodeIdentity, decodeNamespace} from './policy-state.js'
import type {ClusterState} from './state.js'
import type {ClusterStore} from './store.js'

/** How long an identity no endpoint uses is kept before it is freed (Cilium's default GC interval is 15 min). */
export const IDENTITY_GRACE_MS = 5 * 60_000

export type IdentityKind = 'reserved' | 'cluster' | 'cidr'

export interface IdentityRow {
  id: number
  kind: IdentityKind
  labels: string[]
  /** Endpoints carrying it (cluster identities). */
  endpoints?: number
  /** When the collector found it unused (it is freed a grace period later). */
  unusedSince?: string
  createdAt?: string
}

export const RESERVED_IDENTITIES: IdentityRow[] = [
  {id: IDENTITY_HOST, kind: 'reserved', labels: ['reserved:host']},
  {id: IDENTITY_WORLD, kind: 'reserved', labels: ['reserved:world']},
  {id: IDENTITY_REMOTE_NODE, kind: 'reserved', labels: ['reserved:remote-node']},
]

export interface AllocateResult {
  id: number
  /** A new number was taken for the set. */
  created: boolean
  labels: string[]
}

/** The identity of a label set: the existing number, or a new one (create-if-absent). */
export async function allocateIdentity(store: ClusterStore, labels: string[]): Promise<AllocateResult> {
  const set = [...new Set(labels)].sort()
  const key = labelSetKey(set)
  const claimKey = store.keys.identityLabels(key)
  for (let attempt = 1; attempt <= 50; attempt++) {
    const {kvs} = await store.kv.range(claimKey)
    const found = kvs.find((k) => k.key === claimKey)
    if (found) {
      const claim = decodeClaim(found.key, found.value)
      if (labelSetKey(claim.labels) !== key) {
        throw new PnError('PN_CLUSTER_CORRUPT', `allocate identity for ${key}: claim key ${claimKey} holds another label set`, {hint: 'delete the key by hand; pn allocates it again', details: {key: claimKey}})
      }
      if (!claim.unusedSince) return {id: claim.id, created: false, labels: set}
      // In use again: clear the collector's mark (its free compares this key's revision).
      const r = await store.write(`allocate identity ${claim.id} in`, [{key: claimKey, modRevision: found.modRevision}], [{put: claimKey, value: JSON.stringify({id: claim.id, labels: set})}])
      if (r.succeeded) return {id: claim.id, created: false, labels: set}
      continue
    }
    const {kvs: ids} = await store.kv.range(`${store.keys.v1}identities/`)
    const used = new Set(ids.map((k) => Number(k.key.slice(k.key.lastIndexOf('/') + 1))))
    let id = IDENTITY_FIRST_CLUSTER
    while (used.has(id)) id++
    if (id >= IDENTITY_FIRST_CIDR) {
      throw new PnError('PN_IDENTITY_EXHAUSTED', `allocate identity for ${key}: every number from ${IDENTITY_FIRST_CLUSTER} to ${IDENTITY_FIRST_CIDR - 1} is taken`, {hint: 'free unused identities: run the collector (an agent does) or delete pods with unique labels'})
    }
    const idKey = store.keys.identity(id)
    const r = await store.write(`allocate identity ${id} in`, [{key: claimKey, modRevision: 0}, {key: idKey, modRevision: 0}], [
      {put: idKey, value: JSON.stringify({id, labels: set, createdAt: new Date().toISOString()})},
      {put: claimKey, value: JSON.stringify({id, labels: set})},
    ])
    if (r.succeeded) return {id, created: true, labels: set}
    await new Promise((res) => setTimeout(res, Math.random() * Math.min(50, 2 * attempt)))
  }
  throw new PnError('PN_LOCK_TIMEOUT', `allocate identity for ${key} in cluster store ${store.location}: lost 50 races in a row`, {hint: 'too many allocations at once; retry'})
}

/** A namespace's labels as stored (empty when it has none). */
export async function readNamespaceLabels(store: ClusterStore, namespace: string): Promise<Labels> {
  const key = store.keys.namespace(namespace)
  const {kvs} = await store.kv.range(key)
  const found = kvs.find((k) => k.key === key)
  return found ? decodeNamespace(key, found.value) : {}
}

/** The identity of a pod with `labels` in `namespace` (reads the namespace's labels, allocates). */
export async function identityForPod(store: ClusterStore, namespace: string, labels: Labels): Promise<AllocateResult> {
  return allocateIdentity(store, podLabelSet(namespace, labels, await readNamespaceLabels(store, namespace)))
}

/** Every identity: reserved, allocated (with the endpoints that carry it), and optionally the CIDR ones a node derives. */
export function identityRows(state: ClusterState, cidr: {cidr: string; identity: number}[] = []): IdentityRow[] {
  const refs = new Map<number, number>()
  for (const ep of state.endpoints.values()) if (ep.identity !== null) refs.set(ep.identity, (refs.get(ep.identity) ?? 0) + 1)
  const claims = new Map([...state.policy.claims.values()].map((c) => [c.id, c]))
  const cluster = [...state.policy.identities.values()].map((i): IdentityRow => {
    const mark = claims.get(i.id)?.unusedSince
    return {id: i.id, kind: 'cluster', labels: i.labels, endpoints: refs.get(i.id) ?? 0, createdAt: i.createdAt, ...(mark ? {unusedSince: mark} : {})}
  })
  const cidrRows = cidr.map((c): IdentityRow => ({id: c.identity, kind: 'cidr', labels: [`cidr:${c.cidr}`]}))
  return [...RESERVED_IDENTITIES, ...cluster, ...cidrRows].sort((a, b) => a.id - b.id)
}

export interface CollectResult {
  /** Identities found unused now (marked; freed a grace period later). */
  marked: number[]
  /** Identities freed (unused for the grace period). */
  freed: number[]
  /** Identities in use again whose mark was cleared. */
  revived: number[]
}

/** Mark identities no endpoint uses, free those unused for `graceMs`, unmark those in use again. */
export async function collectIdentities(store: ClusterStore, opts: {graceMs?: number; now?: () => number} = {}): Promise<CollectResult> {
  const grace = opts.graceMs ?? IDENTITY_GRACE_MS
  const now = opts.now ?? Date.now
  const {kvs} = await store.kv.range(store.keys.v1)
  const used = new Set<number>()
  for (const k of kvs) {
    if (!k.key.startsWith(`${store.keys.v1}endpoints/`)) continue
    try {
      const v = JSON.parse(k.value) as {identity?: unknown}
      if (Number.isInteger(v.identity)) used.add(v.identity as number)
    } catch {
      // A key that does not decode carries no reference.
    }
  }
  const out: CollectResult = {marked: [], freed: [], revived: []}
  for (const k of kvs) {
    if (!k.key.startsWith(`${store.keys.v1}identity-labels/`)) continue
    let claim
    try {
      claim = decodeClaim(k.key, k.value)
    } catch {
      continue
    }
    const compare = [{key: k.key, modRevision: k.modRevision}]
    if (used.has(claim.id)) {
      if (claim.unusedSince && (await store.write(`unmark identity ${claim.id} in`, compare, [{put: k.key, value: JSON.stringify({id: claim.id, labels: claim.labels})}])).succeeded) out.revived.push(claim.id)
      continue
    }
    if (!claim.unusedSince) {
      const w = await store.write(`mark identity ${claim.id} in`, compare, [{put: k.key, value: JSON.stringify({...claim, unusedSince: new Date(now()).toISOString()})}])
      if (w.succeeded) out.marked.push(claim.id)
    } else if (now() - Date.parse(claim.unusedSince) >= grace) {
      const idKey = store.keys.identity(claim.id)
      const idEntry = kvs.find((x) => x.key === idKey)
      const writes: KvWrite[] = [{delete: k.key}]
      // The number's key goes only if it still names this set (a hand-made mismatch is left alone).
      if (idEntry && labelSetKey(decodeIdentity(idKey, idEntry.value).labels) === labelSetKey(claim.labels)) writes.push({delete: idKey})
      if ((await store.write(`free identity ${claim.id} in`, compare, writes)).succeeded) out.freed.push(claim.id)
    }
  }
  return out
}

/** An endpoint whose identity changed (relabel of the pod or of its namespace). */
export interface Reidentified {
  ip: string
  containerId: string
  namespace: string
  pod?: string
  labels: Labels
  from: number | null
  to: number
}

/**
 * Give every endpoint `which` selects the identity of its current labels (its namespace's as
 * stored now), rewriting its key under its node's lease, compared on its revision (an endpoint
 * its agent rewrote meanwhile is read again). `labelsOf` may change an endpoint's own labels.
 */
export async function reidentifyEndpoints(
  store: ClusterStore,
  which: (ep: ClusterEndpoint) => boolean,
  labelsOf: (ep: ClusterEndpoint) => Labels = (ep) => ep.labels,
): Promise<{endpoints: Reidentified[]; matched: number}> {
  const prefix = `${store.keys.v1}endpoints/`
  const nsCache = new Map<string, Labels>()
  const out: Reidentified[] = []
  let matched = 0
  const {kvs} = await store.kv.range(prefix)
  for (let entry of kvs) {
    for (let attempt = 1; ; attempt++) {
      let ep: ClusterEndpoint
      try {
        ep = JSON.parse(entry.value) as ClusterEndpoint
      } catch {
        break
      }
      if (!ep || typeof ep !== 'object' || !which(ep)) break
      if (attempt === 1) matched++
      const ns = ep.namespace ?? 'default'
      if (!nsCache.has(ns)) nsCache.set(ns, await readNamespaceLabels(store, ns))
      const labels = labelsOf(ep)
      const {id} = await allocateIdentity(store, podLabelSet(ns, labels, nsCache.get(ns)!))
      if (id === ep.identity && JSON.stringify(labels) === JSON.stringify(ep.labels)) break
      const next = {...ep, labels, identity: id}
      const r = await store.write(`relabel endpoint ${ep.ip} in`, [{key: entry.key, modRevision: entry.modRevision}], [{put: entry.key, value: JSON.stringify(next), ...(entry.lease ? {lease: entry.lease} : {})}])
      if (r.succeeded) {
        out.push({ip: ep.ip, containerId: ep.containerId, namespace: ns, ...(ep.pod ? {pod: ep.pod} : {}), labels, from: ep.identity, to: id})
        break
      }
      if (attempt >= 20) throw new PnError('PN_LOCK_TIMEOUT', `relabel endpoint ${ep.ip} in cluster store ${store.location}: its key kept changing`, {hint: 'retry'})
      const again = (await store.kv.range(entry.key)).kvs.find((k) => k.key === entry.key)
      if (!again) break
      entry = again
    }
  }
  return {endpoints: out, matched}
}

/** The label set of an identity taken apart (for display). */
export function describeIdentity(labels: string[]): string {
  const s = splitLabelSet(labels)
  if (s.namespace === undefined) return labels.join(',')
  const own = Object.entries(s.pod).map(([k, v]) => `${k}=${v}`).join(',')
  return `${s.namespace}${own ? ` ${own}` : ''}`
}

export interface EndpointLabelResult {
  cluster: string
  endpoint: string
  labels: Labels
  /** Its addresses that moved to a new identity (none: the labels were already so). */
  endpoints: Reidentified[]
}

/** `pn endpoint label`: change a pod's labels (by container id or NS/POD); it moves to the identity of its new labels. */
export async function labelEndpoint(store: ClusterStore, target: string, change: LabelChange): Promise<EndpointLabelResult> {
  const slash = target.indexOf('/')
  const which = slash < 0
    ? (ep: ClusterEndpoint) => ep.containerId === target
    : (ep: ClusterEndpoint) => (ep.namespace ?? 'default') === target.slice(0, slash) && ep.pod === target.slice(slash + 1)
  let labels: Labels = {}
  const r = await reidentifyEndpoints(store, which, (ep) => (labels = applyLabelChanges(ep.labels, change)))
  if (r.matched === 0) {
    throw new PnError('PN_ENDPOINT_NOT_FOUND', `label endpoint ${target}: no endpoint with that ${slash < 0 ? 'container id' : 'namespace/pod'} in cluster store ${store.location}`, {
      hint: 'its node publishes it once the pod runs (pn agent start --cluster); give the container id or NS/POD',
    })
  }
  return {cluster: store.location, endpoint: target, labels, endpoints: r.endpoints}
}

/** `pn identity list`: reserved, cluster (with their endpoints) and the CIDR identities the policies give. */
export async function listIdentities(store: ClusterStore): Promise<{cluster: string; revision: number; identities: IdentityRow[]}> {
  const state = await store.snapshot()
  return {cluster: store.location, revision: state.revision, identities: identityRows(state, clusterCidrIdentities(state))}
}

/** `pn identity get ID`: one identity and the endpoints that carry it. */
export async function getIdentity(store: ClusterStore, id: number): Promise<{cluster: string; identity: IdentityRow; endpoints: {endpoint: string; ip: string; node: string}[]}> {
  if (!Number.isInteger(id) || id < 0) throw new PnError('PN_INVALID_ARGUMENT', `get identity ${id}: not an identity number`, {hint: 'list them with pn identity list'})
  const state = await store.snapshot()
  const row = identityRows(state, clusterCidrIdentities(state)).find((r) => r.id === id)
  if (!row) throw new PnError('PN_IDENTITY_NOT_FOUND', `get identity ${id}: no such identity in cluster store ${store.location}`, {hint: 'list them with pn identity list'})
  const endpoints = [...state.endpoints.values()]
    .filter((e) => e.identity === id)
    .map((e) => ({endpoint: `${e.namespace ?? 'default'}/${e.pod ?? e.containerId.slice(0, 12)}`, ip: e.ip, node: e.node}))
    .sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.ip.localeCompare(b.ip))
  return {cluster: store.location, identity: row, endpoints}
}

/**
 * Labels of identities by number, for `pn monitor`: the reserved ones always; with a store, the
 * cluster's (refreshed on demand; a number not known yet has none). CIDR identities are numbered
 * by each node, so they show as `cidr` only.
 */
export class IdentityLabels {
  private readonly byId = new Map<number, string[]>(RESERVED_IDENTITIES.map((r) => [r.id, r.labels]))

  constructor(private readonly store?: ClusterStore) {}

  labels(id: number): string[] | undefined {
    if (id >= IDENTITY_FIRST_CIDR) return ['cidr']
    return this.byId.get(id)
  }

  /** Read the store's identities again (no store: nothing to do). */
  async refresh(): Promise<void> {
    if (!this.store) return
    const state = await this.store.snapshot()
    for (const i of state.policy.identities.values()) this.byId.set(i.id, i.labels)
  }
}
