import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {hostHooks} from '../../src/datapath/bpf/load.js'
import {setupTunnelDevice, deleteTunnelDevice} from '../../src/datapath/tunnel.js'
import {DryRunRunner} from '../../src/exec/dry-run.js'
import {UndoStack} from '../../src/flow/undo.js'
import {initNode} from '../../src/node/init.js'
import {FakeKernel} from '../helpers/fake-kernel.js'

const fakeKernel = () => new FakeKernel({uplink: {ifname: 'eth0', mtu: 1500, address: '02:00:00:00:00:ee'}})

describe('tunnel mode (fake kernel, no root)', () => {
  let dir: string
  beforeEach(() => void (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-tunnel-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('pn_vxlan: one batch making a collect-metadata VXLAN device on 8472 without learning, up; rp_filter off on it; undone by deleting it', async () => {
    const runner = new DryRunRunner(fakeKernel())
    const undo = new UndoStack()
    const actions = await setupTunnelDevice(runner, 1450, undo)
    assert.deepEqual(actions, ['created pn_vxlan (vxlan external dstport 8472)'])
    const batch = runner.records.find((x) => x.argv[1] === '-batch')!.input!.trim().split('\n')
    assert.match(batch[0], /^link add name pn_vxlan address \S+ mtu 1450 type vxlan external dstport 8472 nolearning$/)
    assert.deepEqual(batch.slice(1), ['link set dev pn_vxlan up'])
    const sysctls = runner.records.filter((x) => x.argv[0] === 'tee').map((x) => `${x.argv[1]}=${x.input!.trim()}`)
    assert.deepEqual(sysctls, ['/proc/sys/net/ipv4/conf/pn_vxlan/rp_filter=0', '/proc/sys/net/ipv4/conf/pn_vxlan/forwarding=1'])
    const before = runner.records.length
    assert.deepEqual(await undo.unwind(), [])
    const undone = runner.records.slice(before).map((x) => [...x.argv, x.input ?? ''].join(' '))
    assert.ok(undone.some((x) => /link del.* pn_vxlan/.test(x)), undone.join('; '))
  })

  it('deleteTunnelDevice leaves a node without pn_vxlan alone (false, nothing run)', async () => {
    const runner = new DryRunRunner(fakeKernel())
    assert.equal(await deleteTunnelDevice(runner), false)
    assert.equal(runner.records.some((x) => x.argv.includes('del')), false)
  })

  it('from-overlay goes on pn_vxlan ingress in tunnel mode only', () => {
    const node = {uplink: 'eth0'}
    assert.equal(hostHooks(node).some((h) => h.program === 'from_overlay'), false)
    assert.deepEqual(hostHooks({...node, tunnel: 'vxlan'}).filter((h) => h.device === 'pn_vxlan'), [{device: 'pn_vxlan', direction: 'ingress', program: 'from_overlay'}])
  })

  it('refuses --tunnel vxlan with --routing host-routes before changing anything', async () => {
    const runner = new DryRunRunner(fakeKernel())
    await assert.rejects(
      initNode(runner, dir, {name: 'n1', uplink: 'eth0', podCidrs: ['10.0.1.0/24'], routing: 'host-routes', tunnel: 'vxlan'}),
      (e: Error & {code?: string; hint?: string}) => e.code === 'PN_INVALID_ARGUMENT' && /--tunnel vxlan needs --routing bpf/.test(e.message),
    )
    assert.equal(runner.records.some((x) => x.argv[1] === '-batch'), false, 'no link or address was made')
    assert.equal(existsSync(path.join(dir, 'node.json')), false)
  })
})
