/**
 * Allocation bitmap with Cilium's two scan strategies (pkg/ipam/service/allocator/bitmap.go):
 * random = random start offset, then the first free bit scanning forward with wrap-around;
 * contiguous = the lowest free bit. Words of 32 bits are skipped whole when full, so a scan
 * over a 64k range costs at most 2k word reads, and filling a /16 stays well under a second.
 */

export type Strategy = 'random' | 'contiguous'
export const STRATEGIES: readonly Strategy[] = ['random', 'contiguous']

/** Returns an integer in [0, n). */
export type RandomInt = (n: number) => number

export const mathRandomInt: RandomInt = (n) => Math.floor(Math.random() * n)

export class Bitmap {
  readonly size: number
  private readonly words: Uint32Array
  private used = 0
  /** No free bit below this offset (lets contiguous allocation start where it left off). */
  private lowHint = 0

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`bitmap size ${size}`)
    this.size = size
    this.words = new Uint32Array(Math.ceil(size / 32))
    // Mark the padding bits of the last word as taken so a word scan never returns them.
    const tail = size % 32
    if (tail !== 0) this.words[this.words.length - 1] = ~((1 << tail) - 1) >>> 0
  }

  /**
   * A bitmap over stored words (the on-disk form: `ceil(size/32)` 32-bit words, padding bits of
   * the last word set). The words are copied; the count comes from a popcount.
   */
  static fromWords(size: number, stored: Uint32Array): Bitmap {
    const b = new Bitmap(size)
    if (stored.length !== b.words.length) throw new RangeError(`bitmap of ${size} needs ${b.words.length} words, got ${stored.length}`)
    const pad = b.words.length > 0 ? b.words[b.words.length - 1] : 0
    b.words.set(stored)
    if (b.words.length > 0) b.words[b.words.length - 1] |= pad
    let used = 0
    for (const w of b.words) used += popcount(w)
    b.used = used - (size % 32 === 0 ? 0 : 32 - (size % 32))
    return b
  }

  /** A copy of the words (what `fromWords` takes back). */
  toWords(): Uint32Array {
    return this.words.slice()
  }

  get count(): number {
    return this.used
  }

  get free(): number {
    return this.size - this.used
  }

  isFull(): boolean {
    return this.used >= this.size
  }

  has(i: number): boolean {
    return i >= 0 && i < this.size && (this.words[i >>> 5] & (1 << (i & 31))) !== 0
  }

  /** Set bit i; true when it was free. */
  set(i: number): boolean {
    if (i < 0 || i >= this.size) throw new RangeError(`offset ${i} outside bitmap of ${this.size}`)
    const w = i >>> 5
    const b = 1 << (i & 31)
    if (this.words[w] & b) return false
    this.words[w] |= b
    this.used++
    return true
  }

  /** Clear bit i; true when it was set. */
  clear(i: number): boolean {
    if (i < 0 || i >= this.size) return false
    const w = i >>> 5
    const b = 1 << (i & 31)
    if (!(this.words[w] & b)) return false
    this.words[w] &= ~b
    this.used--
    if (i < this.lowHint) this.lowHint = i
    return true
  }

  /** First free offset in [from, to), or -1. */
  private scan(from: number, to: number): number {
    let w = from >>> 5
    let lowMask = ~0 << (from & 31)
    const lastWord = (to - 1) >>> 5
    for (; w <= lastWord && from < to; w++) {
      const free = ~this.words[w] & lowMask
      if (free !== 0) {
        const idx = (w << 5) + (31 - Math.clz32(free & -free))
        return idx < to ? idx : -1
      }
      lowMask = ~0
    }
    return -1
  }

  /** First free offset at or after `start`, wrapping around; -1 when full. */
  findFreeFrom(start: number): number {
    if (this.isFull()) return -1
    const s = Math.min(Math.max(0, start), this.size - 1)
    const i = this.scan(s, this.size)
    return i >= 0 ? i : this.scan(0, s)
  }

  /** Lowest free offset, or -1 when full. */
  findLowestFree(): number {
    if (this.isFull()) return -1
    const i = this.scan(this.lowHint, this.size)
    if (i >= 0) this.lowHint = i
    return i
  }

  /** Pick and set a free offset with the strategy; -1 when full. */
  allocate(strategy: Strategy, random: RandomInt = mathRandomInt): number {
    if (this.isFull()) return -1
    const i = strategy === 'contiguous' ? this.findLowestFree() : this.findFreeFrom(random(this.size))
    if (i >= 0) this.set(i)
    return i
  }
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555)
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24
}
