/**
 * Labels in Cilium's form. A pod's security identity is the set of its labels, its namespace
 * and its namespace's labels, each written `source:key=value` with source `k8s`:
 *
 *   k8s:app=web                                               a pod label
 *   k8s:io.kubernetes.pod.namespace=x                         the pod's namespace
 *   k8s:io.cilium.k8s.namespace.labels.team=blue              a label of that namespace
 *
 * Every namespace carries `kubernetes.io/metadata.name=<name>`, as Kubernetes sets it, so the
 * identity names it twice (as the namespace and as a namespace label). The set is sorted; its
 * canonical key (labels joined by `;`) is what one identity number stands for cluster-wide.
 */
import {PnError} from '../errors.js'

export type Labels = Record<string, string>

export const LABEL_SOURCE = 'k8s'
export const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace'
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.'
/** The label Kubernetes puts on every namespace (its own name). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'
export const DEFAULT_NAMESPACE = 'default'

/** A namespace's labels as policy sees them: its own plus `kubernetes.io/metadata.name`. */
export function namespaceLabels(namespace: string, labels: Labels = {}): Labels {
  return {...labels, [NAMESPACE_NAME_LABEL]: namespace}
}

/** The sorted Cilium label set of a pod in `namespace` (whose labels are `nsLabels`). */
export function podLabelSet(namespace: string, podLabels: Labels, nsLabels: Labels = {}): string[] {
  const out = Object.entries(podLabels).map(([k, v]) => `${LABEL_SOURCE}:${k}=${v}`)
  out.push(`${LABEL_SOURCE}:${NAMESPACE_LABEL}=${namespace}`)
  for (const [k, v] of Object.entries(namespaceLabels(namespace, nsLabels))) out.push(`${LABEL_SOURCE}:${NAMESPACE_LABELS_PREFIX}${k}=${v}`)
  return [...new Set(out)].sort()
}

/** The canonical key of a label set: sorted, de-duplicated, joined by `;`. */
export function labelSetKey(labels: string[]): string {
  return [...new Set(labels)].sort().join(';')
}

/** Take a Cilium label set apart (labels of another source, or without `=`, are ignored). */
export function splitLabelSet(labels: string[]): {namespace?: string; pod: Labels; nsLabels: Labels} {
  const pod: Labels = {}
  const nsLabels: Labels = {}
  let namespace: string | undefined
  for (const l of labels) {
    if (!l.startsWith(`${LABEL_SOURCE}:`)) continue
    const body = l.slice(LABEL_SOURCE.length + 1)
    const eq = body.indexOf('=')
    if (eq < 0) continue
    const [k, v] = [body.slice(0, eq), body.slice(eq + 1)]
    if (k === NAMESPACE_LABEL) namespace = v
    else if (k.startsWith(NAMESPACE_LABELS_PREFIX)) nsLabels[k.slice(NAMESPACE_LABELS_PREFIX.length)] = v
    else pod[k] = v
  }
  return {...(namespace !== undefined ? {namespace} : {}), pod, nsLabels}
}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** Why `key` is not a Kubernetes label key (`[prefix/]name`), or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/')
  const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)]
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `label key ${JSON.stringify(key)} has an invalid prefix (a DNS subdomain, lowercase)`
  if (!NAME.test(name)) return `label key ${JSON.stringify(key)} is not a label name (1-63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)`
  return undefined
}

/** Why `value` is not a Kubernetes label value, or undefined when it is one (empty is allowed). */
export function labelValueProblem(value: string): string | undefined {
  if (value === '' || NAME.test(value)) return undefined
  return `label value ${JSON.stringify(value)} is not a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)`
}

/** Why `name` is not a namespace name (a DNS label), or undefined. */
export function namespaceProblem(name: string): string | undefined {
  return DNS_LABEL.test(name) ? undefined : `namespace ${JSON.stringify(name)} is not a DNS label (1-63 of a-z 0-9 -, alphanumeric at both ends)`
}

/** Throw PN_INVALID_ARGUMENT unless `name` is a namespace name. */
export function checkNamespace(name: string, action: string): void {
  const p = namespaceProblem(name)
  if (p) throw new PnError('PN_INVALID_ARGUMENT', `${action}: ${p}`, {hint: 'namespaces are Kubernetes names: lowercase letters, digits and -'})
}

/** A label change as `kubectl label` takes it: `key=value` sets, `key-` removes. */
export interface LabelChange {
  set: Labels
  remove: string[]
}

/** Parse `key=value` and `key-` arguments (PN_INVALID_ARGUMENT naming the bad one). */
export function parseLabelChanges(args: string[], action: string): LabelChange {
  const set: Labels = {}
  const remove: string[] = []
  const bad = (cause: string) => new PnError('PN_INVALID_ARGUMENT', `${action}: ${cause}`, {hint: 'write key=value to set a label and key- to remove it, e.g. app=web tier-'})
  if (args.length === 0) throw bad('no label changes given')
  for (const a of args) {
    const eq = a.indexOf('=')
    if (eq < 0) {
      if (!a.endsWith('-')) throw bad(`${JSON.stringify(a)} is neither key=value nor key-`)
      const key = a.slice(0, -1)
      const p = labelKeyProblem(key)
      if (p) throw bad(p)
      remove.push(key)
      continue
    }
    const [key, value] = [a.slice(0, eq), a.slice(eq + 1)]
    const p = labelKeyProblem(key) ?? labelValueProblem(value)
    if (p) throw bad(p)
    if (key in set && set[key] !== value) throw bad(`label ${key} is given twice`)
    set[key] = value
  }
  for (const k of remove) if (k in set) throw bad(`label ${k} is both set and removed`)
  return {set, remove}
}

/** `labels` with `change` applied (a new object). */
export function applyLabelChanges(labels: Labels, change: LabelChange): Labels {
  const out: Labels = {...labels}
  for (const k of change.remove) delete out[k]
  Object.assign(out, change.set)
  return sortLabels(out)
}

/** The same labels with keys in sorted order (stable JSON). */
export function sortLabels(labels: Labels): Labels {
  return Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}
