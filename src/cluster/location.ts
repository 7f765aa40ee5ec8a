/**
 * Where a cluster store lives: `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (`etcds://` for TLS),
 * or a directory on this machine (one machine's lab: every "node" a netns on one host). The
 * location also names the cluster's pool: on etcd the pool's keys sit under the same prefix
 * (`<prefix>/pool/…`, src/ipam/pool-etcd.ts), so `--pool` given the same URL is the same pool;
 * in a directory the pool is the file `<dir>/cluster-pool.json`.
 */
import path from 'node:path'
import {PnError} from '../errors.js'
import {isEtcdUrl, parseEtcdLocation} from '../state/etcd-store.js'

export type ClusterLocation =
  | {kind: 'etcd'; location: string; hosts: string[]; prefix: string; tls: boolean}
  | {kind: 'dir'; location: string; dir: string}

const HINT = 'give --cluster (PN_CLUSTER) as etcd://HOST:PORT[,HOST:PORT…][/PREFIX], etcds://… (TLS), or a directory path for one machine'

/** Parse a cluster location (a relative directory is resolved against `cwd`). */
export function parseClusterLocation(text: string, cwd = process.cwd()): ClusterLocation {
  if (text.trim() === '') {
    throw new PnError('PN_INVALID_ARGUMENT', 'open cluster store: the location is empty', {hint: HINT})
  }
  if (isEtcdUrl(text)) {
    let loc: ReturnType<typeof parseEtcdLocation>
    try {
      loc = parseEtcdLocation(text)
    } catch (err) {
      // The etcd parser speaks of a pool; say cluster store, keep its cause.
      throw new PnError('PN_INVALID_ARGUMENT', (err as Error).message.replace(/^parse pool location/, 'parse cluster location'), {hint: HINT})
    }
    return {kind: 'etcd', location: text, ...loc}
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new PnError('PN_INVALID_ARGUMENT', `parse cluster location ${JSON.stringify(text)}: unsupported scheme`, {hint: HINT})
  }
  return {kind: 'dir', location: text, dir: path.resolve(cwd, text)}
}

/** The pool of a cluster: the same etcd URL (its keys under `<prefix>/pool/`), or `<dir>/cluster-pool.json`. */
export function clusterPoolLocation(loc: ClusterLocation): string {
  return loc.kind === 'etcd' ? loc.location : path.join(loc.dir, 'cluster-pool.json')
}
