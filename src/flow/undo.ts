/**
 * An explicit undo stack for composite flows: each step pushes its inverse once it succeeded;
 * on failure every inverse runs, newest first, and their own errors are collected rather than
 * thrown, so one failed undo never stops the others (ptp's deferred-err release leaks an IP
 * when an early return skips it; a stack has no such path).
 */
import {PnError, toPnError} from '../errors.js'

export interface UndoFailure {
  step: string
  code: string
  message: string
}

export class UndoStack {
  private readonly steps: {name: string; undo: () => Promise<unknown>}[] = []

  push(name: string, undo: () => Promise<unknown>): void {
    this.steps.push({name, undo})
  }

  /** Run every inverse newest first; return the ones that failed. */
  async unwind(): Promise<UndoFailure[]> {
    const failures: UndoFailure[] = []
    while (this.steps.length > 0) {
      const step = this.steps.pop()!
      try {
        await step.undo()
      } catch (err) {
        const pe = toPnError(err, step.name)
        failures.push({step: step.name, code: pe.code, message: pe.message})
      }
    }
    return failures
  }
}

/** Attach undo failures to the original error, so nothing that was left behind goes unreported. */
export function withRollbackDetails(err: unknown, failures: UndoFailure[], action: string): PnError {
  const pe = toPnError(err, action)
  if (failures.length === 0) return pe
  return new PnError(pe.code, pe.message, {
    hint: pe.hint,
    details: {...pe.details, rollbackErrors: failures},
    cause: pe.cause ?? err,
  })
}
