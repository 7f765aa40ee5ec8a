/**
 * listr2 progress for multi-step commands. A library plan (src/flow/plan.ts) is run through
 * listr2 when a human watches (stdout is a TTY and --json is off), else plainly; either way the
 * plan's own undo stack rolls back on failure.
 */
import {Listr} from 'listr2'
import {checkpoint, runningFlow} from '../flow/interrupt.js'
import {runPlan, withRollbackDetails, type Plan} from '../flow/plan.js'

export interface RunTasksOptions {
  /** Show progress (the command passes `process.stdout.isTTY && !this.jsonEnabled()`). */
  interactive: boolean
  /** `<action> <object>` used when an unknown error is wrapped. */
  action: string
}

export async function runTasks<R>(plan: Plan<R>, opts: RunTasksOptions): Promise<R> {
  if (!opts.interactive) return runPlan(plan, opts.action)
  const list = new Listr(
    plan.steps.map((s) => ({
      title: s.title,
      skip: s.skip,
      task: async () => {
        await checkpoint(opts.action)
        await s.run()
      },
    })),
    {concurrent: false, exitOnError: true, rendererOptions: {collapseErrors: false}},
  )
  return runningFlow(async () => {
    try {
      await list.run()
      await checkpoint(opts.action)
    } catch (err) {
      throw withRollbackDetails(err, await plan.rollback(), opts.action)
    }
    return plan.result()
  })
}
