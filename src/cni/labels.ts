/**
 * A pod's labels as a runtime hands them to pn on ADD. Two sources, merged in this order (a key
 * in the later one wins):
 *   - `args.cni.labels` in the network config, the CNI CONVENTIONS form
 *     (`[{"key": "app", "value": "web"}]`), for runtimes and tools that fill it (cnitool, labs);
 *   - the pod annotation `pn.cni/labels` in `runtimeConfig["io.kubernetes.cri.pod-annotations"]`,
 *     which containerd's CRI plugin fills when the plugin's conflist declares that capability.
 *     kubelet passes a pod's annotations to the runtime, never its labels, so a pod that wants
 *     policy identity from kubelet carries its labels in this annotation, as a JSON object
 *     (`{"app":"web"}`) or `app=web,tier=db`.
 * Keys and values are checked with Kubernetes' label syntax (src/policy/labels.ts, the one check
 * of it): a bad one fails the ADD (code 7) naming it, rather than giving the pod an identity it did
 * not ask for.
 */
import {PnError} from '../errors.js'
import {labelKeyProblem, labelValueProblem} from '../policy/labels.js'

/** The pod annotation that carries labels (through containerd's pod-annotations capability). */
export const LABELS_ANNOTATION = 'pn.cni/labels'
export const POD_ANNOTATIONS_CAPABILITY = 'io.kubernetes.cri.pod-annotations'

/** `read network config: WHERE: PROBLEM`, code 7; `bad(where, what, cause)` says `label WHAT CAUSE`. */
function bad(where: string, what: string, cause?: string): PnError {
  return new PnError('PN_CNI_INVALID_CONFIG', `read network config: ${where}: ${cause === undefined ? what : `label ${what} ${cause}`}`, {
    hint: `fix the pod's labels in ${where} (Kubernetes label syntax: [prefix/]name=value)`,
  })
}

function put(out: Record<string, string>, where: string, key: unknown, value: unknown): void {
  if (typeof key !== 'string') throw bad(where, JSON.stringify(key), 'has no string key')
  if (typeof value !== 'string') throw bad(where, JSON.stringify(key), 'has no string value')
  const k = labelKeyProblem(key)
  if (k) throw bad(where, k)
  const v = labelValueProblem(value)
  if (v) throw bad(where, `${key}=${JSON.stringify(value)}`, `has a bad value: ${v}`)
  out[key] = value
}

/** The annotation's text: a JSON object of strings, or `k=v,k2=v2`. */
function fromAnnotation(text: string, out: Record<string, string>): void {
  const where = `runtimeConfig["${POD_ANNOTATIONS_CAPABILITY}"]["${LABELS_ANNOTATION}"]`
  const t = text.trim()
  if (t.startsWith('{')) {
    let o: unknown
    try {
      o = JSON.parse(t)
    } catch (err) {
      throw bad(where, 'list', `is not JSON: ${(err as Error).message}`)
    }
    if (!o || typeof o !== 'object' || Array.isArray(o)) throw bad(where, 'list', 'must be a JSON object of strings')
    for (const [k, v] of Object.entries(o)) put(out, where, k, v)
    return
  }
  for (const part of t.split(',')) {
    if (part.trim() === '') continue
    const eq = part.indexOf('=')
    if (eq < 0) throw bad(where, JSON.stringify(part.trim()), 'has no "=" (write key=value)')
    put(out, where, part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
}

/** The pod's labels from a network config (`args` and `runtimeConfig` as the runtime sent them). */
export function podLabels(args: unknown, runtimeConfig: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  const cni = args && typeof args === 'object' ? (args as Record<string, unknown>).cni : undefined
  const list = cni && typeof cni === 'object' ? (cni as Record<string, unknown>).labels : undefined
  if (list !== undefined) {
    if (!Array.isArray(list)) throw bad('args.cni.labels', 'list', 'must be a list of {key, value}')
    for (const item of list) {
      if (!item || typeof item !== 'object') throw bad('args.cni.labels', JSON.stringify(item), 'must be {key, value}')
      const {key, value} = item as Record<string, unknown>
      put(out, 'args.cni.labels', key, value)
    }
  }
  const annotations = runtimeConfig && typeof runtimeConfig === 'object' ? (runtimeConfig as Record<string, unknown>)[POD_ANNOTATIONS_CAPABILITY] : undefined
  const text = annotations && typeof annotations === 'object' ? (annotations as Record<string, unknown>)[LABELS_ANNOTATION] : undefined
  if (typeof text === 'string') fromAnnotation(text, out)
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}
