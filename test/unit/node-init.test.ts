import assert from 'node:assert/strict'
import {nodeSysctls, podCidrRoutes} from '../../src/node/init.js'

describe('node init pieces', () => {
  it('sets Cilium\'s per-device sysctls, ip_forward first', () => {
    const s = nodeSysctls(['10.0.1.0/24'])
    assert.equal(Object.keys(s)[0], 'net.ipv4.ip_forward')
    assert.equal(s['net.ipv4.conf.all.rp_filter'], '0')
    for (const dev of ['pn_host', 'pn_net']) {
      assert.equal(s[`net.ipv4.conf.${dev}.forwarding`], '1')
      assert.equal(s[`net.ipv4.conf.${dev}.rp_filter`], '0')
      assert.equal(s[`net.ipv4.conf.${dev}.accept_local`], '1')
      assert.equal(s[`net.ipv4.conf.${dev}.send_redirects`], '0')
    }
    assert.equal(s['net.ipv6.conf.pn_host.forwarding'], undefined)
    assert.equal(nodeSysctls(['10.0.1.0/24', 'fd00::/64'])['net.ipv6.conf.pn_host.forwarding'], '1')
    assert.equal(nodeSysctls(['10.0.1.0/24', 'fd00::/64'])['net.ipv6.conf.all.forwarding'], '1')
    assert.equal(s['net.ipv6.conf.all.forwarding'], undefined)
  })

  it('routes the pod CIDR via the router IP (v4) and without via for v6', () => {
    assert.deepEqual(podCidrRoutes(['10.0.1.0/24', 'fd00:1::/64'], ['10.0.1.1', 'fd00:1::1']), [
      '10.0.1.0/24 via 10.0.1.1 dev pn_host src 10.0.1.1',
      'fd00:1::/64 dev pn_host src fd00:1::1',
    ])
  })
})
