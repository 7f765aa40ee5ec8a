/**
 * `pn bpf map dump`: a perf event array (pn_events) dumps as its CPU slots plus what it is,
 * instead of crashing on the values the kernel will not read out; an unknown map name is said to
 * be unknown, with the known names and the nearest ones, not "load the datapath first".
 */
import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {decodeEntries, dumpMapView, unknownMapError} from '../../src/datapath/bpf/map-io.js'

// What bpftool prints for a pinned perf event array (values: EOPNOTSUPP from the kernel).
const EVENTS_DUMP = JSON.stringify([
  {key: ['0x00', '0x00', '0x00', '0x00'], value: {error: 'Unknown error 524'}},
  {key: ['0x01', '0x00', '0x00', '0x00'], value: {error: 'Unknown error 524'}},
])

describe('bpf map dump (event arrays, unknown names)', () => {
  let root: string
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'pn-dump-'))
    mkdirSync(path.join(root, 'maps'))
    writeFileSync(path.join(root, 'maps', 'pn_events'), '')
  })
  after(() => rmSync(root, {recursive: true, force: true}))

  it('decodes pn_events slots whose values are errors as cpu → unreadable (no crash)', () => {
    const key = (n: number) => Buffer.from([n, 0, 0, 0])
    const out = decodeEntries('pn_events', [{key: key(0), unreadable: 'ENOTSUPP'}, {key: key(1), unreadable: 'ENOTSUPP'}])
    assert.deepEqual(out, [{key: {cpu: 0}, value: {unreadable: 'ENOTSUPP'}}, {key: {cpu: 1}, value: {unreadable: 'ENOTSUPP'}}])
  })

  it('dumps pn_events with a note that it is an event stream read with pn monitor', async () => {
    const runner = new RecordingRunner(() => ({stdout: EVENTS_DUMP}))
    const r = await dumpMapView(runner, root, 'pn_events')
    assert.deepEqual(runner.records.map((x) => x.argv), [['bpftool', '-j', 'map', 'dump', 'pinned', path.join(root, 'maps', 'pn_events')]])
    assert.equal(r.type, 'perf_event_array')
    assert.deepEqual(r.entries, [{key: {cpu: 0}, value: {unreadable: 'ENOTSUPP'}}, {key: {cpu: 1}, value: {unreadable: 'ENOTSUPP'}}], 'bpftool\'s "Unknown error 524" is the kernel\'s ENOTSUPP')
    assert.match(r.note ?? '', /perf event array: an event stream with one slot per CPU \(2\).*`pn monitor`/)
  })

  it('an unknown name is PN_INVALID_ARGUMENT naming the known maps and the nearest one', async () => {
    const runner = new RecordingRunner(() => ({stdout: '[]'}))
    await assert.rejects(dumpMapView(runner, root, 'pn_endpoint'), (err: unknown) => {
      assert.ok(isPnError(err, 'PN_INVALID_ARGUMENT'), String(err))
      assert.match(err.message, /^dump map pn_endpoint: unknown map \(did you mean pn_endpoints\?\)$/)
      assert.match(err.hint ?? '', /pn_endpoints, pn_lxc, pn_ipcache, pn_metrics/)
      assert.doesNotMatch(err.hint ?? '', /load the datapath/)
      return true
    })
    const drops = unknownMapError('dump map', 'pn_drops')
    assert.match(drops.message, /unknown map/)
    assert.match(drops.hint ?? '', /drop counters are in pn_metrics/)
    assert.equal(runner.records.length, 0, 'no bpftool run for a name pn does not know')
  })

  it('a known map that is not pinned still says to load the datapath', async () => {
    await assert.rejects(dumpMapView(new RecordingRunner(), root, 'pn_lxc'), (err: unknown) => isPnError(err, 'PN_BPF_NOT_LOADED'))
  })
})
