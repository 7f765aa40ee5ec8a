/**
 * Is a path a network namespace? The same test as libcni's ns.GetNS: statfs() magic must be
 * NSFS (a bind-mounted /run/netns/x) or PROC (/proc/PID/ns/net). One syscall, no process spawn.
 * The one netns check of pn: `pn veth`, `pn endpoint` and every CNI command use it, and a flow
 * checks once, at its entry.
 */
import {fsp as fs} from '../exec/fs.js'
import {PnError} from '../errors.js'
import {netnsPathProblem, validateNetnsPath} from './validate.js'

export const NSFS_MAGIC = 0x6e736673
export const PROC_MAGIC = 0x9fa0

export type NetnsState = 'ok' | 'missing' | 'invalid'

/**
 * Classify a netns path without throwing; a malformed path (relative, control characters) is
 * invalid without being opened. ESRCH (a /proc/PID/ns/net whose process just exited)
 * counts as missing, like ENOENT: the namespace is gone, which DEL must tolerate.
 */
export async function probeNetns(path: string): Promise<{state: NetnsState; magic?: number; cause?: string}> {
  const malformed = netnsPathProblem(path)
  if (malformed) return {state: 'invalid', cause: malformed}
  try {
    const st = await fs.statfs(path)
    const magic = Number(st.type)
    return {state: magic === NSFS_MAGIC || magic === PROC_MAGIC ? 'ok' : 'invalid', magic}
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ESRCH') return {state: 'missing'}
    return {state: 'invalid', cause: (err as Error).message}
  }
}

/** PN_NETNS_NOT_FOUND / PN_NETNS_INVALID (CNI code 4) unless path is a network namespace (malformed: validate.ts). */
export async function requireNetns(path: string): Promise<void> {
  validateNetnsPath(path)
  const {state, magic, cause} = await probeNetns(path)
  if (state === 'missing') {
    throw new PnError('PN_NETNS_NOT_FOUND', `open netns ${path}: no such file`, {
      hint: 'name an existing network namespace (CNI_NETNS, --netns), e.g. /run/netns/NAME (see `ip netns list`) or /proc/PID/ns/net',
      details: {netns: path},
    })
  }
  if (state === 'invalid') {
    const what = cause ?? `fs magic ${magic === undefined ? 'unknown' : '0x' + magic.toString(16)}`
    throw new PnError('PN_NETNS_INVALID', `open netns ${path}: invalid CNI_NETNS, not a network namespace (${what})`, {
      hint: 'name a network namespace (CNI_NETNS, --netns), e.g. /run/netns/NAME or /proc/PID/ns/net',
      details: {netns: path},
    })
  }
}

/** True when the path is a live network namespace (teardown paths tolerate a vanished one). */
export async function netnsAlive(path: string): Promise<boolean> {
  return (await probeNetns(path)).state === 'ok'
}
