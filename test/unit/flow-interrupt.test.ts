import assert from 'node:assert/strict'
import {PnError} from '../../src/errors.js'
import {setInterruptedForTests} from '../../src/flow/interrupt.js'
import {runPlan, UndoStack} from '../../src/flow/plan.js'

describe('interrupted plans', () => {
  afterEach(() => setInterruptedForTests(undefined))

  it('stop at the next checkpoint and unwind what was done, including the in-flight step', async () => {
    const undo = new UndoStack()
    const done: string[] = []
    const undone: string[] = []
    const step = (name: string, signalDuring = false) => ({
      title: name,
      run: async () => {
        if (signalDuring) setInterruptedForTests('SIGINT') // the signal lands while this step runs
        done.push(name)
        undo.push(name, async () => undone.push(name))
      },
    })
    const plan = {steps: [step('ipam'), step('veth', true), step('endpoint')], result: () => 'ok', rollback: () => undo.unwind()}
    await assert.rejects(runPlan(plan, 'add attachment c:eth0'), (e: PnError) =>
      e.code === 'PN_INTERRUPTED' && /add attachment c:eth0: interrupted by SIGINT/.test(e.message) && e.exitCode === 130)
    assert.deepEqual(done, ['ipam', 'veth'], 'no step starts after the signal')
    assert.deepEqual(undone, ['veth', 'ipam'], 'the in-flight step finished and was undone too, newest first')
  })

  it('an interrupt after the last step still unwinds (the caller never saw success)', async () => {
    const undo = new UndoStack()
    const undone: string[] = []
    const plan = {
      steps: [{title: 'only', run: async () => { undo.push('only', async () => undone.push('only')); setInterruptedForTests('SIGTERM') }}],
      result: () => 'ok',
      rollback: () => undo.unwind(),
    }
    await assert.rejects(runPlan(plan, 'init node'), (e: PnError) => e.code === 'PN_INTERRUPTED' && /SIGTERM/.test(e.message))
    assert.deepEqual(undone, ['only'])
  })
})
