/**
 * The datapath side of a teardown after pn deleted the host veth itself (forgetPod): map
 * entries by the record's keys in one bpftool batch, and, when a key is already gone, the
 * entries found by dumping the maps instead; the qdisc marker goes either way.
 */
import {strict as assert} from 'node:assert'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {forgetPod, type DatapathEndpoint} from '../../src/datapath/bpf/endpoint.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {sysctlPath} from '../../src/datapath/sysctl.js'
import {IPCACHE_F_LOCAL, encodeIpcacheInfo, encodeIpcacheKey, encodeLxcInfo, encodeLxcKey} from '../../src/datapath/bpf/maps/index.js'

const ep: DatapathEndpoint = {
  containerId: 'c1',
  ifname: 'eth0',
  endpointId: 7,
  ips: ['10.0.1.5'],
  hostIfname: 'lxcabc',
  hostIfindex: 42,
  hostMac: '02:00:00:00:00:01',
  podMac: '02:00:00:00:00:02',
}

describe('forgetPod (teardown after the host veth was deleted)', () => {
  let root: string
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'pn-forget-'))
    mkdirSync(path.join(root, 'maps'))
    for (const m of ['pn_endpoints', 'pn_lxc', 'pn_ipcache']) writeFileSync(path.join(root, 'maps', m), '')
    mkdirSync(path.join(root, 'qdiscs', `${ep.hostIfname}@${ep.hostIfindex}`), {recursive: true})
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))

  it('deletes by key in one bpftool batch, with no tc and no map dump, and drops the qdisc marker', async () => {
    const runner = new RecordingRunner()
    assert.deepEqual(await forgetPod(runner, {bpffsRoot: root}, ep), {changed: true})
    assert.deepEqual(runner.records.map((r) => r.argv.join(' ')), ['bpftool -j batch file -'])
    const lines = runner.records[0].input!.trim().split('\n')
    assert.deepEqual(lines.map((l) => l.split(' ').slice(0, 4).join(' ')), [
      `map delete pinned ${path.join(root, 'maps', 'pn_endpoints')}`,
      `map delete pinned ${path.join(root, 'maps', 'pn_ipcache')}`,
      `map delete pinned ${path.join(root, 'maps', 'pn_lxc')}`,
    ])
    assert.match(lines[2], / key hex 2a 00 00 00$/, 'pn_lxc by the recorded ifindex (42)')
    assert.equal(existsSync(path.join(root, 'qdiscs', `${ep.hostIfname}@${ep.hostIfindex}`)), false)
  })

  it('falls back to finding the entries by dump when a key is already gone, and deletes only what is there', async () => {
    const words = (b: Buffer) => [...b].map((x) => '0x' + x.toString(16).padStart(2, '0'))
    let batches = 0
    const runner = new RecordingRunner((argv) => {
      if (argv[0] !== 'bpftool') return undefined
      // bpftool -j batch answers one entry per line it ran; the failing one carries the error.
      const failed = [{command: ['map', 'delete'], output: {error: 'delete failed: No such file or directory'}}]
      if (argv.includes('batch')) return ++batches === 1 ? {exitCode: 254, stdout: JSON.stringify(failed)} : {}
      // pn_endpoints has lost its entry already; pn_lxc and pn_ipcache still hold theirs.
      if (argv.some((a) => a.endsWith('pn_endpoints'))) return {stdout: '[]'}
      if (argv.some((a) => a.endsWith('pn_lxc'))) {
        const value = encodeLxcInfo({ip4: '10.0.1.5', endpointId: 7, lxcMac: ep.hostMac, podMac: ep.podMac, flags: 0})
        return {stdout: JSON.stringify([{key: words(encodeLxcKey(42)), value: words(value)}])}
      }
      const value = encodeIpcacheInfo({identity: 0, flags: IPCACHE_F_LOCAL})
      return {stdout: JSON.stringify([{key: words(encodeIpcacheKey('10.0.1.5/32')), value: words(value)}])}
    })
    assert.deepEqual(await forgetPod(runner, {bpffsRoot: root}, ep), {changed: true})
    assert.equal(runner.records.filter((r) => r.argv.includes('dump')).length, 3, 'the three maps dumped')
    const retry = runner.records.filter((r) => r.argv.includes('batch'))[1]
    assert.ok(retry, 'a second batch with what the dumps found')
    assert.deepEqual(
      retry.input!.trim().split('\n').map((l) => l.split(' ')[3]),
      [path.join(root, 'maps', 'pn_ipcache'), path.join(root, 'maps', 'pn_lxc')],
      'the /32 and the lxc entry; nothing for the pn_endpoints key that is gone',
    )
  })

  it('maps a sysctl key to its /proc/sys path, a `/` in a device name standing for a `.`', () => {
    assert.equal(sysctlPath('net.ipv4.conf.lxcabc.rp_filter'), '/proc/sys/net/ipv4/conf/lxcabc/rp_filter')
    assert.equal(sysctlPath('net.ipv4.conf.eth0/100.rp_filter'), '/proc/sys/net/ipv4/conf/eth0.100/rp_filter')
  })
})
