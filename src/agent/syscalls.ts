/**
 * The socket and file syscalls the agent needs and Node has no API for, from pn's addon
 * (native/pn-sys.c through src/exec/sys.ts), loaded on first use.
 */
import {sys} from '../exec/sys.js'

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

export function agentSyscalls(): AgentSyscalls {
  return sys()
}
