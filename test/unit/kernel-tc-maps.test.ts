/**
 * The tools backend for tc hooks, pinned programs and map entries: what each op renders to
 * (`tc`, `tc -batch -`, `bpftool -j …`), how the JSON answers are read (filters, program ids,
 * entries as bytes), and how errors become errno and pn codes — tc's text in toolError, bpftool's
 * JSON `{"error": …}` in bpftoolError. Then the flows over them (src/datapath/bpf/tc.ts, map-io.ts)
 * as golden command sequences.
 */
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {dumpMapEntries} from '../../src/datapath/bpf/map-io.js'
import {encodeEndpointInfo, encodeEndpointKey} from '../../src/datapath/bpf/maps/index.js'
import {attachTcProgram, detachTcProgram, releaseQdisc} from '../../src/datapath/bpf/tc.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {KernelError, pnCode} from '../../src/kernel/errors.js'
import type {KernelOp} from '../../src/kernel/ops.js'
import {ToolsBackend, bpftoolError, renderArgv, renderMapLine, renderTcLine, toolError} from '../../src/kernel/tools.js'

const PIN = '/sys/fs/bpf/pn/progs/from_container'
const MAP = '/sys/fs/bpf/pn/maps/pn_lxc'
const words = (b: Buffer) => [...b].map((x) => '0x' + x.toString(16).padStart(2, '0'))
const attach: KernelOp = {kind: 'tc.attach', dev: 'lxc1', direction: 'ingress', pref: 1, handle: 1, pinned: PIN}

describe('kernel ops: tc hooks, pinned programs, map entries (tools backend)', () => {
  it('renders tc changes as tc lines and argv, queries as -j commands, map writes as bpftool batch lines', () => {
    assert.equal(renderTcLine({kind: 'qdisc.add', dev: 'lxc1'}), 'qdisc add dev lxc1 clsact')
    assert.equal(renderTcLine({kind: 'qdisc.del', dev: 'lxc1'}), 'qdisc del dev lxc1 clsact')
    assert.equal(renderTcLine(attach), `filter replace dev lxc1 ingress pref 1 handle 1 bpf da object-pinned ${PIN}`)
    assert.equal(renderTcLine({kind: 'tc.detach', dev: 'lxc1', direction: 'egress', pref: 1, handle: 1}), 'filter del dev lxc1 egress pref 1 handle 1 bpf')
    assert.deepEqual(renderArgv({kind: 'qdisc.add', dev: 'lxc1'}), {file: 'tc', args: ['qdisc', 'add', 'dev', 'lxc1', 'clsact']})
    assert.deepEqual(renderArgv({kind: 'tc.list', dev: 'lxc1', direction: 'ingress'}), {file: 'tc', args: ['-j', 'filter', 'show', 'dev', 'lxc1', 'ingress']})
    assert.deepEqual(renderArgv({kind: 'prog.get', pinned: PIN}), {file: 'bpftool', args: ['-j', 'prog', 'show', 'pinned', PIN]})
    assert.deepEqual(renderArgv({kind: 'map.dump', map: MAP}), {file: 'bpftool', args: ['-j', 'map', 'dump', 'pinned', MAP]})
    assert.deepEqual(renderArgv({kind: 'map.lookup', map: MAP, key: Buffer.from([12, 0, 0, 0])}),
      {file: 'bpftool', args: ['-j', 'map', 'lookup', 'pinned', MAP, 'key', 'hex', '0c', '00', '00', '00']})
    assert.equal(renderMapLine({kind: 'map.update', map: MAP, key: Buffer.from([12, 0, 0, 0]), value: Buffer.from([1, 255])}), `map update pinned ${MAP} key hex 0c 00 00 00 value hex 01 ff`)
    assert.equal(renderMapLine({kind: 'map.delete', map: MAP, key: Buffer.from([12, 0, 0, 0])}), `map delete pinned ${MAP} key hex 0c 00 00 00`)
    assert.throws(() => renderTcLine({kind: 'tc.list', dev: 'x', direction: 'ingress'}))
  })

  it('a qdisc and a filter go in one `tc -batch -`; one tc change alone is its own `tc` command; map writes go in one `bpftool -j batch file -`', async () => {
    const runner = new RecordingRunner()
    const b = new ToolsBackend(runner)
    const key = Buffer.from([12, 0, 0, 0])
    assert.deepEqual(await b.apply([{kind: 'qdisc.add', dev: 'lxc1'}, attach, {kind: 'map.update', map: MAP, key, value: Buffer.from([1])}, {kind: 'map.delete', map: MAP, key}]), [
      {kind: 'qdisc.add'}, {kind: 'tc.attach'}, {kind: 'map.update'}, {kind: 'map.delete', deleted: true},
    ])
    await b.apply([{kind: 'qdisc.add', dev: 'lxc2'}], {netns: '/run/netns/p'})
    assert.deepEqual(runner.records.map((r) => [r.argv.slice(r.argv.indexOf('--') + 1).join(' '), r.input]), [
      ['tc -batch -', `qdisc add dev lxc1 clsact\nfilter replace dev lxc1 ingress pref 1 handle 1 bpf da object-pinned ${PIN}\n`],
      ['bpftool -j batch file -', `map update pinned ${MAP} key hex 0c 00 00 00 value hex 01\nmap delete pinned ${MAP} key hex 0c 00 00 00\n`],
      ['tc qdisc add dev lxc2 clsact', undefined],
    ])
  })

  it('reads tc -j filter show as filters (chain heads folded, handle from hex, the program id), an absent device as none', async () => {
    const show = [
      {protocol: 'all', pref: 1, kind: 'bpf', chain: 0},
      {protocol: 'all', pref: 1, kind: 'bpf', chain: 0, options: {handle: '0x1', bpf_name: 'from_container:[*fsobj]', 'direct-action': true, prog: {id: 77, name: 'from_container', tag: 'ab12', jited: 1}}},
      {protocol: 'all', pref: 49152, kind: 'u32', chain: 0},
    ]
    const runner = new RecordingRunner((argv) => (argv.includes('lxc1') ? {stdout: JSON.stringify(show)} : {exitCode: 1, stderr: 'Cannot find device "gone"'}))
    const b = new ToolsBackend(runner)
    assert.deepEqual(await b.apply([{kind: 'tc.list', dev: 'lxc1', direction: 'ingress'}, {kind: 'tc.list', dev: 'gone', direction: 'ingress'}]), [
      {kind: 'tc.list', filters: [{pref: 1, kind: 'bpf', handle: 1, prog: {id: 77, name: 'from_container', tag: 'ab12'}}, {pref: 49152, kind: 'u32'}]},
      {kind: 'tc.list', filters: []},
    ])
  })

  it('reads bpftool -j: a pinned program, a missing pin (JSON error, ENOENT) as none, entries as bytes per CPU, an absent key as none', async () => {
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd.startsWith('bpftool -j prog show pinned /none')) return {exitCode: 255, stdout: '{"error":"bpf obj get (/none): No such file or directory"}'}
      if (cmd.startsWith('bpftool -j prog show')) return {stdout: '{"id":77,"type":"sched_cls","name":"from_container","tag":"ab12"}'}
      if (cmd.startsWith('bpftool -j map dump')) {
        return {stdout: JSON.stringify([
          {key: ['0x00', '0x00', '0x00', '0x00'], values: [{cpu: 0, value: ['0x01', '0x00']}, {cpu: 1, value: ['0x02', '0x00']}]},
          {key: ['0x01', '0x00', '0x00', '0x00'], value: {error: 'Unknown error 524'}},
          {key: ['0x02', '0x00', '0x00', '0x00'], value: ['0xff']},
        ])}
      }
      if (cmd.includes('key hex 09')) return {exitCode: 254, stdout: 'null'}
      return {stdout: '{"key":["0x01","0x00","0x00","0x00"],"value":["0x2a"]}'}
    })
    const b = new ToolsBackend(runner)
    const [p, none, dump, hit, miss] = await b.apply([
      {kind: 'prog.get', pinned: PIN},
      {kind: 'prog.get', pinned: '/none'},
      {kind: 'map.dump', map: MAP},
      {kind: 'map.lookup', map: MAP, key: Buffer.from([1, 0, 0, 0])},
      {kind: 'map.lookup', map: MAP, key: Buffer.from([9, 0, 0, 0])},
    ])
    assert.deepEqual(p, {kind: 'prog.get', prog: {id: 77, name: 'from_container', tag: 'ab12'}})
    assert.deepEqual(none, {kind: 'prog.get', prog: undefined})
    assert.deepEqual(dump, {kind: 'map.dump', entries: [
      {key: Buffer.from([0, 0, 0, 0]), values: [Buffer.from([1, 0]), Buffer.from([2, 0])]},
      {key: Buffer.from([1, 0, 0, 0]), unreadable: 'ENOTSUPP'},
      {key: Buffer.from([2, 0, 0, 0]), value: Buffer.from([0xff])},
    ]})
    assert.deepEqual(hit, {kind: 'map.lookup', value: Buffer.from([0x2a])})
    assert.deepEqual(miss, {kind: 'map.lookup', value: undefined})
  })

  it('object load, map create and map info: the bpftool argv, the map shape read from JSON, a load failure in libbpf\'s words with the log', async () => {
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd.startsWith('bpftool -j map show pinned /none')) return {exitCode: 255, stdout: '{"error":"bpf obj get (/none): No such file or directory"}'}
      if (cmd.startsWith('bpftool -j map show')) return {stdout: '{"id":9,"type":"lru_hash","name":"pn_ct4","bytes_key":16,"bytes_value":16,"max_entries":65536}'}
      if (cmd.includes('/bad.o')) return {exitCode: 255, stderr: 'libbpf: prog \'from_container\': BPF program load failed: Permission denied\nlibbpf: -- BEGIN PROG LOAD LOG --\nR1 invalid mem access\nError: failed to load object file\n'}
      return {}
    })
    const b = new ToolsBackend(runner)
    const load: KernelOp = {kind: 'obj.load', object: '/o/pn.o', pinDir: '/fs/progs', progType: 'classifier', maps: [{name: 'pn_lxc', pinned: MAP}]}
    const create: KernelOp = {kind: 'map.create', map: '/fs/maps/pn_ct4', name: 'pn_ct4', type: 'lru_hash', keySize: 16, valueSize: 16, maxEntries: 65536, flags: 1}
    const [l, c, info, none] = await b.apply([load, create, {kind: 'map.info', map: '/fs/maps/pn_ct4'}, {kind: 'map.info', map: '/none'}])
    assert.deepEqual([l, c], [{kind: 'obj.load'}, {kind: 'map.create'}])
    assert.deepEqual(info, {kind: 'map.info', info: {id: 9, type: 'lru_hash', keySize: 16, valueSize: 16, maxEntries: 65536}})
    assert.deepEqual(none, {kind: 'map.info', info: undefined})
    assert.deepEqual(runner.records.map((r) => r.argv.join(' ')).slice(0, 2), [
      `bpftool prog loadall /o/pn.o /fs/progs type classifier map name pn_lxc pinned ${MAP}`,
      'bpftool map create /fs/maps/pn_ct4 type lru_hash key 16 value 16 entries 65536 name pn_ct4 flags 1',
    ])
    const fresh = renderArgv({kind: 'obj.load', object: '/o/pn.o', pinDir: '/fs/progs', progType: 'classifier', pinMaps: '/fs/maps'})
    assert.deepEqual(fresh.args, ['prog', 'loadall', '/o/pn.o', '/fs/progs', 'type', 'classifier', 'pinmaps', '/fs/maps'])
    const err = await b.apply([{kind: 'obj.load', object: '/o/bad.o', pinDir: '/fs/progs', progType: 'classifier'}]).catch((e: unknown) => e)
    assert.ok(err instanceof KernelError)
    assert.equal(err.code, 'PN_BPF_LOAD_FAILED')
    assert.match(err.why, /BPF program load failed: Permission denied/)
    assert.match(String((err.details as {log: string}).log), /R1 invalid mem access/, 'the verifier log travels in details.log')
  })

  it('a failed bpftool batch: the JSON entry with the error is the failing op (index, errno); a map not pinned is PN_BPF_NOT_LOADED', async () => {
    const runner = new RecordingRunner(() => ({exitCode: 254, stdout: JSON.stringify([
      {command: ['map', 'update'], output: null},
      {command: ['map', 'update'], output: {error: 'bpf obj get (/sys/fs/bpf/pn/maps/pn_x): No such file or directory'}},
    ])}))
    const key = Buffer.from([1, 0, 0, 0])
    await assert.rejects(new ToolsBackend(runner).apply([
      {kind: 'sysctl.set', key: 'net.ipv4.ip_forward', value: '1'},
      {kind: 'map.update', map: MAP, key, value: key},
      {kind: 'map.update', map: '/sys/fs/bpf/pn/maps/pn_x', key, value: key},
      {kind: 'map.update', map: MAP, key, value: key},
    ]), (e: KernelError) => {
      assert.equal(e.index, 2)
      assert.equal(e.errno, 'ENOENT')
      assert.equal(e.code, 'PN_BPF_NOT_LOADED')
      assert.equal(e.message, 'update pn_x entry 01000000: No such file or directory')
      assert.match(e.hint ?? '', /pn bpf load --host/)
      return true
    })
  })

  it('a missingOk map.delete that finds nothing is {deleted: false}, and the batch goes on after it', async () => {
    let n = 0
    const runner = new RecordingRunner((argv) => {
      if (!argv.includes('batch') || n++ > 0) return undefined
      return {exitCode: 254, stdout: JSON.stringify([{command: ['map', 'delete'], output: null}, {command: ['map', 'delete'], output: {error: 'delete failed: No such file or directory'}}])}
    })
    const del = (k: number): KernelOp => ({kind: 'map.delete', map: MAP, key: Buffer.from([k, 0, 0, 0]), missingOk: true})
    assert.deepEqual(await new ToolsBackend(runner).apply([del(1), del(2), del(3)]), [
      {kind: 'map.delete', deleted: true}, {kind: 'map.delete', deleted: false}, {kind: 'map.delete', deleted: true},
    ])
    assert.deepEqual(runner.records.map((r) => r.input!.trim().split('\n').length), [3, 1], 'the rest after the absent key, in a second batch')
    // Without missingOk the same answer is an error on that op.
    const strict = new RecordingRunner(() => ({exitCode: 254, stdout: JSON.stringify([{command: ['map', 'delete'], output: {error: 'delete failed: No such file or directory'}}])}))
    await assert.rejects(new ToolsBackend(strict).apply([{kind: 'map.delete', map: MAP, key: Buffer.from([1, 0, 0, 0])}]), (e: KernelError) => e.index === 0 && e.errno === 'ENOENT')
  })

  it('tc errors: a second clsact (Exclusivity flag on) is EEXIST; a missing filter, qdisc or device with missingOk is {deleted: false}', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv[1] === 'qdisc' && argv[2] === 'add') return {exitCode: 2, stderr: 'Error: Exclusivity flag on, cannot modify.'}
      if (argv[1] === 'qdisc' && argv[2] === 'del') return {exitCode: 2, stderr: 'Error: Invalid handle.'}
      if (argv.includes('lxc1')) return {exitCode: 2, stderr: 'Error: Cannot find specified filter chain.\nWe have an error talking to the kernel'}
      return {exitCode: 1, stderr: 'Cannot find device "gone"'}
    })
    const b = new ToolsBackend(runner)
    await assert.rejects(b.apply([{kind: 'qdisc.add', dev: 'lxc1'}]), (e: KernelError) =>
      e.index === 0 && e.errno === 'EEXIST' && e.extack === 'Exclusivity flag on, cannot modify' && e.message === 'add clsact qdisc on lxc1: Exclusivity flag on, cannot modify')
    assert.deepEqual(await b.apply([
      {kind: 'qdisc.del', dev: 'lxc1', missingOk: true},
      {kind: 'tc.detach', dev: 'lxc1', direction: 'ingress', pref: 1, handle: 1, missingOk: true},
      {kind: 'tc.detach', dev: 'gone', direction: 'ingress', pref: 1, handle: 1, missingOk: true},
    ]), [{kind: 'qdisc.del', deleted: false}, {kind: 'tc.detach', deleted: false}, {kind: 'tc.detach', deleted: false}])
    await assert.rejects(b.apply([{kind: 'tc.detach', dev: 'gone', direction: 'ingress', pref: 1, handle: 1}]), (e: KernelError) => e.errno === 'ENODEV' && e.code === 'PN_LINK_NOT_FOUND')
  })

  it('a failed tc batch: the failing op is found from state in JSON (qdisc there, filter not: the filter; its pin missing: PN_BPF_NOT_LOADED)', async () => {
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd === 'tc -batch -') return {exitCode: 1, stderr: `Couldn't retrieve pinned program '${PIN}': No such file or directory\nUnable to parse bpf command line\nCommand failed -:2`}
      if (cmd === 'tc -j qdisc show dev lxc1') return {stdout: '[{"kind":"clsact","handle":"ffff:","parent":"ffff:fff1","options":{}}]'}
      if (cmd === 'tc -j filter show dev lxc1 ingress') return {stdout: '[]'}
      if (cmd.startsWith('bpftool -j prog show')) return {exitCode: 255, stdout: `{"error":"bpf obj get (${PIN}): No such file or directory"}`}
      return undefined
    })
    await assert.rejects(new ToolsBackend(runner).apply([{kind: 'qdisc.add', dev: 'lxc1'}, attach]), (e: KernelError) =>
      e.index === 1 && e.errno === 'ENOENT' && e.code === 'PN_BPF_NOT_LOADED')
    assert.ok(runner.records.slice(1).every((r) => r.argv.includes('-j')), 'only JSON queries after the batch')
    // The qdisc line failing (a second clsact): the filter is absent too, but the add is the failing op.
    const again = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd === 'tc -batch -') return {exitCode: 2, stderr: 'Error: Exclusivity flag on, cannot modify.\nCommand failed -:1'}
      if (cmd === 'tc -j qdisc show dev lxc1') return {stdout: '[{"kind":"clsact"}]'}
      if (cmd === 'tc -j filter show dev lxc1 ingress') return {stdout: '[]'}
      if (cmd.startsWith('bpftool -j prog show')) return {stdout: '{"id":5}'}
      return undefined
    })
    await assert.rejects(new ToolsBackend(again).apply([{kind: 'qdisc.add', dev: 'lxc1'}, attach]), (e: KernelError) => e.index === 0 && e.errno === 'EEXIST')
  })

  it('errors: tc\'s text and bpftool\'s JSON error → errno (the one reader); tc, map and program ops → pn codes (the one mapping)', () => {
    assert.equal(toolError('Error: Exclusivity flag on, cannot modify.').errno, 'EEXIST')
    assert.equal(toolError('RTNETLINK answers: File exists').errno, 'EEXIST')
    assert.equal(toolError('Cannot find device "lxc1"').errno, 'ENODEV')
    assert.equal(toolError('Error: Parent Qdisc doesn\'t exists.\nWe have an error talking to the kernel').errno, 'ENOENT')
    assert.equal(toolError('Error: Cannot find specified qdisc on specified device.').errno, 'ENOENT')
    assert.equal(toolError('Error: Filter with specified priority/protocol not found.').errno, 'ENOENT')
    assert.equal(toolError(`Couldn't retrieve pinned program '/p': Operation not permitted`).errno, 'EPERM')
    assert.deepEqual(bpftoolError('update failed: Argument list too long'), {errno: 'E2BIG', text: 'update failed: Argument list too long'})
    assert.equal(bpftoolError('bpf obj get (/p): No such file or directory').errno, 'ENOENT')
    assert.equal(bpftoolError('incorrect object type: map').errno, undefined)
    const key = Buffer.alloc(4)
    assert.equal(pnCode({kind: 'map.update', map: MAP, key, value: key}, 'ENOENT'), 'PN_BPF_NOT_LOADED')
    assert.equal(pnCode({kind: 'map.update', map: MAP, key, value: key}, 'E2BIG'), 'PN_BPF_LOAD_FAILED')
    assert.equal(pnCode({kind: 'prog.get', pinned: PIN}, 'ENOENT'), 'PN_BPF_NOT_LOADED')
    assert.equal(pnCode(attach, 'ENOENT'), 'PN_BPF_NOT_LOADED')
    assert.equal(pnCode(attach, 'EINVAL'), 'PN_BPF_LOAD_FAILED')
    assert.equal(pnCode(attach, 'ENODEV'), 'PN_LINK_NOT_FOUND')
    assert.equal(pnCode(attach, 'EPERM'), 'PN_NOT_ROOT')
    assert.equal(pnCode({kind: 'qdisc.add', dev: 'x'}, 'EEXIST'), 'PN_COMMAND_FAILED')
    assert.equal(pnCode({kind: 'tc.detach', dev: 'x', direction: 'ingress', pref: 1, handle: 1}, 'ENOENT'), 'PN_COMMAND_FAILED')
  })
})

describe('tc and map flows (golden command sequences, no root)', () => {
  let root: string
  const lxc = 'lxc0123456789ab'
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'pn-tc-golden-'))
    mkdirSync(path.join(root, 'progs'))
    mkdirSync(path.join(root, 'maps'))
    writeFileSync(path.join(root, 'progs/from_container'), '')
    writeFileSync(path.join(root, 'maps/pn_endpoints'), '')
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))
  const pinned = () => path.join(root, 'progs/from_container')
  const marker = () => path.join(root, 'qdiscs', `${lxc}@12`)
  const cmds = (r: RecordingRunner) => r.records.map((x) => x.argv.join(' '))

  it('attach on a fresh device: qdisc and filter in one tc batch, then the qdisc marker', async () => {
    const runner = new RecordingRunner()
    assert.deepEqual(await attachTcProgram(runner, {root, device: lxc, ifindex: 12, direction: 'ingress', program: 'from_container', freshDevice: true}), {changed: true, createdQdisc: true})
    assert.deepEqual(cmds(runner), ['tc -batch -'])
    assert.ok(existsSync(marker()), 'the qdisc is remembered as pn\'s')
    assert.equal(runner.records[0].input, `qdisc add dev ${lxc} clsact\nfilter replace dev ${lxc} ingress pref 1 handle 1 bpf da object-pinned ${pinned()}\n`)
  })

  it('attach on a fresh device whose filter fails: the qdisc pn just made is given back, and the error says so in pn\'s words', async () => {
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd === 'tc -batch -') return {exitCode: 2, stderr: 'RTNETLINK answers: Invalid argument\nWe have an error talking to the kernel\nCommand failed -:2'}
      if (cmd === `tc -j qdisc show dev ${lxc}`) return {stdout: '[{"kind":"clsact"}]'}
      if (cmd.startsWith('tc -j filter show')) return {stdout: '[]'}
      if (cmd.startsWith('bpftool -j prog show')) return {stdout: '{"id":5}'}
      return undefined
    })
    // The kernel refused the filter (EINVAL: a program of the wrong type, say).
    const probe = await attachTcProgram(runner, {root, device: lxc, ifindex: 12, direction: 'ingress', program: 'from_container', freshDevice: true}).catch((e: unknown) => e)
    assert.ok(probe instanceof Error)
    assert.equal((probe as {code?: string}).code, 'PN_BPF_LOAD_FAILED')
    assert.match(probe.message, new RegExp(`^attach from-container to ${lxc} ingress: `))
    assert.match(probe.message, /Invalid argument$/)
    assert.deepEqual(cmds(runner).filter((c) => !c.includes(' -j ')), ['tc -batch -', `tc qdisc del dev ${lxc} clsact`])
    assert.equal(existsSync(marker()), false)
  })

  it('attach on a device that has a qdisc and another program: qdisc add (EEXIST), the hook and the pin compared by id, then the filter', async () => {
    const runner = new RecordingRunner((argv) => {
      const cmd = argv.join(' ')
      if (cmd.startsWith('tc qdisc add')) return {exitCode: 2, stderr: 'Error: Exclusivity flag on, cannot modify.'}
      if (cmd.startsWith('tc -j filter show')) return {stdout: JSON.stringify([{pref: 1, kind: 'bpf', options: {handle: '0x1', prog: {id: 41, name: 'from_container'}}}])}
      if (cmd.startsWith('bpftool -j prog show')) return {stdout: '{"id":77,"name":"from_container"}'}
      return undefined
    })
    assert.deepEqual(await attachTcProgram(runner, {root, device: lxc, ifindex: 12, direction: 'ingress', program: 'from_container'}), {changed: true, createdQdisc: false})
    assert.deepEqual(cmds(runner), [
      `tc qdisc add dev ${lxc} clsact`,
      `tc -j filter show dev ${lxc} ingress`,
      `bpftool -j prog show pinned ${pinned()}`,
      `tc filter replace dev ${lxc} ingress pref 1 handle 1 bpf da object-pinned ${pinned()}`,
    ])
  })

  it('attach to a device that is not there: PN_LINK_NOT_FOUND with what to create', async () => {
    const runner = new RecordingRunner(() => ({exitCode: 1, stderr: `Cannot find device "${lxc}"`}))
    await assert.rejects(attachTcProgram(runner, {root, device: lxc, ifindex: 12, direction: 'ingress', program: 'from_container'}), (e: Error & {code?: string; hint?: string}) =>
      e.code === 'PN_LINK_NOT_FOUND' && /create the device first/.test(e.hint ?? ''))
  })

  it('detach and release: filter del, then (pn\'s qdisc, nothing left on it) both hooks listed and the qdisc deleted; gone already is {changed: false}', async () => {
    mkdirSync(marker(), {recursive: true})
    const runner = new RecordingRunner()
    assert.deepEqual(await detachTcProgram(runner, {device: lxc, direction: 'ingress'}), {changed: true})
    assert.deepEqual(await releaseQdisc(runner, root, lxc, 12), {deleted: true})
    assert.deepEqual(cmds(runner).slice(0, 4).sort(), [
      `tc -j filter show dev ${lxc} egress`,
      `tc -j filter show dev ${lxc} ingress`,
      `tc filter del dev ${lxc} ingress pref 1 handle 1 bpf`,
      `tc qdisc del dev ${lxc} clsact`,
    ])
    const gone = new RecordingRunner(() => ({exitCode: 2, stderr: 'Error: Parent Qdisc doesn\'t exists.\nWe have an error talking to the kernel'}))
    assert.deepEqual(await detachTcProgram(gone, {device: lxc, direction: 'ingress'}), {changed: false})
  })

  it('release keeps a qdisc that carries someone else\'s filter', async () => {
    mkdirSync(marker(), {recursive: true})
    const runner = new RecordingRunner((argv) => (argv.includes('egress') ? {stdout: JSON.stringify([{pref: 49152, kind: 'u32'}])} : {stdout: '[]'}))
    const r = await releaseQdisc(runner, root, lxc, 12)
    assert.equal(r.deleted, false)
    assert.match(r.warning ?? '', /still carries 1 filter/)
    assert.equal(runner.records.some((x) => x.argv.includes('del')), false)
  })

  it('a map dump is decoded from the entries\' bytes with the map\'s descriptor', async () => {
    const value = encodeEndpointInfo({ifindex: 12, endpointId: 5, flags: 0, podMac: '02:00:00:00:00:01', lxcMac: '02:00:00:00:00:02'})
    const runner = new RecordingRunner(() => ({stdout: JSON.stringify([{key: words(encodeEndpointKey('10.0.1.5')), value: words(value)}])}))
    const [e] = await dumpMapEntries(runner, root, 'pn_endpoints')
    assert.deepEqual(cmds(runner), [`bpftool -j map dump pinned ${path.join(root, 'maps/pn_endpoints')}`])
    assert.equal(e.key.ip, '10.0.1.5')
    assert.equal(e.value.ifindex, 12)
    assert.equal(e.value.podMac, '02:00:00:00:00:01')
  })
})
