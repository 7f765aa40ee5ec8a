/**
 * Agent lifecycle seen from outside: is one running (pid file + a socket that answers), start
 * one in the background, stop one gracefully (SIGTERM: it stops accepting, finishes what is in
 * flight, then exits). The long-running part itself is src/entry/agent-main.ts.
 */
import {promises as fs, readFileSync} from 'node:fs'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {AGENT_OP_VAR, callAgent} from './client.js'
import {agentLockFile, agentLogFile, agentPidFile, agentSocketPath} from './paths.js'
import type {AgentStats} from './server.js'

export interface AgentStatus {
  running: boolean
  stateDir: string
  socket: string
  pid?: number
  /** What the agent says about itself (counters, memory) when it answers. */
  stats?: AgentStats
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A process that runs: a zombie (killed, not yet reaped — in a container whose pid 1 does not reap, forever) is dead. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

async function readPid(stateDir: string): Promise<number | undefined> {
  const pid = Number((await fs.readFile(agentPidFile(stateDir), 'utf8').catch(() => '')).trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * The pid holding the state dir's agent lock (src/agent/instance.ts), from /proc/locks: an agent
 * that is starting (reconciling, before its socket and pid file exist) or stopping holds it too.
 */
export async function agentLockHolder(stateDir: string): Promise<number | undefined> {
  const st = await fs.stat(agentLockFile(stateDir)).catch(() => undefined)
  if (!st) return undefined
  const locks = await fs.readFile('/proc/locks', 'utf8').catch(() => '')
  // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": the device as hex major:minor.
  const major = Number((BigInt(st.dev) >> 8n) & 0xfffn) | Number((BigInt(st.dev) >> 32n) & ~0xfffn)
  const minor = Number(BigInt(st.dev) & 0xffn) | Number((BigInt(st.dev) >> 12n) & ~0xffn)
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`
  for (const line of locks.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[1] === 'FLOCK' && f[3] === 'WRITE' && f[5] === id) {
      const pid = Number(f[4])
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) return pid
    }
  }
  return undefined
}

/** Ask the agent of a node how it is; `running: false` when nothing answers on its socket. */
export async function agentStatus(stateDir: string): Promise<AgentStatus> {
  const socket = agentSocketPath(stateDir)
  const base = {stateDir, socket}
  try {
    const r = await callAgent(socket, {netnsIno: '', env: {[AGENT_OP_VAR]: 'stats'}, stdin: ''}, 5000)
    const stats = JSON.parse(r.stdout) as AgentStats
    return {...base, running: true, pid: stats.pid, stats}
  } catch {
    const pid = await readPid(stateDir)
    // A pid file without a socket that answers: starting up, or stopping (draining).
    if (pid && alive(pid)) return {...base, running: true, pid}
    // No pid file yet: an agent still starting (reconciling) already holds the lock.
    const holder = await agentLockHolder(stateDir)
    return holder ? {...base, running: true, pid: holder} : {...base, running: false}
  }
}

export interface StartAgentResult {
  changed: boolean
  pid: number
  stateDir: string
  socket: string
  logFile: string
}

/**
 * Start `argv` (a `pn agent start --foreground` command line) detached and wait until its
 * socket answers. Idempotent: an agent already serving the node is reported, not doubled.
 */
export async function startAgentProcess(runner: Runner, stateDir: string, argv: string[], timeoutMs = 15_000): Promise<StartAgentResult> {
  const base = {stateDir, socket: agentSocketPath(stateDir), logFile: agentLogFile(stateDir)}
  const now = await agentStatus(stateDir)
  if (now.running && now.pid) return {...base, changed: false, pid: now.pid}
  const {pid} = await runner.spawnDetached(argv[0], argv.slice(1))
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const s = await agentStatus(stateDir)
    // Another start won the state dir's lock at the same moment: it is the one serving, ours exits.
    if (s.stats) return {...base, changed: s.stats.pid === pid, pid: s.stats.pid}
    if (!alive(pid)) {
      // Ours lost the lock to an agent still starting up: wait for that one to answer.
      if (s.running && s.pid && s.pid !== pid && alive(s.pid)) {
        await sleep(50)
        continue
      }
      break
    }
    await sleep(50)
  }
  const log = await fs.readFile(base.logFile, 'utf8').catch(() => '')
  throw new PnError('PN_COMMAND_FAILED', `start agent for ${stateDir}: it did not answer on ${base.socket} within ${timeoutMs} ms`, {
    hint: `see ${base.logFile}`,
    details: {pid, log: log.split('\n').slice(-10).join('\n')},
  })
}

export interface StopAgentResult {
  changed: boolean
  pid?: number
  stateDir: string
}

/** SIGTERM the node's agent and wait until it has finished its requests and exited. */
export async function stopAgentProcess(stateDir: string, timeoutMs = 60_000): Promise<StopAgentResult> {
  const s = await agentStatus(stateDir)
  if (!s.running || !s.pid) return {changed: false, stateDir}
  process.kill(s.pid, 'SIGTERM')
  const deadline = Date.now() + timeoutMs
  while (alive(s.pid)) {
    if (Date.now() > deadline) {
      throw new PnError('PN_AGENT_BUSY', `stop agent ${s.pid}: still finishing requests after ${timeoutMs} ms`, {
        hint: `wait, or interrupt its requests with a second SIGTERM (kill ${s.pid})`,
      })
    }
    await sleep(50)
  }
  return {changed: true, pid: s.pid, stateDir}
}

/** A group given by name (looked up in /etc/group) or by number. */
export async function resolveGroup(spec: string): Promise<number> {
  if (/^[0-9]+$/.test(spec)) return Number(spec)
  const groups = await fs.readFile('/etc/group', 'utf8').catch(() => '')
  for (const line of groups.split('\n')) {
    const [name, , gid] = line.split(':')
    if (name === spec && /^[0-9]+$/.test(gid ?? '')) return Number(gid)
  }
  throw new PnError('PN_INVALID_ARGUMENT', `resolve group ${spec}: no such group in /etc/group`, {hint: 'give an existing group name or a numeric gid'})
}
