import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {acquireFlock, type Locker} from '../../src/exec/flock.js'
import {allocateIp, confirmIp, listIps, releaseIp, verifyIpamState, type HostIpamTarget} from '../../src/ipam/host.js'
import {SyncGroup} from '../../src/state/files.js'

describe('host IPAM: changes that wait for the lock together are written together', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'pn-ipam-batch-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  /** A target whose lock holds are counted; `syncs`: the flow's group (batching needs one). */
  function target(holds: {n: number}, syncs?: SyncGroup): HostIpamTarget {
    const locker: Locker = {acquire: async (locks) => (holds.n++, acquireFlock(locks[0].path, locks[0].timeoutMs))}
    return {stateDir: dir, podCidrs: ['10.60.0.0/24'], lock: {locker}, ...(syncs ? {syncs} : {})}
  }

  it('20 concurrent allocations of CNI flows: one lock hold for all, distinct addresses, each in its flow group; a failing one leaves the others', async () => {
    const holds = {n: 0}
    const groups = Array.from({length: 21}, () => new SyncGroup())
    // The first change of a node writes ipam/ whole; the next 20 arrive together.
    await allocateIp(target(holds, groups[0]), {owner: 'c0:eth0'})
    holds.n = 0
    const taken = (await listIps(target({n: 0}))).find((a) => a.owner === 'c0:eth0')!.ip
    const results = await Promise.allSettled(groups.slice(1).map((g, i) =>
      allocateIp(target(holds, g), {owner: `c${i + 1}:eth0`, expirationMs: 60_000, ...(i === 7 ? {ip: [taken]} : {})})))
    assert.equal(holds.n, 1, 'one lock hold for the 20 changes')
    assert.equal(results[7].status, 'rejected', 'the one asking for a taken address fails')
    assert.equal((results[7] as PromiseRejectedResult).reason.code, 'PN_IPAM_IP_TAKEN')
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<{allocations: {ip: string}[]}>).value.allocations[0].ip)
    assert.equal(ok.length, 19)
    assert.equal(new Set([...ok, taken]).size, 20, 'no address handed out twice')
    assert.ok(groups.slice(1).every((g, i) => i === 7 || g.size > 0), 'each flow owes the owners/ fsync to its group')
    await Promise.all(groups.map((g) => g.flush()))
    const held = await listIps(target({n: 0}))
    assert.deepEqual(held.filter((a) => a.state === 'pending').map((a) => a.owner).sort(), Array.from({length: 20}, (_, i) => `c${i + 1}:eth0`).filter((o) => o !== 'c8:eth0').sort())
    assert.deepEqual((await verifyIpamState(dir)).problems, [])
  })

  it('an ADD confirming and a DEL releasing at once, in one hold: each sees the state the other left', async () => {
    const holds = {n: 0}
    const g = new SyncGroup()
    await allocateIp(target(holds, g), {owner: 'a:eth0', expirationMs: 60_000})
    await allocateIp(target(holds, g), {owner: 'b:eth0'})
    holds.n = 0
    const [c, r] = await Promise.all([confirmIp(target(holds, g), {owner: 'a:eth0'}), releaseIp(target(holds, g), {owner: 'b:eth0'})])
    assert.equal(holds.n, 1)
    assert.equal(c.allocations[0].state, 'confirmed')
    assert.equal(r.released.length, 1)
    await g.flush()
    assert.deepEqual((await listIps(target({n: 0}))).map((a) => `${a.owner} ${a.state}`).sort(), ['a:eth0 confirmed', 'router reserved'])
    assert.deepEqual((await verifyIpamState(dir)).problems, [])
  })

  it('without a flow group (the CLI, the crash driver) every change takes the lock itself', async () => {
    const holds = {n: 0}
    await allocateIp(target(holds), {owner: 'x0:eth0'})
    holds.n = 0
    await Promise.all(Array.from({length: 5}, (_, i) => allocateIp(target(holds), {owner: `x${i + 1}:eth0`})))
    assert.equal(holds.n, 5)
  })
})
