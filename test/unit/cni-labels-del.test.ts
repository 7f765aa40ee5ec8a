/**
 * A bad pod label fails ADD only. containerd's CRI sends DEL with the same netconf (the same
 * pod annotations) after an ADD that failed, and again on every StopPodSandbox; a DEL that failed
 * on the label would leave the sandbox impossible to stop or remove
 * (test/integration/cri.integration.ts drives that through containerd).
 */
import assert from 'node:assert/strict'
import {RecordingRunner} from '../../src/exec/runner.js'
import {LABELS_ANNOTATION, POD_ANNOTATIONS_CAPABILITY} from '../../src/cni/labels.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import {runProtocol, type Handlers} from '../../src/cni/protocol.js'
import {manualNodeRequest} from '../../src/cni/manual.js'
import {PnError} from '../../src/errors.js'

const badConf = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'pn',
  type: 'pn',
  runtimeConfig: {[POD_ANNOTATIONS_CAPABILITY]: {[LABELS_ANNOTATION]: '{"app":"a b"}'}},
})

const isBadLabel = (err: unknown) => err instanceof PnError && err.code === 'PN_CNI_INVALID_CONFIG' && /label app="a b" has a bad value/.test(err.message)

describe('pod labels: checked on ADD, ignored by DEL, CHECK, GC and STATUS', () => {
  it('parseNetConf refuses a bad label for ADD (and with no command), not for the others', () => {
    assert.throws(() => parseNetConf(badConf, 'ADD'), isBadLabel)
    assert.throws(() => parseNetConf(badConf), isBadLabel)
    for (const command of ['DEL', 'CHECK', 'GC', 'STATUS']) assert.deepEqual(parseNetConf(badConf, command).labels, {}, command)
    assert.throws(() => manualNodeRequest({command: 'ADD', stateDir: '/tmp/x', runner: new RecordingRunner(), extra: JSON.parse(badConf)}), isBadLabel)
    assert.deepEqual(manualNodeRequest({command: 'DEL', stateDir: '/tmp/x', runner: new RecordingRunner(), extra: JSON.parse(badConf)}).conf.labels, {})
  })

  it('the protocol: ADD fails with code 7 before any handler runs; the DEL that follows reaches the DEL flow and exits 0', async () => {
    const calls: string[] = []
    const handlers = {
      add: async () => {
        calls.push('ADD')
        throw new Error('not reached')
      },
      del: async () => void calls.push('DEL'),
    } as unknown as Handlers
    const env = {CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'}
    const run = (command: string) => runProtocol({env: {...env, CNI_COMMAND: command}, stdin: badConf, runner: new RecordingRunner(), handlers, log: () => {}})
    const add = await run('ADD')
    assert.equal(add.exitCode, 1)
    assert.equal(JSON.parse(add.stdout).code, 7)
    assert.match(JSON.parse(add.stdout).msg, /label app="a b" has a bad value/)
    const del = await run('DEL')
    assert.equal(del.exitCode, 0, del.stdout)
    assert.deepEqual(calls, ['DEL'])
  })
})
