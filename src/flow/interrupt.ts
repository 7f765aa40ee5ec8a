/**
 * Ctrl-C (SIGINT) or SIGTERM in the middle of a composite flow (`pn node init`, `pn cni add`,
 * `pn veth create`) must not leave half-made state. Killing the process at once would strand
 * whatever the in-flight step was creating (an `ip` child finishing after we exit, a veth whose
 * undo was never pushed). So a flow takes a per-request AbortSignal: the entry that owns the
 * request (the CLI, pn-cni, later the agent) aborts it, the flow stops at its next checkpoint
 * (between steps), the in-flight step finishes and pushes its undo, and the normal failure path
 * unwinds everything. Two requests in one process are interrupted independently: there is no
 * module-level state here.
 *
 * While a flow runs it holds an 'abort' listener on its signal; that is how an entry tells "a
 * flow will unwind, defer" from "nothing checks this signal, exit at once" (flowRunning).
 */
import {getEventListeners} from 'node:events'
import {PnError} from '../errors.js'

/** Exit codes of an interrupted run (128 + signal number). */
export const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = {SIGINT: 130, SIGTERM: 143}

function reasonSignal(signal: AbortSignal): string {
  return typeof signal.reason === 'string' ? signal.reason : signal.reason instanceof Error ? signal.reason.message : 'abort'
}

/** Between two steps: stop here if the request was aborted. */
export function checkpoint(signal: AbortSignal | undefined, action: string): void {
  if (!signal?.aborted) return
  const by = reasonSignal(signal)
  throw new PnError('PN_INTERRUPTED', `${action}: interrupted by ${by}`, {
    hint: 'everything this run had done was undone; run the command again',
    details: {signal: by},
  })
}

/** Run a flow while marking its signal as watched (see flowRunning). */
export async function watching<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  if (!signal) return fn()
  const mark = () => undefined
  signal.addEventListener('abort', mark)
  try {
    return await fn()
  } finally {
    signal.removeEventListener('abort', mark)
  }
}

/** True while some flow checks this signal at its checkpoints. */
export function flowRunning(signal: AbortSignal): boolean {
  return getEventListeners(signal, 'abort').length > 0
}
