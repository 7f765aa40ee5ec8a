/**
 * Kubernetes label selectors (metav1.LabelSelector): `matchLabels` and `matchExpressions` are
 * ANDed; an empty selector selects everything. NotIn and DoesNotExist also select objects that
 * lack the key, as in Kubernetes.
 */
import type {Labels} from './labels.js'

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'

export interface SelectorRequirement {
  key: string
  operator: SelectorOperator
  values?: string[]
}

export interface LabelSelector {
  matchLabels?: Labels
  matchExpressions?: SelectorRequirement[]
}

/** True when `labels` satisfy every term of `sel`. */
export function selectorMatches(sel: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false
  for (const r of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key)
    switch (r.operator) {
      case 'In':
        if (!has || !(r.values ?? []).includes(labels[r.key])) return false
        break
      case 'NotIn':
        if (has && (r.values ?? []).includes(labels[r.key])) return false
        break
      case 'Exists':
        if (!has) return false
        break
      case 'DoesNotExist':
        if (has) return false
        break
    }
  }
  return true
}

/** A selector as one line: `app=web,tier in (a,b),!legacy`; `{}` (all) for an empty one. */
export function describeSelector(sel: LabelSelector): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`)
  for (const r of sel.matchExpressions ?? []) {
    if (r.operator === 'In') parts.push(`${r.key} in (${(r.values ?? []).join(',')})`)
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${(r.values ?? []).join(',')})`)
    else if (r.operator === 'Exists') parts.push(r.key)
    else parts.push(`!${r.key}`)
  }
  return parts.length ? parts.join(',') : '{}'
}
