/**
 * `pn monitor` on a host-routes node: no pn program is in its packet path, so monitor says so
 * instead of advising `pn bpf load --host`, which would leave `pn status` reporting from-netdev
 * on the uplink as drift (a host-routes node expects no program there).
 */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {writeNodeContext, type NodeContext} from '../../src/node/context.js'
import {monitorNode} from '../../src/node/monitor.js'
import {compareHooks} from '../../src/node/status.js'

describe('monitor on a host-routes node', () => {
  let dir: string
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-mon-'))
    const ctx: NodeContext = {
      version: 1, name: 'h1', uplink: 'eth0', podCidrs: ['10.9.0.0/24'], routerIps: ['10.9.0.1'], mtu: 1500, routeMtu: 1500,
      bpffsRoot: path.join(dir, 'bpffs'), routing: 'host-routes', createdAt: new Date(0).toISOString(),
    }
    await writeNodeContext(dir, ctx)
  })
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('refuses with the routing mode named and a hint that does not say to load the host programs', async () => {
    const runner = new RecordingRunner()
    await assert.rejects(monitorNode(runner, dir, {onEvent: () => undefined}), (err: unknown) => {
      assert.ok(isPnError(err, 'PN_BPF_NOT_LOADED'), String(err))
      assert.match(err.message, /routing is host-routes/)
      assert.doesNotMatch(err.hint ?? '', /bpf load --host/)
      assert.match(err.hint ?? '', /--routing bpf/)
      return true
    })
    assert.equal(runner.records.length, 0, 'nothing ran, nothing was loaded')
  })

  it('what the old hint led to is drift in pn status: from-netdev on a host-routes uplink', () => {
    // A host-routes uplink expects no hooks (hostSection passes {}), so a loaded from-netdev is drift.
    const r = compareHooks('eth0', {}, [{device: 'eth0', direction: 'ingress', program: 'from-netdev', id: 5, current: true} as never])
    assert.equal(r.hooks[0].state, 'drifted')
  })
})
