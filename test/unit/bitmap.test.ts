import assert from 'node:assert/strict'
import {Bitmap} from '../../src/ipam/bitmap.js'
import {CidrSet} from '../../src/ipam/cidrset.js'
import {formatCidr, parseCidr} from '../../src/cidr/cidr.js'
import {isPnError} from '../../src/errors.js'

describe('bitmap', () => {
  it('sets, clears and counts, ignoring double operations', () => {
    const b = new Bitmap(70)
    assert.equal(b.set(3), true)
    assert.equal(b.set(3), false)
    assert.equal(b.count, 1)
    assert.equal(b.has(3), true)
    assert.equal(b.clear(3), true)
    assert.equal(b.clear(3), false)
    assert.equal(b.count, 0)
    assert.throws(() => b.set(70), RangeError)
  })

  it('contiguous takes the lowest free offset and refills gaps', () => {
    const b = new Bitmap(40)
    for (let i = 0; i < 40; i++) assert.equal(b.allocate('contiguous'), i)
    assert.equal(b.allocate('contiguous'), -1)
    b.clear(33)
    b.clear(5)
    assert.equal(b.allocate('contiguous'), 5)
    assert.equal(b.allocate('contiguous'), 33)
    assert.equal(b.isFull(), true)
  })

  it('random starts at the random offset and scans forward with wrap-around', () => {
    const b = new Bitmap(100)
    assert.equal(b.allocate('random', () => 42), 42)
    assert.equal(b.allocate('random', () => 42), 43)
    for (let i = 95; i < 100; i++) b.set(i)
    assert.equal(b.allocate('random', () => 97), 0) // wrapped
    assert.equal(b.allocate('random', () => 99), 1)
  })

  it('never returns padding bits beyond the size, and fills exactly', () => {
    for (const size of [1, 31, 32, 33, 254, 65534]) {
      const b = new Bitmap(size)
      const seen = new Set<number>()
      for (let i = 0; i < size; i++) {
        const o = b.allocate('random')
        assert.ok(o >= 0 && o < size && !seen.has(o), `size ${size}: offset ${o}`)
        seen.add(o)
      }
      assert.equal(b.allocate('random'), -1)
      assert.equal(b.allocate('contiguous'), -1)
    }
  })

  // How fast is bench/ipam's question, measured against host-local in one run; not a wall-clock assert here.
  it('fills a /16 (65,534 offsets) with distinct offsets with either strategy', () => {
    for (const strategy of ['random', 'contiguous'] as const) {
      const b = new Bitmap(65534)
      const seen = new Set<number>()
      for (let i = 0; i < 65534; i++) seen.add(b.allocate(strategy))
      assert.equal(seen.size, 65534)
      assert.ok(!seen.has(-1))
      assert.equal(b.allocate(strategy), -1)
    }
  })
})

describe('cidrset', () => {
  const c = (s: string) => parseCidr(s).cidr

  it('hands out blocks round-robin from the cursor; release does not rewind it', () => {
    const s = new CidrSet(c('10.20.30.0/24'), 26)
    assert.equal(s.maxCidrs, 4)
    const got = [s.allocateNext(), s.allocateNext()].map((x) => formatCidr(x!))
    assert.deepEqual(got, ['10.20.30.0/26', '10.20.30.64/26'])
    assert.equal(s.release(c('10.20.30.0/26')), true)
    assert.equal(formatCidr(s.allocateNext()!), '10.20.30.128/26') // not the released .0
    assert.equal(formatCidr(s.allocateNext()!), '10.20.30.192/26')
    assert.equal(formatCidr(s.allocateNext()!), '10.20.30.0/26') // reused only after wrapping
    assert.equal(s.allocateNext(), undefined)
    assert.equal(s.isFull(), true)
  })

  it('peekFree lists the next free blocks as allocateNext would hand them out, without taking them; wrap: false stops at the last block', () => {
    const s = new CidrSet(c('10.0.0.0/27'), 30) // 8 blocks
    for (const b of ['10.0.0.4/30', '10.0.0.12/30', '10.0.0.28/30']) s.occupy(c(b)) // 1, 3, 7
    s.nextCandidate = 4
    assert.deepEqual(s.peekFree(3), [4, 5, 6])
    assert.deepEqual(s.peekFree(10), [4, 5, 6, 0, 2], 'round to the start, and no block twice')
    assert.deepEqual(s.peekFree(10, {wrap: false}), [4, 5, 6])
    assert.deepEqual([s.used, s.nextCandidate], [3, 4], 'nothing taken, the cursor stays')
    const order = [s.allocateNext(), s.allocateNext(), s.allocateNext(), s.allocateNext(), s.allocateNext()].map((b) => s.indexOf(b!))
    assert.deepEqual(order, [4, 5, 6, 0, 2])
    assert.deepEqual(s.peekFree(4), [], 'full')
    s.release(c('10.0.0.0/30'))
    s.nextCandidate = 7
    assert.deepEqual([s.peekFree(4), s.peekFree(4, {wrap: false})], [[0], []])
  })

  it('occupies and releases idempotently', () => {
    const s = new CidrSet(c('fd00:10::/104'), 120)
    assert.equal(s.maxCidrs, 65536)
    assert.equal(s.occupy(c('fd00:10::100/120')), true)
    assert.equal(s.occupy(c('fd00:10::100/120')), false)
    assert.equal(s.used, 1)
    assert.equal(s.release(c('fd00:10::100/120')), true)
    assert.equal(s.release(c('fd00:10::100/120')), false)
    assert.equal(s.used, 0)
    assert.throws(() => s.occupy(c('fd00:11::/120')), RangeError)
  })

  it('refuses mask sizes not longer than the cluster prefix, too long, or too many IPv6 blocks', () => {
    const bad = (cl: string, m: number) => assert.throws(() => new CidrSet(c(cl), m), (e) => isPnError(e, 'PN_INVALID_MASK_SIZE'))
    bad('10.0.0.0/16', 16)
    bad('10.0.0.0/16', 8)
    bad('10.0.0.0/16', 31)
    bad('fd00::/64', 120) // 2^56 blocks
    bad('fd00::/103', 120) // 2^17 blocks
    assert.equal(new CidrSet(c('fd00::/104'), 120).maxCidrs, 65536)
  })
})
