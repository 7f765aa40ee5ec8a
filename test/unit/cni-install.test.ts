import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {installCni, PN_CNI_CLIENT, PN_CNI_ENTRY} from '../../src/cni/install.js'
import {manualNodeRequest, manualRequest, prevResultFromEndpoint} from '../../src/cni/manual.js'
import {parsePrevResult} from '../../src/cni/result.js'
import {saveEndpoint} from '../../src/endpoint/store.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {PnError} from '../../src/errors.js'

describe('cni install', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pn-cni-install-'))
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('writes an executable wrapper named like the conflist type and a conflist, idempotently', async () => {
    const opts = {binDir: path.join(dir, 'bin'), confDir: path.join(dir, 'net.d'), name: 'lab', cniVersion: '1.0.0', stateDir: '/tmp/node1', logFile: '/tmp/node1/cni.log'}
    const r = await installCni(opts)
    assert.equal(r.changed, true)
    assert.equal(r.plugin, path.join(dir, 'bin', 'pn'))
    assert.equal(statSync(r.plugin).mode & 0o777, 0o755)
    // The plugin is the native client; its standalone fallback sits beside it.
    assert.equal(r.client, true)
    assert.deepEqual(readFileSync(r.plugin), readFileSync(PN_CNI_CLIENT))
    assert.equal(r.fallback, `${r.plugin}.node`)
    const wrapper = readFileSync(r.fallback, 'utf8')
    assert.match(wrapper, new RegExp(`exec '${process.execPath}' '${PN_CNI_ENTRY}' "\\$@"`))
    // What native/pn-cni.c reads to exec node on the entry itself and to start the helpers.
    assert.ok(wrapper.includes(`\n# pn-cni node: ${process.execPath}\n`), wrapper)
    assert.ok(wrapper.includes(`\n# pn-cni entry: ${PN_CNI_ENTRY}\n`), wrapper)
    assert.ok(wrapper.includes(`\n# pn-cni helpers: ${path.dirname(PN_CNI_CLIENT)}\n`), wrapper)
    assert.ok(PN_CNI_ENTRY.endsWith('bin/pn-cni.cjs'))
    const conf = JSON.parse(readFileSync(path.join(dir, 'net.d', '10-lab.conflist'), 'utf8'))
    assert.deepEqual(conf, {cniVersion: '1.0.0', name: 'lab', plugins: [{type: 'pn', stateDir: '/tmp/node1', logFile: '/tmp/node1/cni.log', capabilities: {'io.kubernetes.cri.pod-annotations': true}}]})
    assert.equal((await installCni(opts)).changed, false)
    const other = await installCni({...opts, type: 'pn-cni'})
    assert.equal(path.basename(other.plugin), 'pn-cni')
    assert.equal(JSON.parse(readFileSync(other.conflist, 'utf8')).plugins[0].type, 'pn-cni')
  })

  it('without a built client, installs the standalone wrapper as the plugin and says so', async () => {
    const r = await installCni({binDir: dir, confDir: dir, client: path.join(dir, 'missing')})
    assert.equal(r.client, false)
    assert.equal(r.fallback, r.plugin)
    assert.match(readFileSync(r.plugin, 'utf8'), /^#!\/bin\/sh/)
    assert.match(r.warnings[0], /not built/)
  })

  it('the installed client answers VERSION like a runtime probe expects (no agent: through its fallback)', async () => {
    const r = await installCni({binDir: dir, confDir: dir})
    const out = spawnSync(r.plugin, [], {encoding: 'utf8', input: 'garbage', env: {PATH: process.env.PATH, CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy'}})
    assert.equal(out.status, 0, out.stderr)
    assert.deepEqual(JSON.parse(out.stdout).supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'])
  })

  it('refuses unsupported versions, bad names and relative paths', async () => {
    // The default is what containerd 1.6/1.7's libcni accepts (it rejects 1.1.0 results).
    await installCni({binDir: path.join(dir, 'b2'), confDir: path.join(dir, 'c2'), name: 'dflt'})
    assert.equal(JSON.parse(readFileSync(path.join(dir, 'c2', '10-dflt.conflist'), 'utf8')).cniVersion, '1.0.0')
    await assert.rejects(installCni({binDir: dir, confDir: dir, cniVersion: '0.2.0'}), (e: PnError) => e.code === 'PN_INVALID_ARGUMENT')
    await assert.rejects(installCni({binDir: dir, confDir: dir, name: 'bad name'}), (e: PnError) => e.cniCode === 7)
    await assert.rejects(installCni({binDir: dir, confDir: dir, stateDir: 'rel'}), (e: PnError) => e.code === 'PN_INVALID_ARGUMENT')
  })
})

describe('cni manual mode requests', () => {
  let state: string
  beforeEach(() => {
    state = mkdtempSync(path.join(tmpdir(), 'pn-cni-manual-'))
  })
  afterEach(() => rmSync(state, {recursive: true, force: true}))
  const runner = new RecordingRunner()

  it('validates like the protocol: ids, ifnames, CNI_ARGS, netns, version gates', async () => {
    const base = {stateDir: state, runner}
    const req = await manualRequest({...base, command: 'ADD', containerId: 'c1', ifname: 'eth0', netns: '/proc/self/ns/net', args: 'K8S_POD_NAME=web;K8S_POD_NAMESPACE=ns', cniVersion: '0.4.0'})
    assert.equal(req.conf.cniVersion, '0.4.0')
    assert.equal(req.conf.stateDir, state)
    assert.equal(req.args.podName, 'web')
    await assert.rejects(manualRequest({...base, command: 'ADD', containerId: '-x', ifname: 'eth0', netns: '/proc/self/ns/net'}), (e: PnError) => e.cniCode === 4)
    await assert.rejects(manualRequest({...base, command: 'ADD', containerId: 'c', ifname: 'eth0', netns: '/etc/hostname'}), (e: PnError) => e.cniCode === 4)
    await assert.rejects(manualRequest({...base, command: 'ADD', containerId: 'c', ifname: 'eth0', netns: '/proc/self/ns/net', args: 'X=1'}), (e: PnError) => e.cniCode === 4)
    await assert.rejects(manualRequest({...base, command: 'CHECK', containerId: 'c', ifname: 'eth0', netns: '/proc/self/ns/net', cniVersion: '0.3.1'}), (e: PnError) => e.cniCode === 1)
    assert.throws(() => manualNodeRequest({...base, command: 'GC', cniVersion: '1.0.0'}), (e: PnError) => e.cniCode === 1)
    const del = await manualRequest({...base, command: 'DEL', containerId: 'c', ifname: 'eth0'})
    assert.equal(del.netns, undefined)
  })

  it('rebuilds the ADD result from the endpoint record for a hand-run CHECK', async () => {
    await assert.rejects(prevResultFromEndpoint(state, 'c1', 'eth0', '1.0.0'), (e: PnError) => e.code === 'PN_ENDPOINT_NOT_FOUND')
    await saveEndpoint(state, {
      id: 'c1:eth0', containerId: 'c1', ifname: 'eth0', netns: '/run/netns/p1', ips: ['10.0.1.5'], routerIps: ['10.0.1.1'],
      hostIfname: 'lxc0123456789ab', hostMac: '02:00:00:00:00:01', hostIfindex: 7, podIfname: 'eth0', podMac: '02:00:00:00:00:02',
      podIfindex: 2, mtu: 1500, endpointId: 1, createdAt: new Date().toISOString(),
    })
    const prev = parsePrevResult(await prevResultFromEndpoint(state, 'c1', 'eth0', '0.4.0'))
    assert.deepEqual(prev.interfaces[1], {name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/p1'})
    assert.equal(prev.ips[0].address, '10.0.1.5/32')
    assert.deepEqual(prev.routes, [{dst: '10.0.1.1/32'}, {dst: '0.0.0.0/0', gw: '10.0.1.1'}])
  })
})

describe('docs/CNI.md', () => {
  it('lists every PN code with the CNI code ERROR_CODES gives it', async () => {
    const {ERROR_CODES} = await import('../../src/errors.js')
    const {REPO_ROOT} = await import('../helpers/cli.js')
    const doc = readFileSync(path.join(REPO_ROOT, 'docs/CNI.md'), 'utf8')
    for (const [code, m] of Object.entries(ERROR_CODES)) {
      assert.match(doc, new RegExp(`^\\| ${m.cni} \\| \`${code}\` \\|`, 'm'), `${code} (${m.cni}) missing from the table`)
    }
  })
})
