/**
 * The node's bird process, owned through its pid file. A pid file can outlive its bird (and the
 * pid be reused), so a pid only counts as "our bird" when /proc/PID/cmdline names our control
 * socket. pn never looks for birds by name (no pkill): only that pid is ever signalled.
 */
import {promises as fs} from 'node:fs'

export interface BirdFiles {
  dir: string
  config: string
  socket: string
  pidFile: string
  log: string
}

/** The pid of the bird serving `files.socket`, or undefined (no pid file, dead, or not ours). */
export async function runningBirdPid(files: BirdFiles): Promise<number | undefined> {
  let text: string
  try {
    text = await fs.readFile(files.pidFile, 'utf8')
  } catch {
    return undefined
  }
  const pid = Number(text.trim())
  if (!Number.isInteger(pid) || pid <= 1) return undefined
  return (await isBirdOf(pid, files.socket)) ? pid : undefined
}

/** True when PID is alive (not a zombie) and its command line names this control socket. */
export async function isBirdOf(pid: number, socket: string): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8')
    // State is the field after the parenthesised comm (which may itself hold spaces or parens).
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    if (state === 'Z' || state === 'X') return false
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    return argv.some((a) => /(^|\/)bird$/.test(a)) && argv.includes(socket)
  } catch {
    return false
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Wait until `check()` is true, polling; false after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= end) return false
    await sleep(everyMs)
  }
}

/**
 * Stop our bird: SIGTERM (bird shuts its sessions down with a Cease notification, so the peers
 * withdraw the routes at once instead of waiting for the hold timer), SIGKILL if it is still
 * there after `graceMs`. Returns the pid it stopped, or undefined when none was running.
 */
export async function stopBird(files: BirdFiles, graceMs = 5000): Promise<number | undefined> {
  const pid = await runningBirdPid(files)
  if (pid === undefined) return undefined
  const gone = async () => !(await isBirdOf(pid, files.socket))
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return pid // exited between the check and the signal
  }
  if (!(await waitFor(gone, graceMs))) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
    await waitFor(gone, 2000)
  }
  return pid
}
