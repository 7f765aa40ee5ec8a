import assert from 'node:assert/strict'
import {checkNetnsPath, validateContainerId, validateIfname} from '../../src/datapath/validate.js'
import {cidrContains, firstUsable, normalizeIp, parseCidr} from '../../src/datapath/addr.js'

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

  it('checks the netns path by filesystem magic', async () => {
    await checkNetnsPath('/proc/self/ns/net')
    await assert.rejects(checkNetnsPath('/no/such/netns'), {code: 'PN_NETNS_NOT_FOUND'})
    await assert.rejects(checkNetnsPath('/etc'), (e: Error & {code: string}) => e.code === 'PN_NETNS_INVALID' && /fs magic/.test(e.message))
  })
})

describe('datapath address helpers', () => {
  it('normalises CIDRs and finds the first usable address', () => {
    assert.equal(parseCidr('10.0.1.77/24').cidr, '10.0.1.0/24')
    assert.equal(firstUsable('10.0.1.0/24'), '10.0.1.1')
    assert.equal(firstUsable('fd00:0:1::/64'), 'fd00:0:1::1')
    assert.equal(parseCidr('FD00:0000:0001:0000::5/64').cidr, 'fd00:0:1::/64')
    assert.equal(normalizeIp('fd00:0:0:0:0:0:0:1'), 'fd00::1')
    assert.ok(cidrContains('10.0.1.0/24', '10.0.1.200'))
    assert.ok(!cidrContains('10.0.1.0/24', '10.0.2.1'))
    assert.throws(() => parseCidr('10.0.1.0/33'), {code: 'PN_INVALID_CIDR'})
  })
})
