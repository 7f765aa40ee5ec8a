/**
 * The ipam/ directory (src/ipam/host-store.ts): crash safety at every step of a write, the full
 * check after a reboot, repair of bits or links without an owner, modes, and that a call reads
 * only the records it names (its cost does not grow with the number of allocations).
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {
  allocateIp,
  confirmIp,
  gcIps,
  ipamDir,
  listIps,
  ownerIps,
  releaseIp,
  reserveRouterIps,
  showIpam,
  verifyIpamState,
  type HostIpamTarget,
} from '../../src/ipam/host.js'

const CIDRS = ['10.0.1.0/24', 'fd00:1::/112']

describe('ipam state directory', function () {
  // Real files and flock processes: seconds under load, and a test that times out would keep
  // writing into the next test's directory.
  this.timeout(60_000)
  let dir: string
  let clock: number
  let cidrs: string[]
  const t = (extra: Partial<HostIpamTarget> = {}): HostIpamTarget => ({stateDir: dir, podCidrs: cidrs, now: () => clock, ...extra})
  const consistent = async () => {
    const v = await verifyIpamState(dir)
    assert.deepEqual(v.problems, [], 'bitmaps, links and owner records agree')
    assert.equal(new Set(v.allocations.map((a) => a.ip)).size, v.allocations.length, 'no address held twice')
    return v.allocations
  }
  const used = async () => (await showIpam(t())).map((r) => r.used)

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'pn-ipam-store-'))
    clock = Date.parse('2030-01-01T00:00:00Z')
    cidrs = CIDRS
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('keeps the semantics: owner idempotence, --ip, confirm, release by IP and owner, expiry', async () => {
    const a = await allocateIp(t(), {owner: 'c1:eth0', strategy: 'contiguous'})
    assert.deepEqual(a.allocations.map((x) => x.ip), ['10.0.1.2', 'fd00:1::2'])
    assert.equal((await allocateIp(t(), {owner: 'c1:eth0'})).changed, false)
    await assert.rejects(allocateIp(t(), {owner: 'c2:eth0', ip: ['10.0.1.2']}), (e) => isPnError(e, 'PN_IPAM_IP_TAKEN'))
    const p = await allocateIp(t(), {owner: 'c2:eth0', ip: ['10.0.1.9'], expirationMs: 1000})
    assert.deepEqual(p.allocations.map((x) => x.state), ['pending', 'pending'])
    assert.equal((await confirmIp(t(), {owner: 'c2:eth0'})).changed, true)
    assert.deepEqual((await ownerIps(t(), 'c2:eth0')).map((x) => x.state), ['confirmed', 'confirmed'])
    await allocateIp(t(), {owner: 'c3:eth0', expirationMs: 1000})
    clock += 1001
    const n = await allocateIp(t(), {owner: 'c4:eth0'})
    assert.match(n.warnings?.join() ?? '', /returned 2 expired pending/)
    assert.equal((await releaseIp(t(), {ip: 'fd00:1::2'})).released.map((x) => x.owner).join(), 'c1:eth0')
    assert.equal((await releaseIp(t(), {owner: 'c2:eth0'})).released.length, 2)
    assert.equal((await releaseIp(t(), {owner: 'nobody'})).changed, false)
    await assert.rejects(releaseIp(t(), {owner: 'router'}), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'))
    // IPv4: router, c1 (release by IP freed only its IPv6), c4; IPv6: router, c4.
    assert.deepEqual(await used(), [3, 2])
    const list = await consistent()
    assert.deepEqual(list.map((x) => x.owner).sort(), ['c1:eth0', 'c4:eth0', 'c4:eth0', 'router', 'router'])
  })

  it('a call reads only the records it names: an unrelated unreadable record does not matter', async () => {
    for (let i = 0; i < 50; i++) await allocateIp(t(), {owner: `p${i}:eth0`})
    writeFileSync(path.join(ipamDir(dir), 'owners', 'p7:eth0.json'), '{torn')
    const r = await allocateIp(t(), {owner: 'another:eth0'})
    assert.equal(r.changed, true)
    assert.equal((await releaseIp(t(), {owner: 'p8:eth0'})).released.length, 2)
    assert.equal((await showIpam(t()))[0].used, 51) // router + 49 + another
    await assert.rejects(listIps(t()), (e) => isPnError(e, 'PN_STATE_CORRUPT')) // list reads them all
  })

  it('router moves (pn node init) persist in meta.json', async () => {
    await allocateIp(t(), {owner: 'a'})
    const r = await reserveRouterIps(t({routerIps: ['10.0.1.200']}))
    assert.equal(r.changed, true)
    assert.deepEqual((await ownerIps(t(), 'router')).map((x) => x.ip), ['10.0.1.200', 'fd00:1::1'])
    assert.equal((await allocateIp(t({routerIps: ['10.0.1.200']}), {owner: 'b'})).changed, true)
    await assert.rejects(allocateIp(t({routerIps: ['10.0.1.1']}), {owner: 'c'}), (e) => isPnError(e, 'PN_NODE_CONFLICT'))
    await consistent()
  })

  const steps = ['journal', 'records', 'links', 'pending', 'bitmap']
  for (const step of steps) {
    it(`a change interrupted after '${step}' is finished or undone by the next call (alloc, confirm, release)`, async () => {
      cidrs = ['10.0.1.0/28', 'fd00:1::/124'] // 14 addresses each: the fill at the end stays short
      await allocateIp(t(), {owner: 'keep:eth0'})
      const crash = (extra: Partial<HostIpamTarget> = {}) => t({...extra, afterStep: (s) => {
        if (s === step) throw new Error(`killed after ${s}`)
      }})
      // alloc
      await assert.rejects(allocateIp(crash(), {owner: 'x:eth0', expirationMs: 60_000}), /killed/)
      await allocateIp(t(), {owner: 'y:eth0'}) // the next call recovers first
      let all = await consistent()
      const x = all.filter((a) => a.owner === 'x:eth0')
      assert.ok(x.length === 0 || x.length === 2, `x holds both or none: ${JSON.stringify(x)}`)
      assert.deepEqual(await used(), [3 + x.length / 2, 3 + x.length / 2])
      // confirm
      if (x.length === 2) {
        await assert.rejects(confirmIp(crash(), {owner: 'x:eth0'}), /killed/)
        await allocateIp(t(), {owner: 'z:eth0'})
        all = await consistent()
        assert.equal((await showIpam(t()))[0].pending, all.filter((a) => a.owner === 'x:eth0' && a.state === 'pending').length / 2 === 1 ? 1 : 0)
      }
      // release
      await assert.rejects(releaseIp(crash(), {owner: 'keep:eth0'}), /killed/)
      const v = await listIps(t()) // a read-only call finishes it too
      all = await consistent()
      const keep = v.filter((a) => a.owner === 'keep:eth0')
      assert.ok(keep.length === 0 || keep.length === 2)
      assert.deepEqual(await used(), Array(2).fill(all.length / 2))
      // And nothing is handed out twice afterwards: fill the IPv4 range.
      for (let i = 0; ; i++) {
        try {
          await allocateIp(t(), {owner: `fill${i}`, strategy: 'contiguous'})
        } catch (err) {
          assert.ok(isPnError(err, 'PN_IPAM_EXHAUSTED'), String(err))
          break
        }
      }
      const full = await consistent()
      assert.equal(full.filter((a) => a.ip.includes('.')).length, 14)
    })
  }

  it('pn ipam gc frees a bit without an owner record and restores one a record holds', async () => {
    const a = await allocateIp(t(), {owner: 'a:eth0', strategy: 'contiguous'}) // 10.0.1.2
    await allocateIp(t(), {owner: 'b:eth0', strategy: 'contiguous'}) // 10.0.1.3
    const bitmap = path.join(ipamDir(dir), 'bitmap.0')
    const buf = readFileSync(bitmap)
    // Offsets: 0 = 10.0.1.1 (router), 1 = .2 (a), 2 = .3 (b). Drop a's bit, set a stray one at offset 9 (.10).
    buf.writeUInt32LE(((buf.readUInt32LE(0) & ~0b10) | (1 << 9)) >>> 0, 0)
    writeFileSync(bitmap, buf)
    assert.equal((await verifyIpamState(dir)).problems.length, 2)
    const g = await gcIps(t())
    assert.match(g.warnings?.join() ?? '', /10\.0\.1\.10: freed.*|10\.0\.1\.2: set its bit/)
    await consistent()
    assert.deepEqual((await ownerIps(t(), 'a:eth0')).map((x) => x.ip), a.allocations.map((x) => x.ip))
    const c = await allocateIp(t(), {owner: 'c:eth0', strategy: 'contiguous'})
    assert.equal(c.allocations[0].ip, '10.0.1.4', 'a still holds .2 (its bit is back)')
  })

  it('after a reboot the first call checks the whole index against the records (writes the index lost)', async () => {
    cidrs = ['10.0.1.0/28']
    const a = await allocateIp(t({bootId: 'boot-1'}), {owner: 'a:eth0', strategy: 'contiguous'}) // 10.0.1.2
    await allocateIp(t({bootId: 'boot-1'}), {owner: 'b:eth0', strategy: 'contiguous'}) // 10.0.1.3
    assert.equal(readFileSync(path.join(ipamDir(dir), 'boot'), 'utf8'), 'boot-1\n')
    // What a power loss may do to the index (never fsync'd on the way): a's bit and link lost,
    // a bit and a link nobody holds, temp files of a writer that died mid-change.
    const bitmap = path.join(ipamDir(dir), 'bitmap.0')
    const buf = readFileSync(bitmap)
    buf.writeUInt32LE(((buf.readUInt32LE(0) & ~0b10) | (1 << 9)) >>> 0, 0)
    writeFileSync(bitmap, buf)
    unlinkSync(path.join(ipamDir(dir), 'ips', '10.0.1.2'))
    symlinkSync('gone:eth0', path.join(ipamDir(dir), 'ips', '10.0.1.10'))
    writeFileSync(path.join(ipamDir(dir), 'owners', '.c:eth0.json.0a1b2c.tmp'), '{"owner":')
    // Same boot: nothing to check, the call reads only what it names.
    assert.equal((await showIpam(t({bootId: 'boot-1'})))[0].used, 3) // router, b, the stray bit
    // New boot: the read-only call takes the lock and rebuilds the index first.
    assert.equal((await showIpam(t({bootId: 'boot-2'})))[0].used, 3) // router, a, b
    assert.equal(readFileSync(path.join(ipamDir(dir), 'boot'), 'utf8'), 'boot-2\n')
    assert.deepEqual(readdirSync(path.join(ipamDir(dir), 'owners')).filter((f) => f.startsWith('.')), [], 'temp files removed')
    await consistent()
    const c = await allocateIp(t({bootId: 'boot-2'}), {owner: 'c:eth0', strategy: 'contiguous'})
    assert.equal(c.allocations[0].ip, '10.0.1.4', 'a still holds .2')
    assert.deepEqual((await ownerIps(t({bootId: 'boot-2'}), 'a:eth0')).map((x) => x.ip), a.allocations.map((x) => x.ip))
  })

  it('a mutation after a reboot reports what the check fixed', async () => {
    cidrs = ['10.0.1.0/28']
    await allocateIp(t({bootId: 'boot-1'}), {owner: 'a:eth0', strategy: 'contiguous'})
    unlinkSync(path.join(ipamDir(dir), 'ips', '10.0.1.2'))
    const r = await allocateIp(t({bootId: 'boot-2'}), {owner: 'b:eth0', strategy: 'contiguous'})
    assert.match(r.warnings?.join() ?? '', /repaired the ipam state.*ips\/10\.0\.1\.2: points at a:eth0/)
    assert.equal(r.allocations[0].ip, '10.0.1.3')
    assert.equal((await allocateIp(t({bootId: 'boot-2'}), {owner: 'c:eth0'})).warnings, undefined, 'checked once a boot')
  })

  it('state files are 0600 and directories 0700', async () => {
    const state = path.join(dir, 'state')
    const tt = (extra: Partial<HostIpamTarget> = {}) => t({stateDir: state, ...extra})
    // Contiguous: a random pick could be the address reserved as the router below.
    await allocateIp(tt(), {owner: 'a:eth0', expirationMs: 60_000, strategy: 'contiguous'})
    await allocateIp(tt(), {owner: 'b:eth0', strategy: 'contiguous'})
    await reserveRouterIps(tt({routerIps: ['10.0.1.200']})) // meta.json rewritten
    await releaseIp(tt(), {owner: 'b:eth0'})
    const mode = (p: string) => (statSync(p).mode & 0o777).toString(8)
    const d = ipamDir(state)
    assert.equal(mode(state), '700')
    for (const sub of ['', 'owners', 'ips', 'pending']) assert.equal(mode(path.join(d, sub)), '700', `ipam/${sub}`)
    for (const f of ['meta.json', 'bitmap.0', 'bitmap.1', 'boot', 'owners/a:eth0.json', 'owners/router.json']) assert.equal(mode(path.join(d, f)), '600', f)
  })
})
