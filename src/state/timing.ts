/**
 * Process-wide counters of the time spent making state durable (fsyncs of files and
 * directories): a long-running process (the agent) reads them before and after a request to
 * split its time. Two additions per fsync, nothing else: always on. Parallel fsyncs
 * (`syncPaths`) count once, as the wall time of the group, so the sum stays a share of wall time.
 */
export interface SyncCounters {
  /** fsync calls (a group of parallel fsyncs counts each path). */
  count: number
  /** Wall time spent waiting for them (ms). */
  ms: number
}

export const syncCounters: SyncCounters = {count: 0, ms: 0}

/** Time a synchronous fsync (or group) of `n` paths. */
export function timedSync<T>(n: number, fn: () => T): T {
  const t0 = performance.now()
  try {
    return fn()
  } finally {
    syncCounters.ms += performance.now() - t0
    syncCounters.count += n
  }
}

/** Time an asynchronous fsync (or group) of `n` paths. */
export async function timedSyncAsync<T>(n: number, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now()
  try {
    return await fn()
  } finally {
    syncCounters.ms += performance.now() - t0
    syncCounters.count += n
  }
}
