/**
 * Kubernetes `networking.k8s.io/v1` NetworkPolicy objects, parsed and checked into pn's model.
 * Input is YAML or JSON: one object, several YAML documents, or a `List` (kubectl's
 * `get -o yaml` form). Everything the spec allows that pn does not enforce (named ports, …) and
 * every field pn does not know is an error naming its path (`spec.ingress[0].ports[1].port`),
 * never ignored: a policy that says less than its author wrote would let traffic through.
 */
import yaml from 'js-yaml'
import {parseCidr, cidrsOverlap, formatCidr} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {DEFAULT_NAMESPACE, labelKeyProblem, labelValueProblem, namespaceProblem, type Labels} from './labels.js'
import type {LabelSelector, SelectorOperator, SelectorRequirement} from './selector.js'
import type {PolicyDirection} from './types.js'

export type PortProtocol = 'TCP' | 'UDP' | 'SCTP'

/** A port rule: `port` absent = every port of the protocol; `endPort` makes it a range. */
export interface PolicyPort {
  protocol: PortProtocol
  port?: number
  endPort?: number
}

/** A peer: pods (by pod and/or namespace selector) or addresses (ipBlock). */
export type PolicyPeer =
  | {podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: undefined}
  | {ipBlock: {cidr: string; except: string[]}; podSelector?: undefined; namespaceSelector?: undefined}

/** One ingress or egress rule; `peers` empty = every peer, `ports` empty = every port. */
export interface PolicyRule {
  peers: PolicyPeer[]
  ports: PolicyPort[]
}

/** A NetworkPolicy as pn enforces it (policyTypes defaulted as Kubernetes does). */
export interface NetworkPolicy {
  namespace: string
  name: string
  podSelector: LabelSelector
  policyTypes: PolicyDirection[]
  ingress: PolicyRule[]
  egress: PolicyRule[]
}

export const POLICY_API_VERSION = 'networking.k8s.io/v1'

const HINT = 'fix the field named in the message; pn takes networking.k8s.io/v1 NetworkPolicy objects (docs/POLICY.md lists what is supported)'

class Where {
  constructor(readonly source: string) {}

  fail(path: string, cause: string): never {
    throw new PnError('PN_POLICY_INVALID', `parse network policy ${this.source}: ${path ? `${path}: ` : ''}${cause}`, {hint: HINT, details: {source: this.source, path}})
  }
}

type Obj = Record<string, unknown>

function isObj(v: unknown): v is Obj {
  return !!v && typeof v === 'object' && !Array.isArray(v)
}

function object(w: Where, v: unknown, path: string, known: string[]): Obj {
  if (!isObj(v)) w.fail(path, 'must be an object')
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) w.fail(path ? `${path}.${k}` : k, `unknown field (pn knows ${known.join(', ')})`)
  }
  return v
}

function list(w: Where, v: unknown, path: string): unknown[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) w.fail(path, 'must be a list')
  return v
}

function str(w: Where, v: unknown, path: string): string {
  if (typeof v !== 'string') w.fail(path, 'must be a string')
  return v
}

function labels(w: Where, v: unknown, path: string): Labels {
  if (v === undefined || v === null) return {}
  if (!isObj(v)) w.fail(path, 'must be a map of label keys to values')
  const out: Labels = {}
  for (const [k, val] of Object.entries(v)) {
    const kp = labelKeyProblem(k)
    if (kp) w.fail(`${path}.${k}`, kp)
    if (typeof val !== 'string') w.fail(`${path}.${k}`, 'a label value must be a string (quote numbers and booleans in YAML)')
    const vp = labelValueProblem(val)
    if (vp) w.fail(`${path}.${k}`, vp)
    out[k] = val
  }
  return out
}

const OPERATORS: SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist']

function selector(w: Where, v: unknown, path: string): LabelSelector {
  if (v === null) return {}
  const o = object(w, v, path, ['matchLabels', 'matchExpressions'])
  const out: LabelSelector = {}
  const ml = labels(w, o.matchLabels, `${path}.matchLabels`)
  if (Object.keys(ml).length) out.matchLabels = ml
  const exprs = list(w, o.matchExpressions, `${path}.matchExpressions`).map((e, i): SelectorRequirement => {
    const p = `${path}.matchExpressions[${i}]`
    const r = object(w, e, p, ['key', 'operator', 'values'])
    const key = str(w, r.key, `${p}.key`)
    const kp = labelKeyProblem(key)
    if (kp) w.fail(`${p}.key`, kp)
    const op = str(w, r.operator, `${p}.operator`)
    if (!OPERATORS.includes(op as SelectorOperator)) w.fail(`${p}.operator`, `${JSON.stringify(op)} is not one of ${OPERATORS.join(', ')}`)
    const values = list(w, r.values, `${p}.values`).map((x, j) => {
      const s = str(w, x, `${p}.values[${j}]`)
      const vp = labelValueProblem(s)
      if (vp) w.fail(`${p}.values[${j}]`, vp)
      return s
    })
    if ((op === 'In' || op === 'NotIn') && values.length === 0) w.fail(`${p}.values`, `must not be empty for operator ${op}`)
    if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) w.fail(`${p}.values`, `must be empty for operator ${op}`)
    return {key, operator: op as SelectorOperator, ...(values.length ? {values: [...new Set(values)].sort()} : {})}
  })
  if (exprs.length) out.matchExpressions = exprs
  return out
}

function ipBlock(w: Where, v: unknown, path: string): {cidr: string; except: string[]} {
  const o = object(w, v, path, ['cidr', 'except'])
  const cidrText = str(w, o.cidr, `${path}.cidr`)
  const parse = (text: string, p: string) => {
    try {
      return parseCidr(text).cidr
    } catch (err) {
      return w.fail(p, `${JSON.stringify(text)} is not a CIDR (${(err as PnError).message.replace(/^parse cidr "[^"]*": /, '')})`)
    }
  }
  const cidr = parse(cidrText, `${path}.cidr`)
  const except = list(w, o.except, `${path}.except`).map((x, i) => {
    const p = `${path}.except[${i}]`
    const e = parse(str(w, x, p), p)
    // Kubernetes rejects an except that is not strictly inside the cidr.
    if (e.family !== cidr.family || e.prefix <= cidr.prefix || !cidrsOverlap(e, cidr)) w.fail(p, `${formatCidr(e)} is not strictly inside ${formatCidr(cidr)}`)
    return formatCidr(e)
  })
  return {cidr: formatCidr(cidr), except: [...new Set(except)].sort()}
}

function peer(w: Where, v: unknown, path: string): PolicyPeer {
  const o = object(w, v, path, ['podSelector', 'namespaceSelector', 'ipBlock'])
  if (o.ipBlock !== undefined && o.ipBlock !== null) {
    if (o.podSelector != null || o.namespaceSelector != null) w.fail(path, 'ipBlock cannot be combined with podSelector or namespaceSelector in one peer')
    return {ipBlock: ipBlock(w, o.ipBlock, `${path}.ipBlock`)}
  }
  if (o.podSelector == null && o.namespaceSelector == null) w.fail(path, 'a peer needs podSelector, namespaceSelector or ipBlock')
  return {
    ...(o.podSelector != null ? {podSelector: selector(w, o.podSelector, `${path}.podSelector`)} : {}),
    ...(o.namespaceSelector != null ? {namespaceSelector: selector(w, o.namespaceSelector, `${path}.namespaceSelector`)} : {}),
  }
}

const PROTOCOLS: PortProtocol[] = ['TCP', 'UDP', 'SCTP']

function port(w: Where, v: unknown, path: string): PolicyPort {
  const o = object(w, v, path, ['protocol', 'port', 'endPort'])
  const protocol = o.protocol == null ? 'TCP' : str(w, o.protocol, `${path}.protocol`)
  if (!PROTOCOLS.includes(protocol as PortProtocol)) w.fail(`${path}.protocol`, `${JSON.stringify(protocol)} is not one of ${PROTOCOLS.join(', ')}`)
  const out: PolicyPort = {protocol: protocol as PortProtocol}
  if (o.port != null) {
    if (typeof o.port === 'string') w.fail(`${path}.port`, `named ports are not supported (${JSON.stringify(o.port)}); give the port number`)
    if (!Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535) w.fail(`${path}.port`, 'must be a port number 1-65535')
    out.port = o.port as number
  }
  if (o.endPort != null) {
    if (out.port === undefined) w.fail(`${path}.endPort`, 'may not be given without a numeric port')
    if (!Number.isInteger(o.endPort) || (o.endPort as number) < out.port || (o.endPort as number) > 65535) w.fail(`${path}.endPort`, `must be a port number from port (${out.port}) to 65535`)
    out.endPort = o.endPort as number
  }
  return out
}

function rule(w: Where, v: unknown, path: string, peersField: 'from' | 'to'): PolicyRule {
  const o = object(w, v === null ? {} : v, path, [peersField, 'ports'])
  return {
    peers: list(w, o[peersField], `${path}.${peersField}`).map((p, i) => peer(w, p, `${path}.${peersField}[${i}]`)),
    ports: list(w, o.ports, `${path}.ports`).map((p, i) => port(w, p, `${path}.ports[${i}]`)),
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

/** One NetworkPolicy object (already decoded from YAML/JSON) into pn's model. */
export function parsePolicyObject(v: unknown, source: string): NetworkPolicy {
  const w = new Where(source)
  const o = object(w, v, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status'])
  if (o.apiVersion !== POLICY_API_VERSION) w.fail('apiVersion', `${JSON.stringify(o.apiVersion)} is not ${POLICY_API_VERSION}`)
  if (o.kind !== 'NetworkPolicy') w.fail('kind', `${JSON.stringify(o.kind)} is not NetworkPolicy`)
  if (o.status != null && !(isObj(o.status) && Object.keys(o.status).length === 0)) w.fail('status', 'must be empty (pn reports no policy status)')
  // Metadata that does not change what the policy allows is accepted (kubectl get -o yaml writes it).
  const m = object(w, o.metadata, 'metadata', ['name', 'namespace', 'labels', 'annotations', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields'])
  const name = str(w, m.name, 'metadata.name')
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) w.fail('metadata.name', `${JSON.stringify(name)} is not a DNS subdomain (lowercase letters, digits, - and .)`)
  const namespace = m.namespace == null ? DEFAULT_NAMESPACE : str(w, m.namespace, 'metadata.namespace')
  const np = namespaceProblem(namespace)
  if (np) w.fail('metadata.namespace', np)
  const where = new Where(`${namespace}/${name} (${source})`)
  const s = object(where, o.spec, 'spec', ['podSelector', 'policyTypes', 'ingress', 'egress'])
  if (s.podSelector === undefined) where.fail('spec.podSelector', 'is required ({} selects every pod of the namespace)')
  const podSelector = selector(where, s.podSelector, 'spec.podSelector')
  const ingress = list(where, s.ingress, 'spec.ingress').map((r, i) => rule(where, r, `spec.ingress[${i}]`, 'from'))
  const egress = list(where, s.egress, 'spec.egress').map((r, i) => rule(where, r, `spec.egress[${i}]`, 'to'))
  let policyTypes: PolicyDirection[]
  const types = list(where, s.policyTypes, 'spec.policyTypes')
  if (types.length === 0) {
    // Kubernetes' defaulting: always Ingress; Egress when the policy has egress rules.
    policyTypes = egress.length > 0 ? ['ingress', 'egress'] : ['ingress']
  } else {
    const set = new Set<PolicyDirection>()
    types.forEach((t, i) => {
      if (t !== 'Ingress' && t !== 'Egress') where.fail(`spec.policyTypes[${i}]`, `${JSON.stringify(t)} is not Ingress or Egress`)
      set.add(t === 'Ingress' ? 'ingress' : 'egress')
    })
    policyTypes = (['ingress', 'egress'] as const).filter((d) => set.has(d))
    if (!set.has('ingress') && ingress.length > 0) where.fail('spec.ingress', 'ingress rules given but policyTypes does not list Ingress')
    if (!set.has('egress') && egress.length > 0) where.fail('spec.egress', 'egress rules given but policyTypes does not list Egress')
  }
  return {namespace, name, podSelector, policyTypes, ingress, egress}
}

/**
 * Parse a file's text: YAML or JSON, one object, several documents, or a `List` of them.
 * `source` names the file in errors. Two policies with one namespace/name are an error.
 */
export function parsePolicies(text: string, source: string): NetworkPolicy[] {
  let docs: unknown[]
  try {
    docs = yaml.loadAll(text, undefined, {schema: yaml.CORE_SCHEMA, filename: source})
  } catch (err) {
    const e = err as {reason?: string; mark?: {line: number; column: number}; message: string}
    const at = e.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : ''
    throw new PnError('PN_POLICY_INVALID', `parse network policy ${source}: not valid YAML or JSON${at}: ${e.reason ?? e.message}`, {hint: HINT, details: {source}})
  }
  const out: NetworkPolicy[] = []
  const multi = docs.filter((d) => d !== null && d !== undefined).length > 1
  docs.forEach((doc, i) => {
    if (doc === null || doc === undefined) return
    const where = multi ? `${source} document ${i + 1}` : source
    if (isObj(doc) && (doc.kind === 'List' || doc.kind === 'NetworkPolicyList')) {
      const w = new Where(where)
      const l = object(w, doc, '', ['apiVersion', 'kind', 'items', 'metadata'])
      list(w, l.items, 'items').forEach((item, j) => out.push(parsePolicyObject(item, `${where} items[${j}]`)))
      return
    }
    out.push(parsePolicyObject(doc, where))
  })
  if (out.length === 0) throw new PnError('PN_POLICY_INVALID', `parse network policy ${source}: no NetworkPolicy objects in it`, {hint: HINT, details: {source}})
  const seen = new Set<string>()
  for (const p of out) {
    const id = `${p.namespace}/${p.name}`
    if (seen.has(id)) throw new PnError('PN_POLICY_INVALID', `parse network policy ${source}: ${id} is given twice`, {hint: 'keep one object per namespace/name', details: {source, policy: id}})
    seen.add(id)
  }
  return out
}

/** The policy as a canonical networking.k8s.io/v1 object (what the cluster store keeps, what `pn policy get` shows). */
export function policyManifest(p: NetworkPolicy): Record<string, unknown> {
  const peers = (r: PolicyRule) => r.peers.map((x) => (x.ipBlock ? {ipBlock: {cidr: x.ipBlock.cidr, ...(x.ipBlock.except.length ? {except: x.ipBlock.except} : {})}} : {...x}))
  const rule = (r: PolicyRule, field: 'from' | 'to') => ({...(r.peers.length ? {[field]: peers(r)} : {}), ...(r.ports.length ? {ports: r.ports} : {})})
  return {
    apiVersion: POLICY_API_VERSION,
    kind: 'NetworkPolicy',
    metadata: {name: p.name, namespace: p.namespace},
    spec: {
      podSelector: p.podSelector,
      policyTypes: p.policyTypes.map((t) => (t === 'ingress' ? 'Ingress' : 'Egress')),
      ...(p.policyTypes.includes('ingress') ? {ingress: p.ingress.map((r) => rule(r, 'from'))} : {}),
      ...(p.policyTypes.includes('egress') ? {egress: p.egress.map((r) => rule(r, 'to'))} : {}),
    },
  }
}
