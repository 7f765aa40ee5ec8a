/**
 * Multi-step operations as data: a list of titled steps plus an undo stack. The library builds
 * the plan (and owns the undo); a caller runs the steps either plainly (`runPlan`) or through
 * listr2 on a TTY (src/cli/tasks.ts), then calls `rollback` on failure. The library never prints.
 */
import {PnError, toPnError} from '../errors.js'

export interface Step {
  title: string
  run: () => Promise<void>
  /** Evaluated just before running; true skips the step (shown as skipped on a TTY). */
  skip?: () => boolean | string
}

export type Undo = {what: string; run: () => Promise<unknown>}

export interface Plan<R> {
  steps: Step[]
  /** The result, once every step has run. */
  result: () => R
  /** Undo what the steps did so far, newest first; returns the undo failures. */
  rollback: () => Promise<string[]>
}

/** An undo stack: push each step's inverse once the step succeeded. */
export class UndoStack {
  private readonly stack: Undo[] = []

  push(what: string, run: () => Promise<unknown>): void {
    this.stack.push({what, run})
  }

  async unwind(): Promise<string[]> {
    const errors: string[] = []
    while (this.stack.length > 0) {
      const u = this.stack.pop()!
      try {
        await u.run()
      } catch (err) {
        errors.push(`${u.what}: ${(err as Error).message}`)
      }
    }
    return errors
  }
}

/** Attach rollback failures to the original error, so nothing that was left behind goes unreported. */
export function withRollbackDetails(err: unknown, rollbackErrors: string[], action: string): PnError {
  const pe = toPnError(err, action)
  if (rollbackErrors.length === 0) return pe
  return new PnError(pe.code, pe.message, {
    hint: pe.hint,
    details: {...pe.details, rollbackErrors},
    cause: pe.cause ?? err,
  })
}

/** Run a plan's steps in order; on failure roll back and rethrow (with rollback errors in details). */
export async function runPlan<R>(plan: Plan<R>, action: string): Promise<R> {
  try {
    for (const step of plan.steps) {
      if (step.skip?.()) continue
      await step.run()
    }
  } catch (err) {
    throw withRollbackDetails(err, await plan.rollback(), action)
  }
  return plan.result()
}
