import assert from 'node:assert/strict'
import {PnError} from '../../src/errors.js'
import {flowRunning} from '../../src/flow/interrupt.js'
import {runPlan, UndoStack} from '../../src/flow/plan.js'

describe('interrupted plans (a per-request AbortSignal)', () => {
  it('stop at the next checkpoint and unwind what was done, including the in-flight step', async () => {
    const ac = new AbortController()
    const undo = new UndoStack()
    const done: string[] = []
    const undone: string[] = []
    const step = (name: string, signalDuring = false) => ({
      title: name,
      run: async () => {
        if (signalDuring) ac.abort('SIGINT') // the signal lands while this step runs
        done.push(name)
        undo.push(name, async () => undone.push(name))
      },
    })
    const plan = {steps: [step('ipam'), step('veth', true), step('endpoint')], result: () => 'ok', undo}
    await assert.rejects(runPlan(plan, 'add attachment c:eth0', {signal: ac.signal}), (e: PnError) =>
      e.code === 'PN_INTERRUPTED' && /add attachment c:eth0: interrupted by SIGINT/.test(e.message) && e.exitCode === 130)
    assert.deepEqual(done, ['ipam', 'veth'], 'no step starts after the signal')
    assert.deepEqual(undone, ['veth', 'ipam'], 'the in-flight step finished and was undone too, newest first')
  })

  it('an interrupt after the last step still unwinds (the caller never saw success)', async () => {
    const ac = new AbortController()
    const undo = new UndoStack()
    const undone: string[] = []
    const plan = {
      steps: [{title: 'only', run: async () => { undo.push('only', async () => undone.push('only')); ac.abort('SIGTERM') }}],
      result: () => 'ok',
      undo,
    }
    await assert.rejects(runPlan(plan, 'init node', {signal: ac.signal}), (e: PnError) => e.code === 'PN_INTERRUPTED' && /SIGTERM/.test(e.message))
    assert.deepEqual(undone, ['only'])
  })

  it('two requests in one process are interrupted independently', async () => {
    const a = new AbortController()
    const b = new AbortController()
    const ran: string[] = []
    const plan = (name: string, abort?: AbortController) => ({
      steps: [
        {title: 'one', run: async () => { ran.push(`${name}1`); abort?.abort('SIGINT') }},
        {title: 'two', run: async () => void ran.push(`${name}2`)},
      ],
      result: () => name,
      undo: new UndoStack(),
    })
    const [ra, rb] = await Promise.allSettled([runPlan(plan('a', a), 'a', {signal: a.signal}), runPlan(plan('b'), 'b', {signal: b.signal})])
    assert.equal(ra.status, 'rejected')
    assert.deepEqual(rb, {status: 'fulfilled', value: 'b'})
    assert.deepEqual(ran.sort(), ['a1', 'b1', 'b2'])
  })

  it('a running flow marks its signal as watched, so an entry defers the signal instead of exiting', async () => {
    const ac = new AbortController()
    let seen = false
    const plan = {steps: [{title: 's', run: async () => void (seen = flowRunning(ac.signal))}], result: () => 1, undo: new UndoStack()}
    assert.equal(flowRunning(ac.signal), false)
    await runPlan(plan, 's', {signal: ac.signal})
    assert.equal(seen, true)
    assert.equal(flowRunning(ac.signal), false)
  })

  it('afterStep can fail a flow after a chosen step (fault injection), and the flow unwinds', async () => {
    const undo = new UndoStack()
    const undone: string[] = []
    const plan = {
      steps: ['a', 'b', 'c'].map((n) => ({title: n, run: async () => undo.push(n, async () => undone.push(n))})),
      result: () => 'ok',
      undo,
    }
    await assert.rejects(runPlan(plan, 'x', {afterStep: (i) => { if (i === 1) throw new Error('injected') }}), /injected/)
    assert.deepEqual(undone, ['b', 'a'])
  })
})
