/**
 * Namespaces' labels in the cluster store (`pn namespace label`), as `kubectl label namespace`
 * sets them. A namespace's labels are part of its pods' identities, so a change re-identifies
 * every endpoint of the namespace (identities.ts).
 */
import {PnError} from '../errors.js'
import {applyLabelChanges, checkNamespace, NAMESPACE_NAME_LABEL, sortLabels, type LabelChange, type Labels} from '../policy/labels.js'
import {reidentifyEndpoints, type Reidentified} from './identities.js'
import {decodeNamespace} from './policy-state.js'
import type {ClusterStore} from './store.js'

export interface NamespaceLabelResult {
  cluster: string
  namespace: string
  /** The labels as stored (without kubernetes.io/metadata.name, which every namespace carries). */
  labels: Labels
  changed: boolean
  /** Endpoints of the namespace moved to a new identity. */
  endpoints: Reidentified[]
}

/** Set and remove labels of `namespace`; its endpoints follow to their new identities. */
export async function labelNamespace(store: ClusterStore, namespace: string, change: LabelChange): Promise<NamespaceLabelResult> {
  checkNamespace(namespace, 'label namespace')
  if (NAMESPACE_NAME_LABEL in change.set || change.remove.includes(NAMESPACE_NAME_LABEL)) {
    throw new PnError('PN_INVALID_ARGUMENT', `label namespace ${namespace}: ${NAMESPACE_NAME_LABEL} is the namespace's name and cannot be changed`, {hint: 'set or remove other labels'})
  }
  const key = store.keys.namespace(namespace)
  let changed = false
  let labels: Labels = {}
  for (let attempt = 1; ; attempt++) {
    const {kvs} = await store.kv.range(key)
    const found = kvs.find((k) => k.key === key)
    const before = found ? decodeNamespace(key, found.value) : {}
    labels = applyLabelChanges(before, change)
    if (JSON.stringify(labels) === JSON.stringify(sortLabels(before))) break
    const r = await store.write(`label namespace ${namespace} in`, [{key, modRevision: found?.modRevision ?? 0}], [{put: key, value: JSON.stringify({labels})}])
    if (r.succeeded) {
      changed = true
      break
    }
    if (attempt >= 20) throw new PnError('PN_LOCK_TIMEOUT', `label namespace ${namespace} in cluster store ${store.location}: its key kept changing`, {hint: 'retry'})
  }
  // Also when unchanged: endpoints an earlier, interrupted label left behind catch up.
  const {endpoints} = await reidentifyEndpoints(store, (ep) => (ep.namespace ?? 'default') === namespace)
  return {cluster: store.location, namespace, labels, changed, endpoints}
}
