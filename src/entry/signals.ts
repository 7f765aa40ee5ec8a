/**
 * Process signals → the request's AbortSignal. The first SIGINT/SIGTERM aborts the request
 * when a flow is running (it stops at its next step and unwinds); otherwise, or on a second
 * signal, the process exits at once with 128 + signal, as a Unix tool should.
 */
import {flowRunning, SIGNAL_EXIT} from '../flow/interrupt.js'

export interface ProcessInterrupt {
  signal: AbortSignal
  /** 130/143 once a signal arrived, for the exit status of the unwound run. */
  exitCode(): number | undefined
}

let installed: ProcessInterrupt | undefined

/** Install the handlers once per process; every call returns the same interrupt. */
export function interruptOnSignals(): ProcessInterrupt {
  if (installed) return installed
  const controller = new AbortController()
  let received: NodeJS.Signals | undefined
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (received || !flowRunning(controller.signal)) process.exit(SIGNAL_EXIT[sig])
      received = sig
      controller.abort(sig)
    })
  }
  installed = {signal: controller.signal, exitCode: () => (received ? SIGNAL_EXIT[received] : undefined)}
  return installed
}
