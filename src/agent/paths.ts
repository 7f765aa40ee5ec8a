/** Where a node's agent lives: everything under the node's state dir, so several nodes coexist. */
import path from 'node:path'

/** The UNIX socket the C client (native/pn-cni.c) connects to. */
export const agentSocketPath = (stateDir: string) => path.join(stateDir, 'agent.sock')
/** The running agent's pid (written once it listens, removed when it stops). */
export const agentPidFile = (stateDir: string) => path.join(stateDir, 'agent.pid')
/** Where a background agent's own log goes. */
export const agentLogFile = (stateDir: string) => path.join(stateDir, 'agent.log')
/** flock'ed by the running agent for its whole life: one agent per state dir. */
export const agentLockFile = (stateDir: string) => path.join(stateDir, 'agent.lock')
