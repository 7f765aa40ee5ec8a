import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {randomBytesWeak, randomHex, sha256Hex} from '../../src/state/digest.js'

describe('digest: SHA-256 of names and random names', () => {
  it('matches node:crypto for every length 0..200 (block and padding boundaries) and for UTF-8 text', () => {
    for (let n = 0; n <= 200; n++) {
      const text = Array.from({length: n}, (_, i) => String.fromCharCode(33 + ((i * 7 + n) % 90))).join('')
      assert.equal(sha256Hex(text), createHash('sha256').update(text).digest('hex'), `length ${n}`)
    }
    for (const text of ['pod-1:eth0', 'ünïcødé:ëth0', '日本語のコンテナ', '🙂'.repeat(40)]) {
      assert.equal(sha256Hex(text), createHash('sha256').update(text, 'utf8').digest('hex'), text)
    }
  })

  it('keeps the FIPS 180-4 test vectors', () => {
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    assert.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    assert.equal(sha256Hex('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1')
  })

  it('gives random bytes and hex of the asked length, not all equal', () => {
    assert.equal(randomBytesWeak(6).length, 6)
    assert.match(randomHex(4), /^[0-9a-f]{8}$/)
    const seen = new Set(Array.from({length: 50}, () => randomHex(6)))
    assert.ok(seen.size > 45, `50 draws gave ${seen.size} distinct names`)
  })
})
