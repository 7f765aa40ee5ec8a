/**
 * The syscalls the agent needs and Node has no API for, from the Node-API addon
 * native/pn-peercred.c (dist/native/pn-peercred.node). Loaded on first use, by the agent only:
 * pn-cni and the other commands never load it.
 */
import {createRequire} from 'node:module'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PnError} from '../errors.js'

/** Who is on the other end of a UNIX socket, as the kernel saw it at connect(2). */
export interface PeerCredentials {
  pid: number
  uid: number
  gid: number
  /** Supplementary groups (SO_PEERGROUPS). */
  groups: number[]
}

export interface AgentSyscalls {
  /** SO_PEERCRED (+ SO_PEERGROUPS) of an accepted socket's fd. */
  peercred(fd: number): PeerCredentials
  /** True once the peer has closed its end (POLLHUP), not when it only shut down writing. */
  peerClosed(fd: number): boolean
  /** flock(LOCK_EX | LOCK_NB): true when taken, false when another open file holds it. */
  tryLock(fd: number): boolean
}

/** dist/src/agent → dist/native. */
export const PEERCRED_ADDON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/pn-peercred.node')

let loaded: AgentSyscalls | undefined

export function agentSyscalls(): AgentSyscalls {
  if (loaded) return loaded
  try {
    loaded = createRequire(import.meta.url)(PEERCRED_ADDON) as AgentSyscalls
  } catch (err) {
    throw new PnError('PN_TOOL_MISSING', `load agent addon ${PEERCRED_ADDON}: ${(err as Error).message.split('\n')[0]}`, {
      hint: 'build it: npm run build (needs clang and the node headers, /usr/include/node)',
    })
  }
  return loaded
}
