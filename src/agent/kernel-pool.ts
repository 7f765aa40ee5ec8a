/**
 * The agent's kernel runners: a few kernel workers (each its own pn-netlink process, behind its
 * own WorkerRunner), a command going to the one with the fewest commands in flight, and a link
 * deletion answered once the link is gone rather than when the kernel has finished with it.
 *
 * Why more than one worker: a worker runs one command at a time, and a veth deletion keeps it
 * for a whole RCU grace period (below). One worker made a 100-pod DEL burst run its deletions
 * one after another (≈ 16 ms each here); deletions that run at once share their grace periods
 * (20 `ip link del` in parallel take ≈ 60 ms, one after another ≈ 400 ms). The agent starts
 * its workers with it (src/entry/agent-main.ts).
 *
 * Why a deletion is answered early: RTM_DELLINK unregisters the device (both veth ends: it
 * leaves the namespaces, its name is free, its qdisc and filters are gone, no packet reaches it)
 * within about a millisecond, then the kernel waits for every pending RCU callback
 * (`rcu_barrier()` in netdev_run_todo, before it sends the ack) to free it: ≈ 15 ms here, the
 * larger part of a DEL, and of the reference plugin's too. Nothing pn does next depends on the
 * memory being freed, only on the device being gone, so the deletion of a device in the agent's
 * own network namespace is answered as the tool would once its `/proc/sys/net/ipv4/conf/<dev>`
 * (removed when the device is unregistered; /proc/sys/net shows the opener's namespace) is gone.
 * The worker's own answer still comes, and is the answer when it comes first (a failure, a
 * device that was never there). A device without that folder (no IPv4 configuration) gets the
 * ack as before.
 */
import fs from 'node:fs'
import {effectiveArgv, type DetachOptions, type RunOptions, type RunResult, type Runner, type StreamedChild, type StreamOptions} from '../exec/runner.js'

export interface KernelPoolOptions {
  /** Whether `dev` exists in the agent's namespace, for an early deletion answer (default: its /proc/sys/net/ipv4/conf folder). */
  linkPresent?: (dev: string) => boolean | undefined
  /** How often a deleted link is looked for (default 1 ms). */
  pollMs?: number
  /** A deletion answered early whose worker then failed (for the agent log). */
  onLateFailure?: (argv: string[], why: string) => void
}

/** True/false when the device's IPv4 configuration folder says so; undefined when it cannot tell. */
export function procLinkPresent(dev: string): boolean | undefined {
  if (!dev || dev === '.' || dev === '..' || dev.includes('/')) return undefined
  return fs.existsSync(`/proc/sys/net/ipv4/conf/${dev}`)
}

export class KernelPool implements Runner {
  private readonly inflight: number[]

  constructor(
    private readonly runners: Runner[],
    private readonly opts: KernelPoolOptions = {},
  ) {
    if (runners.length === 0) throw new Error('KernelPool: no runner')
    this.inflight = runners.map(() => 0)
  }

  /** Commands in flight per runner (tests, status). */
  get load(): readonly number[] {
    return this.inflight
  }

  private async dispatch<T>(fn: (r: Runner) => Promise<T>): Promise<T> {
    let i = 0
    for (let j = 1; j < this.runners.length; j++) if (this.inflight[j] < this.inflight[i]) i = j
    this.inflight[i]++
    try {
      return await fn(this.runners[i])
    } finally {
      this.inflight[i]--
    }
  }

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const dev = hostLinkDeletion(file, args, opts)
    if (dev !== undefined) return this.deleteLink(dev, file, args, opts)
    return this.dispatch((r) => r.run(file, args, opts))
  }

  /** `ip link del dev X` in our namespace: answered when X is gone, or by the worker if sooner. */
  private deleteLink(dev: string, file: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
    const present = this.opts.linkPresent ?? procLinkPresent
    // Not there (or cannot tell): the worker's answer (ENODEV for a device that is not there).
    if (present(dev) !== true) return this.dispatch((r) => r.run(file, args, opts))
    const answer = this.dispatch((r) => r.run(file, args, opts))
    return new Promise<RunResult>((resolve, reject) => {
      let answered = false
      const finish = (fn: () => void) => {
        if (answered) return
        answered = true
        clearInterval(timer)
        fn()
      }
      const timer = setInterval(() => {
        if (present(dev) === false) finish(() => resolve({argv: effectiveArgv(file, args, opts), exitCode: 0, stdout: '', stderr: ''}))
      }, this.opts.pollMs ?? 1)
      answer.then(
        (r) => {
          if (answered && r.exitCode !== 0) this.opts.onLateFailure?.(r.argv, r.stderr.trim())
          finish(() => resolve(r))
        },
        (err: Error) => {
          if (answered) this.opts.onLateFailure?.(effectiveArgv(file, args, opts), err.message)
          finish(() => reject(err))
        },
      )
    })
  }

  stream(file: string, args: readonly string[], opts?: StreamOptions): StreamedChild {
    return this.runners[0].stream(file, args, opts)
  }

  spawnDetached(file: string, args: readonly string[], opts?: DetachOptions): Promise<{argv: string[]; pid: number}> {
    return this.runners[0].spawnDetached(file, args, opts)
  }

  makeDir(p: string): Promise<boolean> {
    return this.runners[0].makeDir(p)
  }

  remove(p: string): Promise<void> {
    return this.runners[0].remove(p)
  }

  writeFile(p: string, content: string): Promise<void> {
    return this.runners[0].writeFile(p, content)
  }
}

/** The device of `ip link del dev X` run in this process's namespace, else undefined. */
function hostLinkDeletion(file: string, args: readonly string[], opts: RunOptions): string | undefined {
  if (file !== 'ip' || opts.netns !== undefined || opts.input !== undefined || opts.env !== undefined) return undefined
  if (args.length !== 4 || args[0] !== 'link' || args[1] !== 'del' || args[2] !== 'dev') return undefined
  return args[3]
}
