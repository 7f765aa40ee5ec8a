/**
 * Time spent in the kernel backends, per request: the agent runs each request inside
 * `kernelClock.run(clock, …)` and every `apply` of the tools or native backend adds its wall
 * time to that request's clock (AsyncLocalStorage follows the request through its awaits, so
 * concurrent requests each get their own). Outside such a run there is no clock and nothing is
 * measured.
 */
import {AsyncLocalStorage} from 'node:async_hooks'

export interface KernelClock {
  /** One apply took `ms`. */
  add(ms: number): void
}

export const kernelClock = new AsyncLocalStorage<KernelClock>()

/** Run `fn`, adding its wall time to the current request's clock, if any. */
export async function clocked<T>(fn: () => Promise<T>): Promise<T> {
  const clock = kernelClock.getStore()
  if (!clock) return fn()
  const t0 = performance.now()
  try {
    return await fn()
  } finally {
    clock.add(performance.now() - t0)
  }
}
