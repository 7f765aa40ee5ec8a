import assert from 'node:assert/strict'
import {nodeSysctls, podCidrRoutes} from '../../src/node/init.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {runPlan, UndoStack} from '../../src/flow/plan.js'

describe('node init pieces', () => {
  it('sets Cilium\'s per-device sysctls, ip_forward first', () => {
    const s = nodeSysctls(['10.0.1.0/24'])
    assert.equal(Object.keys(s)[0], 'net.ipv4.ip_forward')
    assert.equal(s['net.ipv4.conf.all.rp_filter'], '0')
    for (const dev of ['pn_host', 'pn_net']) {
      assert.equal(s[`net.ipv4.conf.${dev}.forwarding`], '1')
      assert.equal(s[`net.ipv4.conf.${dev}.rp_filter`], '0')
      assert.equal(s[`net.ipv4.conf.${dev}.accept_local`], '1')
      assert.equal(s[`net.ipv4.conf.${dev}.send_redirects`], '0')
    }
    assert.equal(s['net.ipv6.conf.pn_host.forwarding'], undefined)
    assert.equal(nodeSysctls(['10.0.1.0/24', 'fd00::/64'])['net.ipv6.conf.pn_host.forwarding'], '1')
  })

  it('routes the pod CIDR via the router IP (v4) and without via for v6', () => {
    assert.deepEqual(podCidrRoutes(['10.0.1.0/24', 'fd00:1::/64'], ['10.0.1.1', 'fd00:1::1']), [
      '10.0.1.0/24 via 10.0.1.1 dev pn_host src 10.0.1.1',
      'fd00:1::/64 dev pn_host src fd00:1::1',
    ])
  })

  it('a failing plan unwinds its undo stack newest first and reports undo failures', async () => {
    const undo = new UndoStack()
    const order: string[] = []
    const runner = new RecordingRunner()
    const plan = {
      steps: [
        {title: 'one', run: async () => undo.push('undo one', async () => order.push('one'))},
        {title: 'two', run: async () => undo.push('undo two', async () => { throw new Error('stuck') })},
        {title: 'three', run: async () => { await runner.run('false', []); throw new Error('boom') }},
      ],
      result: () => 'done',
      rollback: () => undo.unwind(),
    }
    await assert.rejects(runPlan(plan, 'do things'), (e: Error & {details?: {rollbackErrors?: {step: string; message: string}[]}}) =>
      /boom/.test(e.message) && e.details?.rollbackErrors?.[0]?.step === 'undo two' &&
      e.details.rollbackErrors[0].message === 'undo two: stuck')
    assert.deepEqual(order, ['one'])
  })
})
