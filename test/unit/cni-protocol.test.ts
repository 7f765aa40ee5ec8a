import assert from 'node:assert/strict'
import {RecordingRunner} from '../../src/exec/runner.js'
import {isAttachmentOwner, parseCniArgs, requireEnv, validateContainerId, validateIfname} from '../../src/cni/env.js'
import {toCniError} from '../../src/cni/errors.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import {probeNetns} from '../../src/datapath/netns.js'
import {runProtocol, type Handlers} from '../../src/cni/protocol.js'
import type {CniRequest, NodeRequest} from '../../src/cni/request.js'
import {buildResult, parsePrevResult} from '../../src/cni/result.js'
import {compareVersions, SUPPORTED_VERSIONS, type CniResult} from '../../src/cni/spec.js'
import {UndoStack} from '../../src/flow/undo.js'
import {PnError} from '../../src/errors.js'

const attachment = {
  hostIfname: 'lxc0123456789ab',
  hostMac: '02:00:00:00:00:01',
  podIfname: 'eth0',
  podMac: '02:00:00:00:00:02',
  netns: '/proc/self/ns/net',
  mtu: 1500,
  ips: ['10.9.0.23'],
  routerIps: ['10.9.0.1'],
}

/** Fake flows that record what they were called with. */
function fakeHandlers() {
  const calls: {cmd: string; req: CniRequest | NodeRequest}[] = []
  const handlers: Handlers = {
    async add(req) {
      calls.push({cmd: 'ADD', req})
      return buildResult(req.conf.cniVersion, attachment)
    },
    async del(req) {
      calls.push({cmd: 'DEL', req})
    },
    async check(req) {
      calls.push({cmd: 'CHECK', req})
    },
    async status(req) {
      calls.push({cmd: 'STATUS', req})
    },
    async gc(req) {
      calls.push({cmd: 'GC', req})
    },
  }
  return {calls, handlers}
}

const conf = (v: string, extra: Record<string, unknown> = {}) => JSON.stringify({cniVersion: v, name: 'pn', type: 'pn', ...extra})

async function invoke(env: Record<string, string>, stdin: string, handlers = fakeHandlers().handlers) {
  const logs: string[] = []
  const out = await runProtocol({env, stdin, runner: new RecordingRunner(), handlers, log: (m) => logs.push(m)})
  return {...out, json: out.stdout ? JSON.parse(out.stdout) : undefined, logs}
}

const addEnv = {CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin'}

describe('cni spec versions', () => {
  it('compares dotted versions numerically', () => {
    assert.equal(compareVersions('0.10.0', '0.9.0'), 1)
    assert.equal(compareVersions('1.0.0', '1.0.0'), 0)
    assert.equal(compareVersions('0.3.1', '0.4.0'), -1)
  })
})

describe('cni env validation', () => {
  it('names every missing variable', () => {
    assert.throws(() => requireEnv('ADD', {}), (e: PnError) => e.cniCode === 4 && e.message.includes('[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME]'))
    assert.throws(() => requireEnv('DEL', {containerId: 'x'}), (e: PnError) => e.message.includes('[CNI_IFNAME]') && !e.message.includes('CNI_NETNS'))
    requireEnv('GC', {})
  })
  it('validates container ids like libcni', () => {
    validateContainerId('abc-1.2_3')
    for (const bad of ['', '-bad', 'a/b', 'a b', '.x']) assert.throws(() => validateContainerId(bad), (e: PnError) => e.cniCode === 4, bad)
  })
  it('validates interface names like the kernel', () => {
    validateIfname('eth0')
    validateIfname('a'.repeat(15))
    for (const bad of ['', 'a'.repeat(16), '.', '..', 'a/b', 'a:b', 'a b', 'a\tb']) {
      assert.throws(() => validateIfname(bad), (e: PnError) => e.code === 'PN_INVALID_IFNAME' && e.cniCode === 4, bad)
    }
  })
  it('parses CNI_ARGS with K8S keys in any order and rejects unknown keys unless IgnoreUnknown', () => {
    const a = parseCniArgs('K8S_POD_UID=u1;K8S_POD_NAMESPACE=ns;IgnoreUnknown=1;FOO=bar;K8S_POD_NAME=web;IP=10.0.0.5')
    assert.equal(a.podName, 'web')
    assert.equal(a.podNamespace, 'ns')
    assert.equal(a.podUid, 'u1')
    assert.deepEqual(a.ips, ['10.0.0.5'])
    assert.equal(parseCniArgs('IgnoreUnknown=true;X=1').ignoreUnknown, true)
    assert.throws(() => parseCniArgs('FOO=bar'), (e: PnError) => e.cniCode === 4 && e.message.includes('FOO=bar'))
    assert.throws(() => parseCniArgs('IgnoreUnknown=0;FOO=bar'), (e: PnError) => e.cniCode === 4)
    assert.throws(() => parseCniArgs('noequals'), (e: PnError) => e.cniCode === 4)
    assert.throws(() => parseCniArgs('A=b=c'), (e: PnError) => e.cniCode === 4)
    assert.deepEqual(parseCniArgs('').raw, {})
  })
  it('recognises attachment owners', () => {
    assert.equal(isAttachmentOwner('abc:eth0'), true)
    assert.equal(isAttachmentOwner('router'), false)
    assert.equal(isAttachmentOwner(':eth0'), false)
    assert.equal(isAttachmentOwner('abc:'), false)
  })
})

describe('cni netconf', () => {
  it('decodes JSON (6), checks version (1), name (7)', () => {
    assert.throws(() => parseNetConf('{oops'), (e: PnError) => e.cniCode === 6)
    assert.throws(() => parseNetConf('[]'), (e: PnError) => e.cniCode === 6)
    assert.throws(() => parseNetConf(JSON.stringify({name: 'pn'})), (e: PnError) => e.cniCode === 1 && e.message.includes('0.1.0'))
    assert.throws(() => parseNetConf(conf('9.9.9')), (e: PnError) => e.cniCode === 1 && e.message.includes('9.9.9'))
    assert.throws(() => parseNetConf(JSON.stringify({cniVersion: '1.0.0', type: 'pn'})), (e: PnError) => e.cniCode === 7 && e.message.includes('missing network name'))
    assert.throws(() => parseNetConf(conf('1.0.0', {name: 'bad/name'})), (e: PnError) => e.cniCode === 7)
    assert.throws(() => parseNetConf(conf('1.0.0', {stateDir: 'relative'})), (e: PnError) => e.cniCode === 7)
  })
  it('refuses a delegated ipam plugin with code 2 naming key and value', () => {
    assert.throws(() => parseNetConf(conf('1.0.0', {ipam: {type: 'host-local'}})), (e: PnError) => e.cniCode === 2 && e.message.includes('ipam.type') && e.message.includes('host-local'))
    parseNetConf(conf('1.0.0', {ipam: {type: 'pn'}}))
  })
  it('tolerates capabilities, runtimeConfig, args and unknown fields', () => {
    const c = parseNetConf(conf('1.0.0', {
      capabilities: {portMappings: true},
      runtimeConfig: {portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}, {HostPort: 53, ContainerPort: 53, Protocol: 'UDP'}]},
      args: {cni: {ips: ['10.9.0.7/24']}},
      custom: {keep: 'me'},
      stateDir: '/tmp/x',
      logFile: '/tmp/x/log',
    }))
    assert.deepEqual(c.portMappings, [
      {hostPort: 8080, containerPort: 80, protocol: 'tcp'},
      {hostPort: 53, containerPort: 53, protocol: 'udp'},
    ])
    assert.deepEqual(c.argsIps, ['10.9.0.7'])
    assert.equal(c.stateDir, '/tmp/x')
    assert.deepEqual(c.raw.custom, {keep: 'me'})
  })
  it('reads GC attachments under either key', () => {
    const a = parseNetConf(conf('1.1.0', {'cni.dev/valid-attachments': [{containerID: 'a', ifname: 'eth0'}]}))
    assert.deepEqual(a.validAttachments, [{containerId: 'a', ifname: 'eth0'}])
    const b = parseNetConf(conf('1.1.0', {'cni.dev/attachments': [{containerID: 'b', ifname: 'net1'}]}))
    assert.deepEqual(b.validAttachments, [{containerId: 'b', ifname: 'net1'}])
    assert.throws(() => parseNetConf(conf('1.1.0', {'cni.dev/attachments': [{x: 1}]})), (e: PnError) => e.cniCode === 7)
  })
})

describe('cni result shaping', () => {
  for (const v of SUPPORTED_VERSIONS) {
    it(`[${v}] shapes the ADD result like cilium-cni`, () => {
      const r = buildResult(v, attachment)
      assert.equal(r.cniVersion, v)
      assert.deepEqual(r.interfaces?.map((i) => i.name), ['lxc0123456789ab', 'eth0'])
      assert.equal(r.interfaces?.[0].sandbox, undefined)
      assert.equal(r.interfaces?.[1].sandbox, '/proc/self/ns/net')
      const ip = r.ips![0]
      assert.equal(ip.interface, 1)
      assert.equal(ip.address, '10.9.0.23/32')
      assert.equal(ip.gateway, '10.9.0.1')
      assert.equal(ip.version, compareVersions(v, '1.0.0') < 0 ? '4' : undefined)
      assert.equal('version' in ip, compareVersions(v, '1.0.0') < 0)
      assert.deepEqual(r.routes, [{dst: '10.9.0.1/32'}, {dst: '0.0.0.0/0', gw: '10.9.0.1'}])
      assert.equal('mtu' in r.interfaces![1], v === '1.1.0')
      assert.deepEqual(r.dns, {})
    })
  }
  it('shapes dual stack with /128 and ::/0', () => {
    const r = buildResult('0.4.0', {...attachment, ips: ['10.9.0.23', 'fd00::17'], routerIps: ['10.9.0.1', 'fd00::1']})
    assert.deepEqual(r.ips?.map((i) => [i.version, i.address, i.gateway]), [['4', '10.9.0.23/32', '10.9.0.1'], ['6', 'fd00::17/128', 'fd00::1']])
    assert.deepEqual(r.routes?.slice(2), [{dst: 'fd00::1/128'}, {dst: '::/0', gw: 'fd00::1'}])
  })
  it('parses prevResults of every version', () => {
    for (const v of SUPPORTED_VERSIONS) {
      const p = parsePrevResult(buildResult(v, attachment) as unknown as Record<string, unknown>)
      assert.equal(p.ips[0].ip, '10.9.0.23')
      assert.equal(p.ips[0].family, 4)
      assert.equal(p.interfaces[1].sandbox, '/proc/self/ns/net')
    }
    assert.throws(() => parsePrevResult({ip4: {ip: '10.0.0.1/24'}}), (e: PnError) => e.cniCode === 7)
  })
})

describe('cni undo stack', () => {
  it('unwinds newest first and collects failures without stopping', async () => {
    const order: string[] = []
    const u = new UndoStack()
    u.push('ipam', async () => order.push('ipam'))
    u.push('veth', async () => {
      order.push('veth')
      throw new Error('gone wrong')
    })
    u.push('endpoint', async () => order.push('endpoint'))
    const failures = await u.unwind()
    assert.deepEqual(order, ['endpoint', 'veth', 'ipam'])
    assert.equal(failures.length, 1)
    assert.equal(failures[0].step, 'veth')
    assert.deepEqual(await u.unwind(), [], 'an unwound stack is empty')
    assert.deepEqual(order, ['endpoint', 'veth', 'ipam'])
  })
})

describe('cni error mapping', () => {
  it('uses the ERROR_CODES cni column and puts code + hint in details', () => {
    const body = toCniError(new PnError('PN_LOCK_TIMEOUT', 'lock x: held', {hint: 'retry'}), '1.0.0')
    assert.deepEqual(body, {cniVersion: '1.0.0', code: 11, msg: 'lock x: held', details: 'PN_LOCK_TIMEOUT; hint: retry'})
    assert.equal(toCniError(new Error('boom')).code, 999)
  })
})

describe('cni netns probe', () => {
  it('accepts /proc/self/ns/net, refuses regular files and reports missing paths', async () => {
    assert.equal((await probeNetns('/proc/self/ns/net')).state, 'ok')
    assert.equal((await probeNetns('/etc/hostname')).state, 'invalid')
    assert.equal((await probeNetns('/run/netns/pn-does-not-exist')).state, 'missing')
  })
})

describe('cni protocol dispatch', () => {
  it('VERSION ignores garbage stdin and dummy env', async () => {
    const r = await invoke({CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy'}, 'garbage{')
    assert.equal(r.exitCode, 0)
    assert.deepEqual(r.json, {cniVersion: '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS]})
    const r2 = await invoke({CNI_COMMAND: 'VERSION'}, conf('0.4.0'))
    assert.equal(r2.json.cniVersion, '0.4.0')
  })
  it('missing CNI_COMMAND is code 4, unknown command is code 4 after config decode', async () => {
    assert.equal((await invoke({}, conf('1.0.0'))).json.code, 4)
    const bogus = await invoke({...addEnv, CNI_COMMAND: 'BOGUS'}, conf('1.0.0'))
    assert.equal(bogus.json.code, 4)
    assert.match(bogus.json.msg, /unknown CNI_COMMAND: BOGUS/)
    assert.equal((await invoke({...addEnv, CNI_COMMAND: 'BOGUS'}, '')).json.code, 6)
  })
  for (const v of SUPPORTED_VERSIONS) {
    it(`[${v}] ADD prints the result in the request's version and passes K8S args through`, async () => {
      const f = fakeHandlers()
      const r = await invoke({...addEnv, CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;IgnoreUnknown=1'}, conf(v), f.handlers)
      assert.equal(r.exitCode, 0, r.stdout)
      const result = r.json as CniResult
      assert.equal(result.cniVersion, v)
      const req = f.calls[0].req as CniRequest
      assert.equal(req.containerId, 'c1')
      assert.equal(req.args.podName, 'web')
    })
    it(`[${v}] errors carry the request version and a non-zero exit`, async () => {
      const r = await invoke({...addEnv, CNI_CONTAINERID: '-bad/id'}, conf(v))
      assert.equal(r.exitCode, 1)
      assert.equal(r.json.code, 4)
      assert.equal(r.json.cniVersion, v)
    })
  }
  it('CHECK below 0.4.0 and GC/STATUS below 1.1.0 are code 1', async () => {
    for (const v of ['0.3.0', '0.3.1']) assert.equal((await invoke({...addEnv, CNI_COMMAND: 'CHECK'}, conf(v))).json.code, 1)
    for (const cmd of ['GC', 'STATUS']) {
      for (const v of ['0.3.1', '0.4.0', '1.0.0']) assert.equal((await invoke({CNI_COMMAND: cmd}, conf(v))).json.code, 1, `${cmd} ${v}`)
      const ok = await invoke({CNI_COMMAND: cmd, CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: ''}, conf('1.1.0'))
      assert.equal(ok.exitCode, 0)
      assert.equal(ok.stdout, '')
    }
  })
  it('input errors map to their spec codes', async () => {
    const cases: [Record<string, string>, string, number][] = [
      [{...addEnv, CNI_NETNS: ''}, conf('1.0.0'), 4],
      [{...addEnv, CNI_IFNAME: 'x'.repeat(16)}, conf('1.0.0'), 4],
      [{...addEnv, CNI_ARGS: 'FOO=bar'}, conf('1.0.0'), 4],
      [{...addEnv, CNI_NETNS: '/etc/hostname'}, conf('1.0.0'), 4],
      [addEnv, '{not json', 6],
      [addEnv, conf('9.9.9'), 1],
      [addEnv, JSON.stringify({cniVersion: '1.0.0', type: 'pn'}), 7],
      [addEnv, conf('1.0.0', {ipam: {type: 'host-local'}}), 2],
      [addEnv, conf('1.0.0', {prevResult: {cniVersion: '1.0.0', interfaces: [{name: 'eth0'}]}}), 2],
    ]
    for (const [env, stdin, code] of cases) {
      const r = await invoke(env, stdin)
      assert.equal(r.exitCode, 1)
      assert.equal(r.json.code, code, `${JSON.stringify(env)} ${stdin} → ${r.stdout}`)
      assert.ok(r.json.msg.length > 0)
    }
  })
  it('DEL needs no CNI_NETNS and prints nothing; prevResult on DEL/CHECK is accepted', async () => {
    const f = fakeHandlers()
    const prev = JSON.parse(JSON.stringify(buildResult('1.0.0', attachment)))
    const del = await invoke({...addEnv, CNI_COMMAND: 'DEL', CNI_NETNS: ''}, conf('1.0.0', {prevResult: prev}), f.handlers)
    assert.equal(del.exitCode, 0)
    assert.equal(del.stdout, '')
    const check = await invoke({...addEnv, CNI_COMMAND: 'CHECK'}, conf('1.0.0', {prevResult: prev}), f.handlers)
    assert.equal(check.exitCode, 0)
    assert.deepEqual(f.calls.map((c) => c.cmd), ['DEL', 'CHECK'])
  })
  it('maps a lock timeout from a flow to code 11 and uses stateDir from the netconf', async () => {
    const f = fakeHandlers()
    f.handlers.add = async (req) => {
      assert.equal(req.stateDir, '/tmp/pn-state-x')
      throw new PnError('PN_LOCK_TIMEOUT', 'lock ipam.json: busy')
    }
    const r = await invoke(addEnv, conf('1.0.0', {stateDir: '/tmp/pn-state-x'}), f.handlers)
    assert.equal(r.json.code, 11)
    assert.ok(r.logs.some((l) => l.includes('PN_LOCK_TIMEOUT')))
  })
})
