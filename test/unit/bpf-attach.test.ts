import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {attachEndpoint, compileObjects, detachEndpoint, type DatapathEndpoint} from '../../src/datapath/bpf/index.js'
import {encodeEndpointInfo, encodeEndpointKey, encodeLxcInfo, encodeLxcKey} from '../../src/datapath/bpf/maps/index.js'
import {isPnError} from '../../src/errors.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import type {NodeContext} from '../../src/node/context.js'

const hex = (b: Buffer) => [...b].map((x) => '0x' + x.toString(16).padStart(2, '0'))

describe('bpf attach/detach (golden argv, no root)', () => {
  let root: string
  let node: NodeContext
  const ep: DatapathEndpoint = {
    containerId: 'c1',
    ifname: 'eth0',
    endpointId: 5,
    ips: ['10.0.1.5'],
    hostIfname: 'lxc0123456789ab',
    hostIfindex: 12,
    hostMac: '02:00:00:00:00:02',
    podMac: '02:00:00:00:00:01',
  }

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'pn-bpf-attach-'))
    // Stand-ins for the pins loadHostPrograms would have made.
    mkdirSync(path.join(root, 'progs'))
    mkdirSync(path.join(root, 'maps'))
    writeFileSync(path.join(root, 'progs/from_container'), '')
    for (const m of ['pn_endpoints', 'pn_lxc', 'pn_ipcache', 'pn_metrics']) writeFileSync(path.join(root, 'maps', m), '')
    node = {version: 1, name: 'n1', uplink: 'eth0', podCidrs: ['10.0.1.0/24'], routerIps: ['10.0.1.1'], mtu: 1500, routeMtu: 1500, bpffsRoot: root, routing: 'bpf', createdAt: ''}
  })

  afterEach(() => rmSync(root, {recursive: true, force: true}))

  it('attaching a pod writes maps in one bpftool batch, adds clsact + filter, and never runs clang', async () => {
    const runner = new RecordingRunner()
    const r = await attachEndpoint(runner, node, ep)
    assert.equal(r.changed, true)
    assert.equal(runner.ran('clang'), false)
    assert.deepEqual(runner.records.map((x) => x.argv.slice(0, 4)), [
      ['bpftool', '-j', 'batch', 'file'],
      ['tc', 'qdisc', 'add', 'dev'],
      ['tc', 'filter', 'replace', 'dev'],
    ])
    const batch = runner.records[0].input!.trim().split('\n')
    assert.equal(batch.length, 3)
    assert.match(batch[0], new RegExp(`^map update pinned ${root}/maps/pn_endpoints key hex 0a 00 01 05 `))
    assert.match(batch[1], /^map update pinned .*\/maps\/pn_ipcache key hex 40 00 00 00 01 00 00 00 0a 00 01 05/)
    assert.match(batch[2], /^map update pinned .*\/maps\/pn_lxc key hex 0c 00 00 00 value hex 0a 00 01 05 05 00 00 00/)
    assert.deepEqual(runner.records[2].argv, [
      'tc', 'filter', 'replace', 'dev', 'lxc0123456789ab', 'ingress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'object-pinned', `${root}/progs/from_container`,
    ])
  })

  it('attaching again when the pinned program is already attached changes nothing', async () => {
    const runner = new RecordingRunner((argv) => {
      if (argv[1] === 'qdisc') return {exitCode: 2, stderr: 'Error: Exclusivity flag on, cannot modify.'}
      if (argv[0] === 'bpftool' && argv.includes('show')) return {stdout: JSON.stringify({id: 77})}
      if (argv[0] === 'tc' && argv.includes('show')) {
        return {stdout: JSON.stringify([{pref: 1, kind: 'bpf'}, {pref: 1, kind: 'bpf', options: {bpf_name: 'from_container:[*fsobj]', prog: {id: 77}}}])}
      }
      return undefined
    })
    const r = await attachEndpoint(runner, node, ep)
    assert.equal(r.changed, false)
    assert.equal(runner.records.some((x) => x.argv.includes('replace')), false)
  })

  it('refuses to attach when the node programs are not loaded', async () => {
    rmSync(path.join(root, 'progs'), {recursive: true})
    await assert.rejects(attachEndpoint(new RecordingRunner(), node, ep), (e) => isPnError(e, 'PN_BPF_NOT_LOADED') && /pn bpf load --host/.test(e.hint ?? ''))
  })

  it('detaching deletes only the entries that still point at this pod', async () => {
    const other = encodeEndpointInfo({ifindex: 99, endpointId: 6, flags: 0, podMac: '02:00:00:00:00:09', lxcMac: '02:00:00:00:00:0a'})
    const runner = new RecordingRunner((argv) => {
      if (argv[0] !== 'bpftool' || !argv.includes('dump')) return undefined
      const map = path.basename(argv[argv.length - 1])
      if (map === 'pn_endpoints') {
        return {stdout: JSON.stringify([
          {key: hex(encodeEndpointKey('10.0.1.5')), value: hex(other)}, // IP already reused by another pod
        ])}
      }
      if (map === 'pn_lxc') return {stdout: JSON.stringify([{key: hex(encodeLxcKey(12)), value: hex(encodeLxcInfo({ip4: '10.0.1.5', endpointId: 5, lxcMac: ep.hostMac, podMac: ep.podMac, flags: 0}))}])}
      return {stdout: '[]'}
    })
    const r = await detachEndpoint(runner, node, ep)
    assert.equal(r.changed, true)
    assert.deepEqual(runner.records[0].argv, ['tc', 'filter', 'del', 'dev', 'lxc0123456789ab', 'ingress', 'pref', '1', 'handle', '1', 'bpf'])
    const batch = runner.records.find((x) => x.argv[2] === 'batch')!.input!.trim().split('\n')
    assert.deepEqual(batch, [`map delete pinned ${root}/maps/pn_lxc key hex 0c 00 00 00`])
  })

  it('compile errors carry file:line and the full diagnostics', async () => {
    const cache = mkdtempSync(path.join(os.tmpdir(), 'pn-bpf-cc-'))
    try {
      const runner = new RecordingRunner((argv) =>
        argv[0] === 'clang' ? {exitCode: 1, stderr: '/src/bpf/from_container.c:42:7: error: use of undeclared identifier \'x\'\n1 error generated.\n'} : undefined,
      )
      await assert.rejects(compileObjects(runner, {cacheDir: cache}), (e) =>
        isPnError(e, 'PN_BPF_COMPILE_FAILED') && /from_container\.c:42:7: use of undeclared identifier/.test(e.message) &&
        Array.isArray((e.details as {errors: unknown[]}).errors))
    } finally {
      rmSync(cache, {recursive: true, force: true})
    }
  })
})
