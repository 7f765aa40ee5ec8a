/**
 * Where one agent request's time goes: queued (waiting for its attachment and a slot), locks
 * (flock(2) grants and releases), kernel (the kernel backends' applies: worker round trips and
 * map syscalls, or the processes spawned instead; src/kernel/clock.ts), fsync (state made durable: src/state/timing.ts) and the rest
 * (reading the request, JSON, files read and written, the event loop). The request's locker is
 * wrapped and its kernel clock follows it through its awaits, so only its own calls count; the fsync figures
 * are process-wide counters read before and after, exact when requests do not overlap (a
 * sequential run) and shared between the requests of a burst.
 *
 * The agent logs the split on each request's line (`exit 0 after 12.3 ms: queue … locks …`),
 * which is what bench/cni reads.
 */
import type {HeldLock, Locker, LockSpec} from '../exec/flock.js'
import type {KernelClock} from '../kernel/clock.js'
import {syncCounters} from '../state/timing.js'

export interface RequestTiming {
  /** performance.now() when the connection was accepted. */
  acceptedAt: number
  /** ms from the whole request read to its handling (attachment mutex, slot). */
  queueMs: number
}

export interface TimingSplit {
  /** Accept to answer (ms). */
  total: number
  /** Accept to the whole request read (the client sending it). */
  read: number
  queue: number
  locks: number
  lockCalls: number
  kernel: number
  kernelCalls: number
  fsync: number
  fsyncs: number
  other: number
}

export class RequestTimer {
  private lockMs = 0
  private lockCalls = 0
  private kernelMs = 0
  private kernelCalls = 0
  private readonly syncMs0 = syncCounters.ms
  private readonly syncs0 = syncCounters.count
  private readonly startedAt = performance.now()

  constructor(private readonly timing: RequestTiming) {}

  private async timeLock<T>(fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now()
    try {
      return await fn()
    } finally {
      this.lockMs += performance.now() - t0
      this.lockCalls++
    }
  }

  /** The request's kernel clock (src/kernel/clock.ts): every backend apply timed as kernel work. */
  readonly clock: KernelClock = {
    add: (ms) => {
      this.kernelMs += ms
      this.kernelCalls++
    },
  }

  /** The request's locker: acquiring and releasing timed as lock work. */
  locker(inner: Locker): Locker {
    return {
      acquire: async (locks: LockSpec[]): Promise<HeldLock> => {
        const held = await this.timeLock(() => inner.acquire(locks))
        return {...held, release: () => this.timeLock(() => held.release())}
      },
    }
  }

  split(): TimingSplit {
    const now = performance.now()
    const total = now - this.timing.acceptedAt
    const handled = now - this.startedAt
    const fsync = syncCounters.ms - this.syncMs0
    const r = (x: number) => Math.round(x * 100) / 100
    return {
      total: r(total),
      read: r(total - handled - this.timing.queueMs),
      queue: r(this.timing.queueMs),
      locks: r(this.lockMs),
      lockCalls: this.lockCalls,
      kernel: r(this.kernelMs),
      kernelCalls: this.kernelCalls,
      fsync: r(fsync),
      fsyncs: syncCounters.count - this.syncs0,
      other: r(handled - this.lockMs - this.kernelMs - fsync),
    }
  }
}

/** The split as the agent logs it (bench/cni parses this form). */
export function formatSplit(s: TimingSplit): string {
  return `total ${s.total} read ${s.read} queue ${s.queue} locks ${s.locks}/${s.lockCalls} kernel ${s.kernel}/${s.kernelCalls} fsync ${s.fsync}/${s.fsyncs} other ${s.other}`
}

const SPLIT_RE = /total ([\d.]+) read (-?[\d.]+) queue ([\d.]+) locks ([\d.]+)\/(\d+) kernel ([\d.]+)\/(\d+) fsync ([\d.]+)\/(\d+) other (-?[\d.]+)/

/** Parse a line formatSplit wrote (undefined when it holds none). */
export function parseSplit(line: string): TimingSplit | undefined {
  const m = SPLIT_RE.exec(line)
  if (!m) return undefined
  const n = m.slice(1).map(Number)
  return {total: n[0], read: n[1], queue: n[2], locks: n[3], lockCalls: n[4], kernel: n[5], kernelCalls: n[6], fsync: n[7], fsyncs: n[8], other: n[9]}
}
