/**
 * One agent per state dir. The running agent holds an exclusive flock on `<state dir>/agent.lock`
 * for its whole life, taken before it touches anything else (reconcile, socket, pid file); the
 * kernel drops it the moment the process ends, however it ends. A second agent started at the
 * same time, or while one runs, fails to take it and stops with PN_AGENT_RUNNING without going
 * near the first one's socket or pid file.
 */
import {closeSync, openSync, constants as fsc} from 'node:fs'
import {PnError} from '../errors.js'
import {writeFileAtomic} from '../state/files.js'
import {agentLockFile, agentPidFile} from './paths.js'
import {agentSyscalls, type AgentSyscalls} from './syscalls.js'

export interface AgentInstanceLock {
  readonly file: string
  /** Close the lock file (the flock goes with it); idempotent. */
  release(): void
}

/** Take the state dir's agent lock, or throw PN_AGENT_RUNNING when another agent holds it. */
export function lockAgentInstance(stateDir: string, sys: AgentSyscalls = agentSyscalls()): AgentInstanceLock {
  const file = agentLockFile(stateDir)
  // Node opens with O_CLOEXEC: the helpers and commands the agent starts never inherit the lock.
  const fd = openSync(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600)
  let taken = false
  try {
    taken = sys.tryLock(fd)
  } finally {
    if (!taken) closeSync(fd)
  }
  if (!taken) {
    throw new PnError('PN_AGENT_RUNNING', `start agent for ${stateDir}: another agent holds ${file}`, {
      hint: `see it with pn agent status --state-dir ${stateDir}; stop it first (pn agent stop) to start a new one`,
    })
  }
  let open = true
  return {
    file,
    release() {
      if (!open) return
      open = false
      closeSync(fd)
    },
  }
}

/** The pid file, written atomically (temp + fsync + rename), mode 0600. */
export async function writeAgentPidFile(stateDir: string, pid = process.pid): Promise<void> {
  await writeFileAtomic(agentPidFile(stateDir), `${pid}\n`, 0o600)
}
