/**
 * Is CNI_NETNS a network namespace? The same test as libcni's ns.GetNS: statfs() magic must be
 * NSFS (a bind-mounted /run/netns/x) or PROC (/proc/PID/ns/net). One syscall, no process spawn.
 */
import {promises as fs} from 'node:fs'
import {PnError} from '../errors.js'

export const NSFS_MAGIC = 0x6e736673
export const PROC_MAGIC = 0x9fa0

export type NetnsState = 'ok' | 'missing' | 'invalid'

/** Classify a netns path without throwing. */
export async function probeNetns(path: string): Promise<{state: NetnsState; magic?: number}> {
  try {
    const st = await fs.statfs(path)
    const magic = Number(st.type)
    return {state: magic === NSFS_MAGIC || magic === PROC_MAGIC ? 'ok' : 'invalid', magic}
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ESRCH') return {state: 'missing'}
    return {state: 'invalid'}
  }
}

/** Throw PN_NETNS_NOT_FOUND / PN_NETNS_INVALID (code 4, names CNI_NETNS) unless path is a netns. */
export async function requireNetns(path: string): Promise<void> {
  const {state, magic} = await probeNetns(path)
  if (state === 'missing') {
    throw new PnError('PN_NETNS_NOT_FOUND', `open netns ${path}: no such file`, {
      hint: 'CNI_NETNS must name an existing network namespace, e.g. /run/netns/NAME or /proc/PID/ns/net',
    })
  }
  if (state === 'invalid') {
    throw new PnError('PN_NETNS_INVALID', `open netns ${path}: invalid CNI_NETNS, not a network namespace (fs magic ${magic === undefined ? 'unknown' : '0x' + magic.toString(16)})`, {
      hint: 'CNI_NETNS must name a network namespace, e.g. /run/netns/NAME or /proc/PID/ns/net',
    })
  }
}
