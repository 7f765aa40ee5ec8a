/**
 * Multi-step operations as data: a list of titled steps plus an undo stack. The library builds
 * the plan (and owns the undo); a caller runs the steps either plainly (`runPlan`) or through
 * listr2 on a TTY (src/cli/tasks.ts), then calls `rollback` on failure. The library never prints.
 */
import {checkpoint, runningFlow} from './interrupt.js'
import {withRollbackDetails, type UndoFailure} from './undo.js'

export {UndoStack, withRollbackDetails, type UndoFailure} from './undo.js'

export interface Step {
  title: string
  run: () => Promise<void>
  /** Evaluated just before running; true skips the step (shown as skipped on a TTY). */
  skip?: () => boolean | string
}

export interface Plan<R> {
  steps: Step[]
  /** The result, once every step has run. */
  result: () => R
  /** Undo what the steps did so far, newest first; returns the undo failures. */
  rollback: () => Promise<UndoFailure[]>
}

/** Run a plan's steps in order; on failure roll back and rethrow (with rollback errors in details). */
export async function runPlan<R>(plan: Plan<R>, action: string): Promise<R> {
  return runningFlow(async () => {
    try {
      for (const step of plan.steps) {
        await checkpoint(action)
        if (step.skip?.()) continue
        await step.run()
      }
      await checkpoint(action)
    } catch (err) {
      throw withRollbackDetails(err, await plan.rollback(), action)
    }
    return plan.result()
  })
}
