/**
 * The one way pn runs a multi-step operation: a list of titled steps plus one undo stack.
 * The library builds the plan (and owns the undo); `runPlan` runs it — plainly, for pn-cni, or
 * with a progress observer (listr2 on a TTY, CNI step events) — and on failure or interrupt
 * unwinds the undo stack, newest first. `runSweep` is the other shape: a teardown that attempts
 * every step whatever failed before and reports the failures together. The library never prints.
 */
import {PnError, toPnError} from '../errors.js'
import {checkpoint, watching} from './interrupt.js'
import {withRollbackDetails, type UndoStack} from './undo.js'

export {UndoStack, withRollbackDetails, type UndoFailure} from './undo.js'

export interface Step {
  title: string
  run: () => Promise<void>
  /** Evaluated just before running; a truthy value skips the step (its text says why). */
  skip?: () => boolean | string
}

export interface Plan<R> {
  steps: Step[]
  /** The result, once every step has run. */
  result: () => R
  /** Inverses of what the steps did so far. */
  undo: UndoStack
}

export interface StepEvent {
  index: number
  title: string
  state: 'start' | 'done' | 'skipped' | 'failed'
  detail?: string
}

/** Per-request options of a flow. */
export interface FlowOptions {
  /** The request's interrupt (SIGINT/SIGTERM at the entry): checked between steps. */
  signal?: AbortSignal
  /** Progress, for a renderer (listr2) or CNI step events. */
  onStep?: (e: StepEvent) => void
  /**
   * Awaited after each step succeeded; throwing here fails the flow as if the step had (tests
   * inject failures after a chosen step this way).
   */
  afterStep?: (index: number, title: string) => Promise<void> | void
  /** Awaited before each step (tests slow flows down to deliver a signal mid-flow). */
  beforeStep?: (title: string) => Promise<void>
}

/** Run a plan's steps in order; on failure unwind and rethrow (with undo failures in details). */
export async function runPlan<R>(plan: Plan<R>, action: string, opts: FlowOptions = {}): Promise<R> {
  return watching(opts.signal, async () => {
    try {
      for (const [index, step] of plan.steps.entries()) {
        await opts.beforeStep?.(step.title)
        checkpoint(opts.signal, action)
        const skip = step.skip?.()
        if (skip) {
          opts.onStep?.({index, title: step.title, state: 'skipped', detail: typeof skip === 'string' ? skip : undefined})
          await opts.afterStep?.(index, step.title)
          continue
        }
        opts.onStep?.({index, title: step.title, state: 'start'})
        try {
          await step.run()
          await opts.afterStep?.(index, step.title)
        } catch (err) {
          opts.onStep?.({index, title: step.title, state: 'failed', detail: err instanceof Error ? err.message : String(err)})
          throw err
        }
        opts.onStep?.({index, title: step.title, state: 'done'})
      }
      checkpoint(opts.signal, action)
    } catch (err) {
      throw withRollbackDetails(err, await plan.undo.unwind(), action)
    }
    return plan.result()
  })
}

export interface SweepFailure {
  step: string
  code: string
  message: string
}

/**
 * A teardown: every step runs even when an earlier one failed (so nothing stays behind because
 * of an unrelated error), failures are returned, never thrown. Not interruptible: a teardown
 * that stops half-way is the state it exists to remove.
 */
export async function runSweep(steps: Step[], action: string, opts: Pick<FlowOptions, 'onStep'> = {}): Promise<SweepFailure[]> {
  const failures: SweepFailure[] = []
  for (const [index, step] of steps.entries()) {
    const skip = step.skip?.()
    if (skip) {
      opts.onStep?.({index, title: step.title, state: 'skipped', detail: typeof skip === 'string' ? skip : undefined})
      continue
    }
    opts.onStep?.({index, title: step.title, state: 'start'})
    try {
      await step.run()
      opts.onStep?.({index, title: step.title, state: 'done'})
    } catch (err) {
      const pe = toPnError(err, `${step.title} (${action})`)
      failures.push({step: step.title, code: pe.code, message: pe.message})
      opts.onStep?.({index, title: step.title, state: 'failed', detail: pe.message})
    }
  }
  return failures
}

/** One PnError for a sweep that had failures (the first failure's code, every message). */
export function sweepError(action: string, failures: SweepFailure[], hint: string): PnError {
  return new PnError(failures[0].code as PnError['code'], `${action}: ${failures.map((f) => f.message).join('; ')}`, {
    hint,
    details: {errors: failures},
  })
}

