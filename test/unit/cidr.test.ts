import assert from 'node:assert/strict'
import IPCIDR from 'ip-cidr'
import {
  canonicalIp,
  cidrsOverlap,
  containsIp,
  formatCidr,
  formatIp,
  lastAddress,
  normalizeCidr,
  parseCidr,
  parseIp,
  rangeOf,
  subnetAt,
  subnetIndex,
} from '../../src/cidr/cidr.js'
import {isPnError} from '../../src/errors.js'

const cidr = (s: string) => parseCidr(s).cidr

describe('cidr: address parsing and formatting', () => {
  it('parses and formats IPv4', () => {
    assert.deepEqual(parseIp('10.20.30.40'), {family: 4, value: 0x0a141e28n})
    assert.equal(formatIp(0x0a141e28n, 4), '10.20.30.40')
    assert.equal(formatIp(0xffffffffn, 4), '255.255.255.255')
  })

  it('parses IPv6 forms and formats them as RFC 5952', () => {
    assert.equal(canonicalIp('fd00:0000:0000:0000:0000:0000:0000:0001'), 'fd00::1')
    assert.equal(canonicalIp('FD00::0:1'), 'fd00::1')
    assert.equal(canonicalIp('::'), '::')
    assert.equal(canonicalIp('::1'), '::1')
    assert.equal(canonicalIp('1::'), '1::')
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1') // first longest run
    assert.equal(canonicalIp('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1') // a single zero group is not compressed
    assert.equal(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1')
    assert.equal(parseIp('fd00::1').value, (0xfd00n << 112n) | 1n)
  })

  for (const bad of ['10.0.0.256', '1.2.3', '1.2.3.4.5', '01.2.3.4', 'garbage', '', '1::2::3', 'fe80::1%eth0', '12345::', '1:2:3:4:5:6:7:8:9', ':1:2']) {
    it(`rejects ${JSON.stringify(bad)} with PN_INVALID_IP`, () => {
      assert.throws(() => parseIp(bad), (e) => isPnError(e, 'PN_INVALID_IP'))
    })
  }
})

describe('cidr: prefixes', () => {
  it('normalises host bits with a warning (the seed example 10.20.30.40/24)', () => {
    const n = normalizeCidr('10.20.30.40/24', 'cluster cidr')
    assert.equal(n.text, '10.20.30.0/24')
    assert.match(n.warning ?? '', /10\.20\.30\.40\/24 has host bits set; using its network 10\.20\.30\.0\/24/)
    assert.equal(normalizeCidr('10.20.30.0/24').warning, undefined)
    assert.equal(normalizeCidr('fd00:1::5/64').text, 'fd00:1::/64')
  })

  for (const bad of ['10.0.0.0/33', '10.0.0.256/24', '1.2.3/24', 'fe80::/129', 'garbage', '10.0.0.0', '10.0.0.0/', '10.0.0.0/024', '10.0.0.0/-1', '/24']) {
    it(`rejects ${JSON.stringify(bad)} with PN_INVALID_CIDR`, () => {
      assert.throws(() => parseCidr(bad), (e) => isPnError(e, 'PN_INVALID_CIDR'))
    })
  }

  it('computes last address, containment and overlap (v4 and v6)', () => {
    assert.equal(formatIp(lastAddress(cidr('10.0.1.0/24')), 4), '10.0.1.255')
    assert.equal(formatIp(lastAddress(cidr('fd00::/120')), 6), 'fd00::ff')
    assert.equal(containsIp(cidr('10.0.1.0/24'), parseIp('10.0.1.200')), true)
    assert.equal(containsIp(cidr('10.0.1.0/24'), parseIp('10.0.2.0')), false)
    assert.equal(containsIp(cidr('10.0.0.0/8'), parseIp('fd00::1')), false)
    assert.equal(cidrsOverlap(cidr('10.0.0.0/8'), cidr('10.20.0.0/16')), true)
    assert.equal(cidrsOverlap(cidr('10.0.0.0/16'), cidr('10.1.0.0/16')), false)
    assert.equal(cidrsOverlap(cidr('fd00::/64'), cidr('fd00::8000:0:0/65')), true)
    assert.equal(cidrsOverlap(cidr('0.0.0.0/0'), cidr('::/0')), false)
  })

  it('indexes node blocks like cidrset (v4 and v6)', () => {
    assert.equal(formatCidr(subnetAt(cidr('10.20.30.0/24'), 26, 3)), '10.20.30.192/26')
    assert.equal(formatCidr(subnetAt(cidr('fd00:10::/104'), 120, 65535)), 'fd00:10::ff:ff00/120')
    assert.equal(formatCidr(subnetAt(cidr('fd00::/48'), 64, 1)), 'fd00:0:0:1::/64')
    assert.equal(subnetIndex(cidr('10.20.30.0/24'), cidr('10.20.30.128/26'), 26), 2)
    assert.equal(subnetIndex(cidr('10.20.30.0/24'), cidr('10.20.31.0/26'), 26), -1)
    assert.throws(() => subnetAt(cidr('10.0.0.0/24'), 26, 4), RangeError)
  })
})

describe('cidr: range math agrees with ip-cidr', () => {
  // A fixed-seed generator: the same prefixes every run.
  let seed = 0x2545f491
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
  const randomValue = (bits: number) => {
    let v = 0n
    for (let i = 0; i < bits; i += 32) v = (v << 32n) | BigInt(next())
    return v & ((1n << BigInt(bits)) - 1n)
  }

  for (const family of [4, 6] as const) {
    it(`network, last address and size of 300 IPv${family} prefixes, every length`, () => {
      const bits = family === 4 ? 32 : 128
      for (let i = 0; i < 300; i++) {
        const prefix = i % (bits + 1)
        const address = randomValue(bits)
        const text = `${formatIp(address, family)}/${prefix}`
        const ref = new IPCIDR(text)
        const mine = rangeOf(family, address, prefix)
        assert.equal(mine.start, ref.start<bigint>({type: 'bigInteger'}), `${text} network`)
        assert.equal(mine.end, ref.end<bigint>({type: 'bigInteger'}), `${text} last address`)
        assert.equal(mine.size, BigInt(ref.size as bigint), `${text} size`)
        assert.equal(parseCidr(text).cidr.network, mine.start)
      }
    })
  }
})
