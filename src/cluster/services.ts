/**
 * The cluster's service table from the command line: `pn service apply FILE --cluster …` writes
 * it once (every agent converges to it), `pn service list --cluster …` reads it. The file is the
 * one `pn service apply` takes on a node.
 */
import {promises as fs} from 'node:fs'
import {PnError} from '../errors.js'
import {backendKey, frontendKey, parseServiceList} from '../service/model.js'
import {servicesDigest} from './layout.js'
import type {ClusterStore, PutServicesResult} from './store.js'

export interface ClusterServicesApplyResult extends PutServicesResult {
  cluster: string
  source: string
  dryRun: boolean
}

/** One service as the store holds it (the apply file's format). */
export interface ClusterServiceEntry {
  frontend: string
  backends: string[]
}

/** Make the cluster's table exactly the list in `file` (or `text`, for `-`); dry run: say whether it would change. */
export async function applyClusterServices(store: ClusterStore, input: {file: string; text?: string}, opts: {dryRun?: boolean} = {}): Promise<ClusterServicesApplyResult> {
  let text = input.text
  if (text === undefined) {
    text = await fs.readFile(input.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new PnError('PN_SERVICE_INVALID', `read services ${input.file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, {hint: 'pass a JSON file, or - to read it from stdin'})
    })
  }
  const services = parseServiceList(text, input.file === '-' ? 'from stdin' : input.file)
  const base = {cluster: store.location, source: input.file}
  if (opts.dryRun) {
    const state = await store.snapshot()
    const digest = servicesDigest(services)
    const view = state.services()
    return {...base, dryRun: true, changed: !view.consistent || (view.mark?.digest ?? servicesDigest([])) !== digest, revision: state.revision, count: services.length, digest, shards: 0}
  }
  return {...base, dryRun: false, ...(await store.putServices(services))}
}

/** The cluster's services, sorted by frontend, and whether the table is whole. */
export async function listClusterServices(store: ClusterStore): Promise<{services: ClusterServiceEntry[]; consistent: boolean; revision: number}> {
  const state = await store.snapshot()
  const view = state.services()
  const services = view.services
    .map((s) => ({frontend: frontendKey(s.frontend), backends: s.backends.map(backendKey)}))
    .sort((a, b) => a.frontend.localeCompare(b.frontend, 'en', {numeric: true}))
  return {services, consistent: view.consistent, revision: state.revision}
}
