/**
 * The policy writer: an `EndpointPolicy` (src/policy/types.ts) becomes entries of pn_policy and
 * pn_policy_ep, a node's `CidrIdentity` list becomes pn_ipcache entries flagged IPCACHE_F_CIDR.
 * Every write is a diff against what the maps hold (or what the caller says they hold), applied
 * as one list of typed map ops, so a policy change touches only the entries that change and
 * never reloads a program (bpf/include/policy.h).
 *
 * Entry shape: the rules of one (direction, peer identity, protocol) have their port ranges
 * merged, then split into aligned port blocks, one LPM entry each; an any-protocol rule makes
 * the other rules of its (direction, identity) redundant and is the only entry written for it.
 *
 * Order of one write, so no packet sees a state looser or stricter than either policy: a
 * direction that opens is opened first (flags only), then entries are added, then removed, then
 * the final state (flags and revision) is written. The revision is a digest of the endpoint's
 * flags and entries: a policy conntrack entry made under another revision is checked against the
 * new rules once (policy.h), so established flows the new rules deny stop.
 */
import {PnError} from '../../errors.js'
import {formatCidr, parseCidr} from '../../cidr/cidr.js'
import {applyOne, type KernelBackend} from '../../kernel/backend.js'
import type {KernelOp, MapEntry} from '../../kernel/ops.js'
import type {CidrIdentity, EndpointPolicy, NodePolicy, PolicyMapEntry} from '../../policy/types.js'
import type {DatapathNode} from '../devices.js'
import {mapPath, pathExists} from './bpffs.js'
import {
  decodeIpcacheInfo,
  decodeIpcacheKey,
  decodePolicyEpInfo,
  decodePolicyEpKey,
  decodePolicyKey,
  decodePolicyValue,
  encodeIpcacheInfo,
  encodeIpcacheKey,
  encodePolicyEpInfo,
  encodePolicyEpKey,
  portBlocks,
  writeU16,
  writeU32,
  POLICY_PREFIX_FIXED,
  IPCACHE_F_CIDR,
  IPCACHE_F_LOCAL,
  type PolicyEpState,
  type PolicyKey,
  type PolicyValue,
} from './maps/index.js'

export const POLICY_MAP = 'pn_policy'
export const POLICY_EP_MAP = 'pn_policy_ep'
const IPCACHE_MAP = 'pn_ipcache'

const PROTOCOLS = new Set([0, 6, 17, 132])

/** One pn_policy entry as bytes. */
export interface PolicyMapWrite {
  key: Buffer
  value: Buffer
}

/** What one endpoint has in the maps (or will have). */
export interface EndpointPolicyState {
  endpointId: number
  /** Undefined: no pn_policy_ep entry (the endpoint is open and untracked). */
  state?: PolicyEpState
  /** By key bytes (as a latin1 string). */
  entries: Map<string, PolicyMapWrite>
}

function badPolicy(endpointId: number, cause: string, details: Record<string, unknown> = {}): PnError {
  return new PnError('PN_INVALID_ARGUMENT', `write policy of endpoint ${endpointId}: ${cause}`, {
    hint: 'an EndpointPolicy entry needs protocol 0/6/17/132, ports in 1..65535 with port ≤ endPort, and port 0 (every port) for protocol 0',
    details: {endpointId, ...details},
  })
}

function checkEntry(endpointId: number, e: PolicyMapEntry): void {
  if (e.direction !== 'ingress' && e.direction !== 'egress') throw badPolicy(endpointId, `direction ${JSON.stringify(e.direction)} is not ingress or egress`, {entry: e})
  if (!(Number.isInteger(e.identity) && e.identity >= 0 && e.identity <= 0xffffffff)) throw badPolicy(endpointId, `identity ${e.identity} is not a 32-bit number`, {entry: e})
  if (!PROTOCOLS.has(e.protocol)) throw badPolicy(endpointId, `protocol ${e.protocol} is not 0 (any), 6, 17 or 132`, {entry: e})
  if (e.port === 0) {
    if (e.endPort !== 0) throw badPolicy(endpointId, `endPort ${e.endPort} without a port`, {entry: e})
    return
  }
  if (e.protocol === 0) throw badPolicy(endpointId, `port ${e.port} with any protocol`, {entry: e})
  if (!Number.isInteger(e.port) || !Number.isInteger(e.endPort) || e.port < 1 || e.endPort > 65535 || e.port > e.endPort) {
    throw badPolicy(endpointId, `port range ${e.port}-${e.endPort} is not within 1..65535 with port ≤ endPort`, {entry: e})
  }
}

/** Merge inclusive ranges that overlap or touch. */
function mergeRanges(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: [number, number][] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1])
    else out.push([r[0], r[1]])
  }
  return out
}

const KEY_SIZE = 16
const VALUE_SIZE = 8

/**
 * The pn_policy entries of one endpoint's rules, by key (pure; see the file comment for the
 * shape). Built for 10,000s of rules: one zeroed slab holds every key and value (views into it),
 * and the same key never gets two values.
 */
export function encodeEndpointRules(policy: Pick<EndpointPolicy, 'endpointId' | 'entries'>): Map<string, PolicyMapWrite> {
  const id = policy.endpointId
  if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw badPolicy(id, 'the endpoint id is not a positive 32-bit number')
  // (direction, identity) → protocol → port ranges as flat [lo, hi, lo, hi, …]
  const groups = new Map<string, {egress: boolean; identity: number; byProto: Map<number, number[]>}>()
  for (const e of policy.entries) {
    checkEntry(id, e)
    const g = `${e.direction === 'egress' ? 'e' : 'i'}${e.identity}`
    let grp = groups.get(g)
    if (!grp) groups.set(g, (grp = {egress: e.direction === 'egress', identity: e.identity, byProto: new Map()}))
    const list = grp.byProto.get(e.protocol)
    const lo = e.port === 0 ? 0 : e.port
    const hi = e.port === 0 ? 65535 : e.endPort
    if (list) list.push(lo, hi)
    else grp.byProto.set(e.protocol, [lo, hi])
  }
  const out = new Map<string, PolicyMapWrite>()
  const stride = KEY_SIZE + VALUE_SIZE
  let slab = Buffer.alloc(stride * Math.max(16, policy.entries.length + 8))
  let off = 0
  const push = (egress: boolean, identity: number, protocol: number, port: number, prefixBits: number, rulePort: number, ruleEndPort: number) => {
    if (off + stride > slab.length) {
      slab = Buffer.alloc(slab.length)
      off = 0
    }
    const key = slab.subarray(off, off + KEY_SIZE)
    const value = slab.subarray(off + KEY_SIZE, off + stride)
    off += stride
    writeU32(key, protocol === 0 ? POLICY_PREFIX_FIXED : POLICY_PREFIX_FIXED + 8 + prefixBits, 0)
    writeU32(key, id, 4)
    writeU32(key, identity, 8)
    key[12] = egress ? 1 : 0
    key[13] = protocol
    key.writeUInt16BE(protocol === 0 ? 0 : port, 14)
    writeU16(value, rulePort, 0)
    writeU16(value, ruleEndPort, 2)
    out.set(key.toString('latin1'), {key, value})
  }
  for (const grp of groups.values()) {
    if (grp.byProto.has(0)) {
      // Any protocol, every port: nothing else of this peer can add to it.
      push(grp.egress, grp.identity, 0, 0, 0, 0, 0)
      continue
    }
    for (const [proto, flat] of grp.byProto) {
      const ranges: [number, number][] = []
      for (let i = 0; i < flat.length; i += 2) ranges.push([flat[i], flat[i + 1]])
      for (const [lo, hi] of ranges.length === 1 ? ranges : mergeRanges(ranges)) {
        const every = lo === 0 && hi === 65535
        if (lo === hi) {
          push(grp.egress, grp.identity, proto, lo, 16, lo, hi)
          continue
        }
        for (const b of portBlocks(lo, hi)) push(grp.egress, grp.identity, proto, b.port, b.prefixBits, every ? 0 : lo, every ? 0 : hi)
      }
    }
  }
  return out
}

/** The entries of `encodeEndpointRules`, decoded (dry runs, tests). */
export function policyMapWrites(policy: Pick<EndpointPolicy, 'endpointId' | 'entries'>): (PolicyKey & PolicyValue)[] {
  return [...encodeEndpointRules(policy).values()].map((w) => ({...decodePolicyKey(w.key), ...decodePolicyValue(w.value)}))
}

/** FNV-1a of one entry's key and value bytes. */
function entryHash(w: PolicyMapWrite): number {
  let h = 0x811c9dc5
  for (const buf of [w.key, w.value]) {
    for (let i = 0; i < buf.length; i++) h = Math.imul(h ^ buf[i], 0x01000193)
  }
  return h >>> 0
}

/**
 * The revision of a state: a digest of the flags and the entries, independent of their order
 * (a sum and an xor of per-entry hashes, mixed), so it needs no sort.
 */
function revisionOf(ingress: boolean, egress: boolean, entries: Map<string, PolicyMapWrite>): number {
  let sum = 0
  let xor = 0
  for (const w of entries.values()) {
    const h = entryHash(w)
    sum = (sum + h) >>> 0
    xor = (xor ^ Math.imul(h, 0x9e3779b1)) >>> 0
  }
  let h = 0x811c9dc5
  for (const v of [ingress ? 1 : 0, egress ? 1 : 0, entries.size, sum, xor]) h = Math.imul(h ^ v, 0x01000193)
  return h >>> 0
}

/** What a desired EndpointPolicy puts in the maps (no state entry for an endpoint open both ways with no rules). */
export function endpointPolicyState(policy: EndpointPolicy): EndpointPolicyState {
  const entries = encodeEndpointRules(policy)
  if (!policy.ingressEnforced && !policy.egressEnforced && entries.size === 0) return {endpointId: policy.endpointId, entries}
  const revision = revisionOf(policy.ingressEnforced, policy.egressEnforced, entries)
  return {endpointId: policy.endpointId, state: {ingressEnforced: policy.ingressEnforced, egressEnforced: policy.egressEnforced, revision}, entries}
}

export interface PolicyDiff {
  endpointId: number
  added: PolicyKey[]
  updated: PolicyKey[]
  removed: PolicyKey[]
  /** The pn_policy_ep entry changes (flags or revision), or goes. */
  stateChanged: boolean
}

function sameState(a?: PolicyEpState, b?: PolicyEpState): boolean {
  if (!a || !b) return a === b
  return a.ingressEnforced === b.ingressEnforced && a.egressEnforced === b.egressEnforced && a.revision === b.revision
}

/** The ops that take one endpoint from `current` to `desired`, in the safe order (file comment), and the diff. Pure. */
export function planEndpointPolicy(root: string, current: EndpointPolicyState, desired: EndpointPolicyState): {ops: KernelOp[]; diff: PolicyDiff} {
  const policyPin = mapPath(root, POLICY_MAP)
  const epPin = mapPath(root, POLICY_EP_MAP)
  const epKey = encodePolicyEpKey(desired.endpointId)
  const diff: PolicyDiff = {endpointId: desired.endpointId, added: [], updated: [], removed: [], stateChanged: !sameState(current.state, desired.state)}
  const ops: KernelOp[] = []
  const cur = current.state
  const want = desired.state
  // 1. A direction that opens opens first: only the flags both states enforce, old revision.
  if (cur && (!want || (cur.ingressEnforced && !want.ingressEnforced) || (cur.egressEnforced && !want.egressEnforced))) {
    const both: PolicyEpState = {ingressEnforced: cur.ingressEnforced && !!want?.ingressEnforced, egressEnforced: cur.egressEnforced && !!want?.egressEnforced, revision: cur.revision}
    if (!sameState(both, cur)) ops.push({kind: 'map.update', map: epPin, key: epKey, value: encodePolicyEpInfo(both)})
  }
  // 2. Entries added or changed; 3. entries removed.
  for (const [k, w] of desired.entries) {
    const have = current.entries.get(k)
    if (have && have.value.equals(w.value)) continue
    ops.push({kind: 'map.update', map: policyPin, key: w.key, value: w.value})
    ;(have ? diff.updated : diff.added).push(decodePolicyKey(w.key))
  }
  for (const [k, w] of current.entries) {
    if (desired.entries.has(k)) continue
    ops.push({kind: 'map.delete', map: policyPin, key: w.key, missingOk: true})
    diff.removed.push(decodePolicyKey(w.key))
  }
  // 4. The final state.
  if (diff.stateChanged) {
    if (want) ops.push({kind: 'map.update', map: epPin, key: epKey, value: encodePolicyEpInfo(want)})
    else ops.push({kind: 'map.delete', map: epPin, key: epKey, missingOk: true})
  }
  return {ops, diff}
}

/** Decode dumped pn_policy / pn_policy_ep entries into per-endpoint states. */
export function policyStatesFromDump(policy: MapEntry[], eps: MapEntry[]): Map<number, EndpointPolicyState> {
  const out = new Map<number, EndpointPolicyState>()
  const get = (id: number) => {
    let s = out.get(id)
    if (!s) out.set(id, (s = {endpointId: id, entries: new Map()}))
    return s
  }
  for (const e of eps) {
    if (!e.value) continue
    get(decodePolicyEpKey(e.key).endpointId).state = decodePolicyEpInfo(e.value)
  }
  for (const e of policy) {
    if (!e.value) continue
    get(decodePolicyKey(e.key).endpointId).entries.set(e.key.toString('latin1'), {key: e.key, value: e.value})
  }
  return out
}

async function requirePolicyMaps(root: string, action: string): Promise<void> {
  for (const m of [POLICY_MAP, POLICY_EP_MAP]) {
    if (await pathExists(mapPath(root, m))) continue
    throw new PnError('PN_BPF_NOT_LOADED', `${action}: map ${m} is not pinned under ${root}`, {
      hint: 'load the datapath (`pn node init` in bpf mode, or `pn bpf load --host`); a node loaded by an older pn gets the policy maps from a new `pn bpf load --host`',
    })
  }
}

async function dumpPolicyStates(kernel: KernelBackend, root: string): Promise<Map<number, EndpointPolicyState>> {
  const [p, e] = await Promise.all([
    applyOne(kernel, {kind: 'map.dump', map: mapPath(root, POLICY_MAP)}),
    applyOne(kernel, {kind: 'map.dump', map: mapPath(root, POLICY_EP_MAP)}),
  ])
  return policyStatesFromDump(p.entries, e.entries)
}

export interface PolicyWriteResult {
  changed: boolean
  /** Map ops applied (or, with dryRun, that would be). */
  mapOps: number
  /** Per endpoint whose maps change. */
  endpoints: PolicyDiff[]
  dryRun: boolean
}

export interface PolicyWriteOptions {
  dryRun?: boolean
  signal?: AbortSignal
}

/**
 * Write one endpoint's policy. `current`: the policy last written for it (the diff is then made
 * without reading the maps); without it, the maps are dumped.
 */
export async function writeEndpointPolicy(kernel: KernelBackend, node: Pick<DatapathNode, 'bpffsRoot'>, policy: EndpointPolicy, current?: EndpointPolicy, opts: PolicyWriteOptions = {}): Promise<PolicyWriteResult> {
  const root = node.bpffsRoot
  const desired = endpointPolicyState(policy)
  if (current && current.endpointId !== policy.endpointId) throw badPolicy(policy.endpointId, `the current policy given is endpoint ${current.endpointId}'s`)
  await requirePolicyMaps(root, `write policy of endpoint ${policy.endpointId}`)
  const have = current ? endpointPolicyState(current) : ((await dumpPolicyStates(kernel, root)).get(policy.endpointId) ?? {endpointId: policy.endpointId, entries: new Map()})
  const {ops, diff} = planEndpointPolicy(root, have, desired)
  if (ops.length > 0 && !opts.dryRun) await kernel.apply(ops, opts.signal ? {signal: opts.signal} : {})
  return {changed: ops.length > 0, mapOps: ops.length, endpoints: ops.length > 0 ? [diff] : [], dryRun: opts.dryRun === true}
}

export interface NodePolicyWriteResult extends PolicyWriteResult {
  cidrs: {added: string[]; updated: string[]; removed: string[]; /** Prefixes held by a pod or node entry: the pod's identity stays. */ skipped: string[]}
}

function canonicalCidr(cidr: string): string {
  return formatCidr(parseCidr(cidr).cidr)
}

/** The pn_ipcache ops for the policy CIDRs (entries flagged IPCACHE_F_CIDR only). Pure. */
export function planCidrIdentities(root: string, ipcache: MapEntry[], cidrs: CidrIdentity[]): {ops: KernelOp[]; cidrs: NodePolicyWriteResult['cidrs']} {
  const pin = mapPath(root, IPCACHE_MAP)
  const ours = new Map<string, number>()
  const others = new Set<string>()
  for (const e of ipcache) {
    if (!e.value) continue
    const prefix = canonicalCidr(decodeIpcacheKey(e.key).prefix)
    const info = decodeIpcacheInfo(e.value)
    if (info.flags & IPCACHE_F_CIDR) ours.set(prefix, info.identity)
    else others.add(prefix)
  }
  const want = new Map<string, number>()
  for (const c of cidrs) {
    const prefix = canonicalCidr(c.cidr)
    if (!Number.isInteger(c.identity) || c.identity < 0 || c.identity > 0xffffffff) {
      throw new PnError('PN_INVALID_ARGUMENT', `write policy CIDR ${prefix}: identity ${c.identity} is not a 32-bit number`, {hint: 'CIDR identities come from policy resolution (from 1<<24)', details: {cidr: c}})
    }
    const prev = want.get(prefix)
    if (prev !== undefined && prev !== c.identity) {
      throw new PnError('PN_INVALID_ARGUMENT', `write policy CIDR ${prefix}: given twice, with identities ${prev} and ${c.identity}`, {hint: 'one identity per CIDR', details: {cidr: prefix}})
    }
    want.set(prefix, c.identity)
  }
  const out: NodePolicyWriteResult['cidrs'] = {added: [], updated: [], removed: [], skipped: []}
  const ops: KernelOp[] = []
  for (const [prefix, identity] of [...want].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (others.has(prefix)) {
      out.skipped.push(prefix)
      continue
    }
    const have = ours.get(prefix)
    if (have === identity) continue
    ops.push({kind: 'map.update', map: pin, key: encodeIpcacheKey(prefix), value: encodeIpcacheInfo({identity, flags: IPCACHE_F_CIDR})})
    ;(have === undefined ? out.added : out.updated).push(prefix)
  }
  for (const prefix of [...ours.keys()].sort()) {
    if (want.has(prefix) && !others.has(prefix)) continue
    ops.push({kind: 'map.delete', map: pin, key: encodeIpcacheKey(prefix), missingOk: true})
    out.removed.push(prefix)
  }
  return {ops, cidrs: out}
}

/**
 * Write a node's whole policy: every listed endpoint's entries and state, nothing left for an
 * endpoint not listed (it is open), and the policy CIDRs in pn_ipcache. `current`: the node
 * policy last written (no map reads for the endpoints then; pn_ipcache is always read, since
 * other writers share it). CIDRs are written before the rules that name them and removed after.
 */
export async function writeNodePolicy(kernel: KernelBackend, node: Pick<DatapathNode, 'bpffsRoot'>, policy: NodePolicy, current?: NodePolicy, opts: PolicyWriteOptions = {}): Promise<NodePolicyWriteResult> {
  const root = node.bpffsRoot
  const seen = new Set<number>()
  for (const ep of policy.endpoints) {
    if (seen.has(ep.endpointId)) throw badPolicy(ep.endpointId, 'the node policy lists this endpoint twice')
    seen.add(ep.endpointId)
  }
  const desired = new Map(policy.endpoints.map((ep) => [ep.endpointId, endpointPolicyState(ep)]))
  await requirePolicyMaps(root, 'write node policy')
  const have = current ? new Map(current.endpoints.map((ep) => [ep.endpointId, endpointPolicyState(ep)])) : await dumpPolicyStates(kernel, root)
  const ipcache = (await applyOne(kernel, {kind: 'map.dump', map: mapPath(root, IPCACHE_MAP)})).entries
  const cidr = planCidrIdentities(root, ipcache, policy.cidrIdentities)
  const cidrAdds = cidr.ops.filter((o) => o.kind === 'map.update')
  const cidrDels = cidr.ops.filter((o) => o.kind === 'map.delete')
  const ops: KernelOp[] = [...cidrAdds]
  const diffs: PolicyDiff[] = []
  const ids = [...new Set([...desired.keys(), ...have.keys()])].sort((a, b) => a - b)
  for (const id of ids) {
    const want = desired.get(id) ?? {endpointId: id, entries: new Map()}
    const plan = planEndpointPolicy(root, have.get(id) ?? {endpointId: id, entries: new Map()}, want)
    if (plan.ops.length === 0) continue
    ops.push(...plan.ops)
    diffs.push(plan.diff)
  }
  ops.push(...cidrDels)
  if (ops.length > 0 && !opts.dryRun) await kernel.apply(ops, opts.signal ? {signal: opts.signal} : {})
  return {changed: ops.length > 0, mapOps: ops.length, endpoints: diffs, dryRun: opts.dryRun === true, cidrs: cidr.cidrs}
}

/** The op that removes an endpoint's pn_policy_ep entry; its `deleted` answer says whether it had policy. */
export function forgetPolicyStateOp(root: string, endpointId: number): KernelOp {
  return {kind: 'map.delete', map: mapPath(root, POLICY_EP_MAP), key: encodePolicyEpKey(endpointId), missingOk: true}
}

/** Delete an endpoint's pn_policy entries, found by dumping the map. */
export async function removeEndpointPolicyEntries(kernel: KernelBackend, root: string, endpointId: number): Promise<number> {
  const pin = mapPath(root, POLICY_MAP)
  const {entries} = await applyOne(kernel, {kind: 'map.dump', map: pin})
  const ops: KernelOp[] = entries.filter((e) => decodePolicyKey(e.key).endpointId === endpointId).map((e) => ({kind: 'map.delete', map: pin, key: e.key, missingOk: true}))
  if (ops.length > 0) await kernel.apply(ops)
  return ops.length
}

/**
 * Remove everything an endpoint has in the policy maps (its teardown). One missingOk delete of
 * its pn_policy_ep entry says whether it had any; only then is pn_policy dumped for its
 * entries (the writer keeps a state entry for every endpoint with entries).
 */
export async function forgetEndpointPolicy(kernel: KernelBackend, root: string, endpointId: number): Promise<{removed: number}> {
  if (!(await pathExists(mapPath(root, POLICY_EP_MAP)))) return {removed: 0}
  const [r] = await kernel.apply([forgetPolicyStateOp(root, endpointId)])
  if (!(r as {deleted?: boolean}).deleted) return {removed: 0}
  return {removed: 1 + (await removeEndpointPolicyEntries(kernel, root, endpointId))}
}

/** Set the identity of local endpoint addresses in pn_ipcache (a pod's identity, or a relabel). */
export async function writeEndpointIdentity(kernel: KernelBackend, node: Pick<DatapathNode, 'bpffsRoot'>, ips: string[], identity: number): Promise<void> {
  if (!Number.isInteger(identity) || identity < 0 || identity > 0xffffffff) {
    throw new PnError('PN_INVALID_ARGUMENT', `write identity ${identity} of ${ips.join(', ')}: not a 32-bit number`, {hint: 'identities come from the cluster store (from 256)'})
  }
  const pin = mapPath(node.bpffsRoot, IPCACHE_MAP)
  const ops: KernelOp[] = ips.map((ip) => ({kind: 'map.update', map: pin, key: encodeIpcacheKey(`${ip}/${ip.includes(':') ? 128 : 32}`), value: encodeIpcacheInfo({identity, flags: IPCACHE_F_LOCAL})}))
  if (ops.length > 0) await kernel.apply(ops)
}
