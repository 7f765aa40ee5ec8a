/**
 * Ctrl-C (SIGINT) or SIGTERM in the middle of a composite flow (`pn node init`, `pn cni add`,
 * `pn veth create`) must not leave half-made state. Killing the process at once would strand
 * whatever the in-flight step was creating (an `ip` child finishing after we exit, a veth whose
 * undo was never pushed). So the first signal only raises a flag; flows check it between steps
 * (`checkpoint`), the in-flight step finishes and pushes its undo, and the normal failure path
 * unwinds everything and exits 130/143. A second signal exits at once. Outside a flow the signal
 * exits at once, as usual.
 */
import {PnError} from '../errors.js'

let interrupted: NodeJS.Signals | undefined
let running = 0
let installed = false

const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = {SIGINT: 130, SIGTERM: 143}

/** Install the handlers once per process (the CLI base command and pn-cni do). */
export function installInterruptHandler(): void {
  if (installed) return
  installed = true
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (running === 0 || interrupted) process.exit(SIGNAL_EXIT[signal])
      interrupted = signal
    })
  }
}

/** Run a flow with interrupts deferred to its checkpoints. */
export async function runningFlow<T>(fn: () => Promise<T>): Promise<T> {
  running++
  try {
    return await fn()
  } finally {
    running--
  }
}

/**
 * Between two steps: stop here if a signal arrived. PN_TEST_CHECKPOINT_DELAY_MS slows every
 * checkpoint down so tests can deliver a signal mid-flow.
 */
export async function checkpoint(action: string): Promise<void> {
  const delay = Number(process.env.PN_TEST_CHECKPOINT_DELAY_MS)
  if (Number.isFinite(delay) && delay > 0) await new Promise((r) => setTimeout(r, delay))
  if (interrupted) {
    throw new PnError('PN_INTERRUPTED', `${action}: interrupted by ${interrupted}`, {
      hint: 'everything this run had done was undone; run the command again',
      details: {signal: interrupted},
    })
  }
}

/** The exit code for an interrupted run (130 SIGINT, 143 SIGTERM). */
export function interruptExitCode(): number | undefined {
  return interrupted ? SIGNAL_EXIT[interrupted] : undefined
}

/** Tests: pretend a signal arrived / reset. */
export function setInterruptedForTests(signal: NodeJS.Signals | undefined): void {
  interrupted = signal
}
