/**
 * The policy half of a ClusterState: identities, namespaces' labels and NetworkPolicies as the
 * store holds them (layout.ts), decoded. ClusterState hands it the keys of those spaces, from a
 * consistent read and then from the watch, so an agent following the cluster has them current.
 * Pure: no I/O.
 */
import {PnError} from '../errors.js'
import {labelKeyProblem, labelValueProblem, type Labels} from '../policy/labels.js'
import {parsePolicyObject, type NetworkPolicy} from '../policy/parse.js'

/** The spaces under v1/ this state holds. */
export const POLICY_SPACES = ['identities', 'identity-labels', 'namespaces', 'policies'] as const
export type PolicySpace = (typeof POLICY_SPACES)[number]

export interface ClusterIdentity {
  id: number
  labels: string[]
  createdAt: string
}

export interface IdentityClaim {
  id: number
  labels: string[]
  /** Set when the collector found no endpoint using it; freed a grace period later. */
  unusedSince?: string
}

function corrupt(key: string, cause: string): PnError {
  return new PnError('PN_CLUSTER_CORRUPT', `read cluster store key ${key}: ${cause}`, {
    hint: 'pn skips the key; rewrite it with the pn command that owns it (pn policy apply, pn namespace label) or delete it by hand',
    details: {key},
  })
}

function json(key: string, text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw corrupt(key, 'not valid JSON')
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw corrupt(key, 'not a JSON object')
  return v as Record<string, unknown>
}

const isLabelSet = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string')
const isId = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0

export function decodeIdentity(key: string, text: string): ClusterIdentity {
  const v = json(key, text)
  if (!isId(v.id) || !isLabelSet(v.labels) || typeof v.createdAt !== 'string') throw corrupt(key, 'not an identity {id, labels, createdAt}')
  return {id: v.id, labels: v.labels, createdAt: v.createdAt}
}

export function decodeClaim(key: string, text: string): IdentityClaim {
  const v = json(key, text)
  if (!isId(v.id) || !isLabelSet(v.labels) || !(v.unusedSince === undefined || typeof v.unusedSince === 'string')) throw corrupt(key, 'not an identity claim {id, labels}')
  return {id: v.id, labels: v.labels, ...(v.unusedSince ? {unusedSince: v.unusedSince as string} : {})}
}

export function decodeNamespace(key: string, text: string): Labels {
  const v = json(key, text)
  const l = v.labels as Record<string, unknown> | undefined
  if (!l || typeof l !== 'object' || Array.isArray(l) || !Object.entries(l).every(([k, x]) => typeof x === 'string' && !labelKeyProblem(k) && !labelValueProblem(x))) {
    throw corrupt(key, 'not a namespace {labels}')
  }
  return l as Labels
}

export function decodePolicy(key: string, text: string): NetworkPolicy {
  const v = json(key, text)
  try {
    return parsePolicyObject(v, `key ${key}`)
  } catch (err) {
    if (err instanceof PnError) throw corrupt(key, err.message)
    throw err
  }
}

export class PolicyState {
  readonly identities = new Map<number, ClusterIdentity>()
  /** By the key's hash (layout.ts identityLabels). */
  readonly claims = new Map<string, IdentityClaim>()
  readonly namespaces = new Map<string, Labels>()
  /** By `ns/name`. */
  readonly policies = new Map<string, NetworkPolicy>()

  /** Decode a key of one of POLICY_SPACES (`name`: the rest of the key after the space). */
  set(space: PolicySpace, name: string, key: string, value: string): void {
    switch (space) {
      case 'identities': {
        const i = decodeIdentity(key, value)
        if (String(i.id) !== name) throw corrupt(key, `holds identity ${i.id}`)
        this.identities.set(i.id, i)
        return
      }
      case 'identity-labels':
        this.claims.set(name, decodeClaim(key, value))
        return
      case 'namespaces':
        this.namespaces.set(name, decodeNamespace(key, value))
        return
      case 'policies': {
        const p = decodePolicy(key, value)
        if (`${p.namespace}/${p.name}` !== name) throw corrupt(key, `holds policy ${p.namespace}/${p.name}`)
        this.policies.set(name, p)
        return
      }
    }
  }

  unset(space: PolicySpace, name: string): void {
    if (space === 'identities') this.identities.delete(Number(name))
    else if (space === 'identity-labels') this.claims.delete(name)
    else if (space === 'namespaces') this.namespaces.delete(name)
    else this.policies.delete(name)
  }
}
