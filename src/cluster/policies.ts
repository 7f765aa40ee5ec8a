/**
 * NetworkPolicies in the cluster store (one key per namespace/name, the canonical object), and
 * the resolution of the store's state into what a node enforces. `pn policy apply` writes the
 * keys once; every agent follows them (ClusterState.policy) and calls nodePolicyFromCluster()
 * for its own endpoints, so one apply reaches every node.
 */
import {promises as fs} from 'node:fs'
import {canonicalIp, tryParseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {DEFAULT_NAMESPACE, checkNamespace, type Labels} from '../policy/labels.js'
import {parsePolicies, policyManifest, type NetworkPolicy} from '../policy/parse.js'
import {compareEntries, nodePolicy, resolvePolicy, type PolicyEndpoint, type PolicyInputs, type ResolvedEndpoint, type ResolvedPolicy, type ResolveOptions} from '../policy/resolve.js'
import {describeSelector} from '../policy/selector.js'
import {parsePortProtocol, traceVerdict, type TraceResult} from '../policy/trace.js'
import type {CidrIdentity, NodePolicy, PolicyMapEntry} from '../policy/types.js'
import type {KvWrite} from './kv.js'
import type {ClusterEndpoint} from './layout.js'
import type {ClusterState} from './state.js'
import type {ClusterStore} from './store.js'

/** Writes per transaction (etcd allows 128 operations in one; the schema compare is one more). */
const WRITES_PER_TXN = 100

const idOf = (p: {namespace: string; name: string}) => `${p.namespace}/${p.name}`

/** The store's endpoints, namespaces, identities and policies as resolution takes them. */
export function policyInputs(state: ClusterState): PolicyInputs {
  return {
    endpoints: [...state.endpoints.values()].map(toPolicyEndpoint),
    namespaces: Object.fromEntries(state.policy.namespaces),
    identities: [...state.policy.identities.values()].map((i) => ({id: i.id, labels: i.labels})),
    policies: [...state.policy.policies.values()],
  }
}

function toPolicyEndpoint(ep: ClusterEndpoint): PolicyEndpoint {
  return {ip: ep.ip, namespace: ep.namespace ?? DEFAULT_NAMESPACE, ...(ep.pod ? {name: ep.pod} : {}), labels: ep.labels, identity: ep.identity, node: ep.node}
}

/** A node's own endpoint: its datapath id, and its pod data for one the store does not have yet. */
export interface LocalEndpoint {
  ip: string
  endpointId: number
  namespace?: string
  pod?: string
  labels?: Labels
  identity?: number | null
}

/**
 * What a node enforces: the policy of its `local` endpoints (by IP; the store's labels and
 * identity win over `local`'s), and the CIDR identities. Pass the node's current CIDR
 * identities as `previousCidrIdentities` so their numbers stay put.
 */
export function nodePolicyFromCluster(state: ClusterState, local: LocalEndpoint[], opts: Omit<ResolveOptions, 'select'> = {}): NodePolicy {
  const inputs = policyInputs(state)
  const byIp = new Map(local.map((l) => [canonicalIp(l.ip), l]))
  const seen = new Set<string>()
  for (const ep of inputs.endpoints) {
    const l = byIp.get(ep.ip)
    if (l) {
      ep.endpointId = l.endpointId
      seen.add(ep.ip)
    }
  }
  for (const [ip, l] of byIp) {
    if (!seen.has(ip)) inputs.endpoints.push({ip, endpointId: l.endpointId, namespace: l.namespace ?? DEFAULT_NAMESPACE, ...(l.pod ? {name: l.pod} : {}), labels: l.labels ?? {}, identity: l.identity ?? null})
  }
  const resolved = resolvePolicy(inputs, {...opts, select: (ep) => byIp.has(ep.ip)})
  return nodePolicy(resolved, (ep) => byIp.has(ep.ip))
}

/** The whole cluster resolved (every endpoint): what list, get, trace and dry runs read. */
export function resolveCluster(state: ClusterState, policies?: NetworkPolicy[]): ResolvedPolicy {
  const inputs = policyInputs(state)
  return resolvePolicy(policies ? {...inputs, policies} : inputs)
}

export interface PolicyChange {
  policy: string
  action: 'create' | 'update' | 'unchanged' | 'delete'
}

/** Per endpoint, what a change would do to its policy map. */
export interface EndpointPolicyChange {
  endpoint: string
  ip: string
  node?: string
  identity: number | null
  ingressEnforced: {before: boolean; after: boolean}
  egressEnforced: {before: boolean; after: boolean}
  added: PolicyMapEntry[]
  removed: PolicyMapEntry[]
}

export interface PolicyApplyResult {
  cluster: string
  source: string
  dryRun: boolean
  changed: boolean
  revision: number
  policies: PolicyChange[]
  /** Dry run: the endpoints whose entries would change. */
  endpoints?: EndpointPolicyChange[]
}

const plain = (e: PolicyMapEntry): PolicyMapEntry => ({direction: e.direction, identity: e.identity, protocol: e.protocol, port: e.port, endPort: e.endPort})
const entryKey = (e: PolicyMapEntry) => `${e.direction}|${e.identity}|${e.protocol}|${e.port}|${e.endPort}`
const endpointName = (ep: ResolvedEndpoint) => (ep.name ? `${ep.namespace}/${ep.name}` : `${ep.namespace}/${ep.ip}`)

/** The endpoints whose entries or enforcement differ between two resolutions. */
export function diffResolved(before: ResolvedPolicy, after: ResolvedPolicy): EndpointPolicyChange[] {
  const old = new Map(before.endpoints.map((e) => [e.ip, e]))
  const out: EndpointPolicyChange[] = []
  for (const ep of after.endpoints) {
    const was = old.get(ep.ip)
    const had = new Map((was?.entries ?? []).map((e) => [entryKey(e), e]))
    const has = new Map(ep.entries.map((e) => [entryKey(e), e]))
    const added = [...has.entries()].filter(([k]) => !had.has(k)).map(([, e]) => plain(e)).sort(compareEntries)
    const removed = [...had.entries()].filter(([k]) => !has.has(k)).map(([, e]) => plain(e)).sort(compareEntries)
    const ing = {before: was?.ingressEnforced ?? false, after: ep.ingressEnforced}
    const egr = {before: was?.egressEnforced ?? false, after: ep.egressEnforced}
    if (!added.length && !removed.length && ing.before === ing.after && egr.before === egr.after) continue
    out.push({endpoint: endpointName(ep), ip: ep.ip, ...(ep.node ? {node: ep.node} : {}), identity: ep.identity, ingressEnforced: ing, egressEnforced: egr, added, removed})
  }
  return out.sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.ip.localeCompare(b.ip))
}

async function readPolicyFile(input: {file: string; text?: string}): Promise<string> {
  if (input.text !== undefined) return input.text
  return fs.readFile(input.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new PnError('PN_POLICY_INVALID', `read network policy ${input.file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, {hint: 'pass a YAML or JSON file of NetworkPolicy objects, or - to read it from stdin'})
  })
}

/** Write the NetworkPolicies of a file to the store (create or replace each; others untouched). */
export async function applyPolicies(store: ClusterStore, input: {file: string; text?: string}, opts: {dryRun?: boolean} = {}): Promise<PolicyApplyResult> {
  const text = await readPolicyFile(input)
  const policies = parsePolicies(text, input.file === '-' ? 'stdin' : input.file)
  const state = await store.snapshot()
  const values = new Map(policies.map((p) => [idOf(p), JSON.stringify(policyManifest(p))]))
  const {kvs} = await store.kv.range(`${store.keys.v1}policies/`)
  const current = new Map(kvs.map((k) => [k.key, k.value]))
  const changes: PolicyChange[] = policies.map((p) => {
    const have = current.get(store.keys.policy(p.namespace, p.name))
    return {policy: idOf(p), action: have === undefined ? 'create' : have === values.get(idOf(p)) ? 'unchanged' : 'update'}
  })
  const changed = changes.some((c) => c.action !== 'unchanged')
  const base = {cluster: store.location, source: input.file, policies: changes, changed}
  if (opts.dryRun) {
    const merged = new Map(state.policy.policies)
    for (const p of policies) merged.set(idOf(p), p)
    const endpoints = diffResolved(resolveCluster(state), resolveCluster(state, [...merged.values()]))
    return {...base, dryRun: true, revision: state.revision, endpoints}
  }
  const writes: KvWrite[] = policies.filter((_, i) => changes[i].action !== 'unchanged').map((p) => ({put: store.keys.policy(p.namespace, p.name), value: values.get(idOf(p))!}))
  let revision = state.revision
  for (let i = 0; i < writes.length; i += WRITES_PER_TXN) {
    revision = (await store.write('write network policies to', [], writes.slice(i, i + WRITES_PER_TXN))).revision
  }
  return {...base, dryRun: false, revision}
}

/** `NS/NAME`, or NAME in `namespace` (default: default). */
export function policyRef(ref: string, namespace?: string): {namespace: string; name: string} {
  const slash = ref.indexOf('/')
  const [ns, name] = slash < 0 ? [namespace ?? DEFAULT_NAMESPACE, ref] : [ref.slice(0, slash), ref.slice(slash + 1)]
  if (slash >= 0 && namespace !== undefined && namespace !== ns) {
    throw new PnError('PN_INVALID_ARGUMENT', `name policy ${ref}: its namespace ${ns} is not --namespace ${namespace}`, {hint: 'give NS/NAME or NAME with --namespace, not both'})
  }
  checkNamespace(ns, `name policy ${ref}`)
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new PnError('PN_INVALID_ARGUMENT', `name policy ${JSON.stringify(ref)}: not NS/NAME`, {hint: 'e.g. x/deny-all, or deny-all --namespace x'})
  return {namespace: ns, name}
}

export interface PolicyRow {
  namespace: string
  name: string
  podSelector: string
  policyTypes: string[]
  ingressRules: number
  egressRules: number
  /** Endpoints (pod addresses) the policy selects. */
  endpoints: number
}

/** Every policy in the store (or in one namespace), sorted, with what it selects. */
export async function listPolicies(store: ClusterStore, opts: {namespace?: string} = {}): Promise<{cluster: string; revision: number; policies: PolicyRow[]}> {
  if (opts.namespace !== undefined) checkNamespace(opts.namespace, 'list policies')
  const state = await store.snapshot()
  const resolved = resolveCluster(state)
  const selected = new Map<string, number>()
  for (const ep of resolved.endpoints) for (const p of new Set([...ep.ingressPolicies, ...ep.egressPolicies])) selected.set(p, (selected.get(p) ?? 0) + 1)
  const policies = [...state.policy.policies.values()]
    .filter((p) => opts.namespace === undefined || p.namespace === opts.namespace)
    .sort((a, b) => idOf(a).localeCompare(idOf(b)))
    .map((p) => ({
      namespace: p.namespace, name: p.name, podSelector: describeSelector(p.podSelector),
      policyTypes: p.policyTypes.map((t) => (t === 'ingress' ? 'Ingress' : 'Egress')),
      ingressRules: p.ingress.length, egressRules: p.egress.length, endpoints: selected.get(idOf(p)) ?? 0,
    }))
  return {cluster: store.location, revision: state.revision, policies}
}

function notFound(store: ClusterStore, ref: {namespace: string; name: string}, action: string): PnError {
  return new PnError('PN_POLICY_NOT_FOUND', `${action} policy ${idOf(ref)}: no such policy in cluster store ${store.location}`, {hint: `list them with pn policy list --namespace ${ref.namespace}`})
}

/** One policy: its canonical object and the endpoints it selects (`ns/pod`). */
export async function getPolicy(store: ClusterStore, ref: {namespace: string; name: string}): Promise<{cluster: string; policy: Record<string, unknown>; selects: string[]}> {
  const state = await store.snapshot()
  const p = state.policy.policies.get(idOf(ref))
  if (!p) throw notFound(store, ref, 'get')
  const selects = resolveCluster(state).endpoints.filter((ep) => ep.ingressPolicies.includes(idOf(ref)) || ep.egressPolicies.includes(idOf(ref))).map(endpointName)
  return {cluster: store.location, policy: policyManifest(p), selects: [...new Set(selects)].sort()}
}

/** Delete one policy (dry run: what its endpoints would lose). */
export async function deletePolicy(store: ClusterStore, ref: {namespace: string; name: string}, opts: {dryRun?: boolean} = {}): Promise<{cluster: string; policy: string; dryRun: boolean; revision: number; endpoints?: EndpointPolicyChange[]}> {
  const key = store.keys.policy(ref.namespace, ref.name)
  const state = await store.snapshot()
  if (!state.policy.policies.has(idOf(ref))) throw notFound(store, ref, 'delete')
  if (opts.dryRun) {
    const rest = [...state.policy.policies.values()].filter((p) => idOf(p) !== idOf(ref))
    return {cluster: store.location, policy: idOf(ref), dryRun: true, revision: state.revision, endpoints: diffResolved(resolveCluster(state), resolveCluster(state, rest))}
  }
  const r = await store.write('delete network policy from', [], [{delete: key}])
  return {cluster: store.location, policy: idOf(ref), dryRun: false, revision: r.revision}
}

/** `NS/POD` → the pod's endpoint address (IPv4 first); an IP stays itself. */
function targetIp(state: ClusterState, text: string, role: string): string {
  if (tryParseIp(text)) return canonicalIp(text)
  const slash = text.indexOf('/')
  if (slash < 0) throw new PnError('PN_INVALID_ARGUMENT', `trace policy: --${role} ${JSON.stringify(text)} is neither NS/POD nor an IP address`, {hint: `e.g. --${role} x/a or --${role} 192.0.2.10`})
  const [ns, pod] = [text.slice(0, slash), text.slice(slash + 1)]
  const eps = [...state.endpoints.values()].filter((e) => (e.namespace ?? DEFAULT_NAMESPACE) === ns && e.pod === pod)
  if (eps.length === 0) throw new PnError('PN_ENDPOINT_NOT_FOUND', `trace policy: no endpoint of pod ${text} in cluster store`, {hint: 'the pod\'s node publishes it (pn agent start --cluster); check the name with pn policy get or pn identity list'})
  return (eps.find((e) => !e.ip.includes(':')) ?? eps[0]).ip
}

export interface PolicyTraceResult extends TraceResult {
  cluster: string
  revision: number
}

/** `pn policy trace`: the verdict and the rule (or default deny) that decides it, from the store's resolved state. */
export async function tracePolicy(store: ClusterStore, q: {from: string; to: string; port: string}): Promise<PolicyTraceResult> {
  const {protocol, port} = parsePortProtocol(q.port)
  const state = await store.snapshot()
  const from = targetIp(state, q.from, 'from')
  const to = targetIp(state, q.to, 'to')
  return {cluster: store.location, revision: state.revision, ...traceVerdict(resolveCluster(state), from, to, protocol, port)}
}

/** The CIDR identities the store's policies give (what every node derives, numbered afresh). */
export function clusterCidrIdentities(state: ClusterState): CidrIdentity[] {
  return resolvePolicy({...policyInputs(state), endpoints: []}).cidrIdentities
}
