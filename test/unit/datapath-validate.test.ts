import assert from 'node:assert/strict'
import {validateContainerId, validateIfname} from '../../src/datapath/validate.js'
import {probeNetns, requireNetns} from '../../src/datapath/netns.js'
import {canonicalIp as normalizeIp, cidrContains, firstUsable, normalizeCidr} from '../../src/cidr/cidr.js'

describe('datapath validators', () => {
  it('accepts CNI container ids and rejects others', () => {
    for (const ok of ['a', 'abc-123', 'A.b_c-d', '0123456789abcdef']) validateContainerId(ok)
    for (const bad of ['', '-a', '.a', 'a/b', 'a b', 'a:b', 'ä']) {
      assert.throws(() => validateContainerId(bad), {code: 'PN_INVALID_CONTAINER_ID'}, bad)
    }
  })

  it('rejects interface names the kernel would refuse', () => {
    for (const ok of ['eth0', 'net1', 'a', 'x'.repeat(15)]) validateIfname(ok)
    for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'tab\t', 'x'.repeat(16), 'é'.repeat(8)]) {
      assert.throws(() => validateIfname(bad), {code: 'PN_INVALID_IFNAME'}, JSON.stringify(bad))
    }
  })

  it('checks the netns path by filesystem magic (one check for veth, endpoint and CNI)', async () => {
    await requireNetns('/proc/self/ns/net')
    await assert.rejects(requireNetns('/no/such/netns'), {code: 'PN_NETNS_NOT_FOUND'})
    await assert.rejects(requireNetns('/etc'), (e: Error & {code: string}) => e.code === 'PN_NETNS_INVALID' && /fs magic/.test(e.message))
    // A /proc/PID/ns/net of a process that is gone is a vanished namespace, not an invalid one.
    assert.equal((await probeNetns('/proc/999999999/ns/net')).state, 'missing')
  })
})

describe('address helpers (src/cidr)', () => {
  it('normalises CIDRs and finds the first usable address', () => {
    assert.equal(normalizeCidr('10.0.1.77/24').text, '10.0.1.0/24')
    assert.equal(firstUsable('10.0.1.0/24'), '10.0.1.1')
    assert.equal(firstUsable('fd00:0:1::/64'), 'fd00:0:1::1')
    assert.equal(normalizeCidr('FD00:0000:0001:0000::5/64').text, 'fd00:0:1::/64')
    assert.equal(normalizeIp('fd00:0:0:0:0:0:0:1'), 'fd00::1')
    assert.ok(cidrContains('10.0.1.0/24', '10.0.1.200'))
    assert.ok(!cidrContains('10.0.1.0/24', '10.0.2.1'))
    assert.throws(() => normalizeCidr('10.0.1.0/33'), {code: 'PN_INVALID_CIDR'})
  })
})
