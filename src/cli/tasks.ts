/**
 * listr2 progress for multi-step commands. listr2 only draws: the plan runs through the one
 * runner (runPlan), whose step events open and close one listr2 task each. So a plan behaves
 * the same on a terminal as in --json or in pn-cni, undo and interrupts included.
 */
import {Listr} from 'listr2'
import {runPlan, type FlowOptions, type Plan, type StepEvent} from '../flow/plan.js'

export interface RunTasksOptions extends FlowOptions {
  /** Show progress (the command passes `process.stdout.isTTY && !this.jsonEnabled()`). */
  interactive: boolean
}

interface Gate {
  settle: (e: StepEvent) => void
  done: Promise<StepEvent>
}

function gate(): Gate {
  let settle!: (e: StepEvent) => void
  const done = new Promise<StepEvent>((resolve) => (settle = resolve))
  return {settle, done}
}

export async function runTasks<R>(plan: Plan<R>, action: string, opts: RunTasksOptions): Promise<R> {
  const {interactive, ...flow} = opts
  if (!interactive) return runPlan(plan, action, flow)
  const gates = plan.steps.map(() => gate())
  const list = new Listr(
    plan.steps.map((s, i) => ({
      title: s.title,
      task: async (_ctx: unknown, task: {skip: (msg?: string) => void}) => {
        const e = await gates[i].done
        if (e.state === 'skipped') task.skip(e.detail ?? s.title)
        if (e.state === 'failed') throw new Error(e.detail ?? 'failed')
      },
    })),
    {concurrent: false, exitOnError: true, rendererOptions: {collapseErrors: false}},
  )
  const drawn = list.run().catch(() => undefined)
  try {
    return await runPlan(plan, action, {
      ...flow,
      onStep: (e) => {
        flow.onStep?.(e)
        if (e.state !== 'start') gates[e.index].settle(e)
      },
    })
  } finally {
    // Steps that never ran (a failure or interrupt before them) close as skipped.
    for (const [i, g] of gates.entries()) g.settle({index: i, title: plan.steps[i].title, state: 'skipped', detail: 'not run'})
    await drawn
  }
}
