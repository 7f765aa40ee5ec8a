/**
 * Every string a runtime (or a user) hands pn is checked before it reaches a command line, an
 * `ip -batch` line, a log line or an error message: NUL, newlines and other control characters,
 * relative netns paths, whitespace where the kernel or iproute2 split words, over-long values.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {parseCniArgs, validateContainerId, validateIfname} from '../../src/cni/env.js'
import {manualRequest} from '../../src/cni/manual.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import {runProtocol, type Handlers} from '../../src/cni/protocol.js'
import {buildResult} from '../../src/cni/result.js'
import {probeNetns, requireNetns} from '../../src/datapath/netns.js'
import {validateNetnsPath} from '../../src/datapath/validate.js'
import {setupVeth} from '../../src/datapath/veth.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {isPnError, PnError, type ErrorCode} from '../../src/errors.js'

const NETNS = '/proc/self/ns/net' // a real netns handle that needs no root

function rejects(fn: () => unknown, code: ErrorCode, what: string): void {
  assert.throws(fn, (e) => {
    assert.ok(isPnError(e, code), `${what}: ${String(e)}`)
    assert.ok(!/[\u0000-\u001f]/.test(e.message), `${what}: the message carries a raw control character: ${JSON.stringify(e.message)}`)
    return true
  }, what)
}

describe('cni input validation: names and paths', () => {
  for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'eth0\n', 'eth0\nlink', 'eth\0', 'eth\x01', 'eth\x7f', 'e\u0085', '\teth0', 'abcdefghijklmnop', 'éééééééé', 'eth\u00a0', 'vlanà']) {
    it(`refuses ifname ${JSON.stringify(bad)} (PN_INVALID_IFNAME, CNI code 4)`, () => {
      rejects(() => validateIfname(bad), 'PN_INVALID_IFNAME', JSON.stringify(bad))
    })
  }

  it('accepts the kernel-legal interface names pn uses', () => {
    for (const good of ['eth0', 'net1', 'abcdefghijklmno', 'é-1', 'a.b_c-d']) validateIfname(good)
  })

  for (const bad of ['c1\n', 'c1\nx', 'c\0', 'c 1', 'c1;x', '../x', '/x', '-x', '', 'c\x7f', 'c\u2028']) {
    it(`refuses container id ${JSON.stringify(bad)} (PN_INVALID_CONTAINER_ID)`, () => {
      rejects(() => validateContainerId(bad), 'PN_INVALID_CONTAINER_ID', JSON.stringify(bad))
    })
  }

  for (const bad of ['', 'netns/x', './x', 'x', '~/x', '/run/netns/a b', '/run/netns/x\nlink del dev eth0', '/run/netns/x\0', '/run/netns/\tx', '/run/netns/x\r', `/${'a'.repeat(4095)}`]) {
    it(`refuses netns path ${JSON.stringify(bad.slice(0, 40))} (PN_NETNS_INVALID, CNI code 4)`, async () => {
      rejects(() => validateNetnsPath(bad), 'PN_NETNS_INVALID', JSON.stringify(bad))
      await assert.rejects(requireNetns(bad), (e: PnError) => e.code === 'PN_NETNS_INVALID' && e.cniCode === 4 && /CNI_NETNS/.test(e.message))
      assert.equal((await probeNetns(bad)).state, 'invalid', 'probe (DEL, teardown) calls it invalid without opening it')
    })
  }

  it('accepts absolute netns paths of every runtime', () => {
    for (const good of ['/run/netns/cni-1b2c3d4e-0000-1111-2222-333344445555', '/var/run/netns/x', '/proc/1234/ns/net', NETNS]) validateNetnsPath(good)
  })

  it('setupVeth refuses a netns path that would split its `ip -batch` line, before any command', async () => {
    const runner = new RecordingRunner()
    await assert.rejects(setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: '/run/netns/x type dummy', mtu: 1500}), (e) => isPnError(e, 'PN_NETNS_INVALID'))
    await assert.rejects(setupVeth(runner, {containerId: 'pod1', ifname: 'eth0', netns: '/run/netns/x\nlink del dev lo', mtu: 1500}), (e) => isPnError(e, 'PN_NETNS_INVALID'))
    assert.deepEqual(runner.records, [])
  })
})

describe('cni input validation: CNI_ARGS and the network config', () => {
  for (const bad of ['K8S_POD_NAME=a\nb', 'K8S_POD_NAME=a\0', 'IgnoreUnknown=1;X\n=1', 'IgnoreUnknown=1;X=\x1b[31m', 'a\nb', `IgnoreUnknown=1;X=${'v'.repeat(70000)}`]) {
    it(`refuses CNI_ARGS ${JSON.stringify(bad.slice(0, 40))} (code 4)`, () => {
      rejects(() => parseCniArgs(bad), 'PN_CNI_INVALID_ENV', JSON.stringify(bad.slice(0, 40)))
    })
  }

  it('still reads printable CNI_ARGS as before', () => {
    const a = parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default;IP=10.0.0.5, fd00::5;X=ü')
    assert.equal(a.podName, 'web-0')
    assert.deepEqual(a.ips, ['10.0.0.5', 'fd00::5'])
  })

  const conf = (extra: Record<string, unknown>) => JSON.stringify({cniVersion: '1.0.0', name: 'pn', type: 'pn', ...extra})
  for (const [what, extra] of [
    ['stateDir with a newline', {stateDir: '/var/lib/pn\n/etc'}],
    ['stateDir with NUL', {stateDir: '/var/lib/pn\0'}],
    ['relative stateDir', {stateDir: 'var/lib/pn'}],
    ['over-long stateDir', {stateDir: `/${'d'.repeat(5000)}`}],
    ['logFile with a control character', {logFile: '/tmp/pn\x1b.log'}],
    ['type with a newline', {type: 'pn\nerror: forged'}],
    ['network name with a newline', {name: 'pn\n'}],
    ['GC attachment with a newline', {'cni.dev/valid-attachments': [{containerID: 'c1\n', ifname: 'eth0'}]}],
    ['GC attachment ifname with NUL', {'cni.dev/valid-attachments': [{containerID: 'c1', ifname: 'eth0\0'}]}],
  ] as const) {
    it(`refuses a network config with ${what} (code 7)`, () => {
      rejects(() => parseNetConf(conf(extra)), 'PN_CNI_INVALID_CONFIG', what)
    })
  }
})

describe('cni input validation: the protocol answers code 4 and calls no flow', () => {
  const env = {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: NETNS, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'}
  const stdin = JSON.stringify({cniVersion: '1.0.0', name: 'pn', type: 'pn'})

  async function invoke(e: Record<string, string>) {
    const calls: string[] = []
    const handlers: Handlers = {
      add: async (req) => {
        calls.push('ADD')
        return buildResult(req.conf.cniVersion, {hostIfname: 'lxc1', hostMac: '02:00:00:00:00:01', podIfname: 'eth0', podMac: '02:00:00:00:00:02', netns: NETNS, mtu: 1500, ips: [], routerIps: []})
      },
      del: async () => void calls.push('DEL'),
      check: async () => void calls.push('CHECK'),
      status: async () => void calls.push('STATUS'),
      gc: async () => void calls.push('GC'),
    }
    const logs: string[] = []
    const out = await runProtocol({env: e, stdin, runner: new RecordingRunner(), handlers, log: (m) => logs.push(m)})
    return {...out, json: JSON.parse(out.stdout) as {code: number; msg: string; details?: string}, calls, logs}
  }

  it('a well-formed ADD still reaches the flow', async () => {
    const r = await invoke(env)
    assert.equal(r.exitCode, 0)
    assert.deepEqual(r.calls, ['ADD'])
  })

  for (const [what, over] of [
    ['relative CNI_NETNS', {CNI_NETNS: 'run/netns/x'}],
    ['CNI_NETNS with a newline', {CNI_NETNS: '/proc/self/ns/net\nlink del dev lo'}],
    ['CNI_NETNS with a space', {CNI_NETNS: '/run/netns/x type dummy'}],
    ['CNI_NETNS with NUL', {CNI_NETNS: '/proc/self/ns/net\0'}],
    ['CNI_IFNAME with a newline', {CNI_IFNAME: 'eth0\nx'}],
    ['CNI_IFNAME with a control character', {CNI_IFNAME: 'eth\x01'}],
    ['CNI_CONTAINERID with a newline', {CNI_CONTAINERID: 'c1\nerror: forged'}],
    ['CNI_PATH with NUL', {CNI_PATH: '/opt/cni/bin\0'}],
    ['CNI_PATH with a newline', {CNI_PATH: '/opt/cni/bin\n/tmp'}],
    ['over-long CNI_PATH', {CNI_PATH: `/${'p'.repeat(70000)}`}],
    ['CNI_ARGS with a newline', {CNI_ARGS: 'K8S_POD_NAME=a\nerror: forged'}],
    ['over-long CNI_ARGS', {CNI_ARGS: `IgnoreUnknown=1;X=${'v'.repeat(70000)}`}],
    ['CNI_COMMAND with a newline', {CNI_COMMAND: 'ADD\nerror: forged'}],
  ] as const) {
    it(`${what}: code 4, no flow, no raw control character in the answer or the log`, async () => {
      const r = await invoke({...env, ...over})
      assert.equal(r.exitCode, 1)
      assert.equal(r.json.code, 4, r.json.msg)
      assert.deepEqual(r.calls, [])
      assert.ok(!/[\u0000-\u001f]/.test(r.json.msg), JSON.stringify(r.json.msg))
      for (const line of r.logs) assert.ok(!/[\u0000-\u001f]/.test(line), JSON.stringify(line))
    })
  }

  it('pn cni add by hand refuses a relative --netns with the same code', async () => {
    const state = mkdtempSync(path.join(tmpdir(), 'pn-cni-valid-'))
    try {
      await assert.rejects(manualRequest({stateDir: state, runner: new RecordingRunner(), command: 'ADD', containerId: 'c1', ifname: 'eth0', netns: 'netns/x'}),
        (e: PnError) => e.code === 'PN_NETNS_INVALID' && e.cniCode === 4)
    } finally {
      rmSync(state, {recursive: true, force: true})
    }
  })
})
