/**
 * One cluster CIDR cut into node-sized blocks, with the semantics of Kubernetes' nodeipam
 * cidrset (and Cilium's fork): blocks are handed out from a next-candidate cursor probing
 * forward with wrap-around, and Release never moves the cursor back, so a released block is
 * reused only after the cursor wraps (round-robin: a node's old CIDR is not immediately given
 * to a new node whose routes may still be in flight elsewhere).
 */
import {formatCidr, subnetAt, subnetIndex, type Cidr} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {Bitmap} from './bitmap.js'

/** Cilium's clusterSubnetMaxDiff: an IPv6 cluster CIDR may be split into at most 2^16 blocks. */
export const MAX_SPLIT_BITS_V6 = 16
/** pn's cap for IPv4 (an uncompressed bitmap of 2^24 bits is 2 MiB). */
export const MAX_SPLIT_BITS_V4 = 24

/** Largest node mask that still leaves room for a router and a pod. */
export function maxNodeMask(family: 4 | 6): number {
  return family === 4 ? 30 : 126
}

/** Check a node mask against a cluster CIDR; throws PN_INVALID_MASK_SIZE. */
export function checkMaskSize(cluster: Cidr, maskSize: number): void {
  const c = formatCidr(cluster)
  const flag = cluster.family === 4 ? '--mask-size' : '--mask-size-v6'
  if (!Number.isInteger(maskSize) || maskSize <= cluster.prefix) {
    throw new PnError('PN_INVALID_MASK_SIZE', `split cluster cidr ${c}: mask size /${maskSize} is not longer than the cluster prefix /${cluster.prefix}`, {
      hint: `pass ${flag} greater than ${cluster.prefix}`,
      details: {cidr: c, maskSize},
    })
  }
  if (maskSize > maxNodeMask(cluster.family)) {
    throw new PnError('PN_INVALID_MASK_SIZE', `split cluster cidr ${c}: mask size /${maskSize} leaves no room for pods (IPv${cluster.family} max /${maxNodeMask(cluster.family)})`, {
      hint: `pass ${flag} of at most ${maxNodeMask(cluster.family)}`,
      details: {cidr: c, maskSize},
    })
  }
  const maxBits = cluster.family === 4 ? MAX_SPLIT_BITS_V4 : MAX_SPLIT_BITS_V6
  if (maskSize - cluster.prefix > maxBits) {
    throw new PnError('PN_INVALID_MASK_SIZE', `split cluster cidr ${c}: /${maskSize} would make 2^${maskSize - cluster.prefix} blocks (IPv${cluster.family} max 2^${maxBits})`, {
      hint: `use a mask size of at most ${cluster.prefix + maxBits} or a longer cluster prefix`,
      details: {cidr: c, maskSize},
    })
  }
}

export class CidrSet {
  readonly cluster: Cidr
  readonly maskSize: number
  readonly maxCidrs: number
  private readonly bits: Bitmap
  nextCandidate: number

  constructor(cluster: Cidr, maskSize: number, nextCandidate = 0) {
    checkMaskSize(cluster, maskSize)
    this.cluster = cluster
    this.maskSize = maskSize
    this.maxCidrs = 2 ** (maskSize - cluster.prefix)
    this.bits = new Bitmap(this.maxCidrs)
    this.nextCandidate = Number.isInteger(nextCandidate) && nextCandidate >= 0 ? nextCandidate % this.maxCidrs : 0
  }

  get used(): number {
    return this.bits.count
  }

  get free(): number {
    return this.bits.free
  }

  isFull(): boolean {
    return this.bits.isFull()
  }

  blockAt(index: number): Cidr {
    return subnetAt(this.cluster, this.maskSize, index)
  }

  /** Index of a block of this set, or -1. */
  indexOf(block: Cidr): number {
    return subnetIndex(this.cluster, block, this.maskSize)
  }

  /** Next free block from the cursor (round-robin); undefined when full. */
  allocateNext(): Cidr | undefined {
    const i = this.bits.findFreeFrom(this.nextCandidate)
    if (i < 0) return undefined
    this.bits.set(i)
    this.nextCandidate = (i + 1) % this.maxCidrs
    return this.blockAt(i)
  }

  /**
   * The indices of the next `count` free blocks from the cursor, in the order allocateNext would
   * hand them out, without taking them; `wrap: false` stops at the last block instead of going
   * round to the first.
   */
  peekFree(count: number, opts: {wrap?: boolean} = {}): number[] {
    const wrap = opts.wrap ?? true
    const start = this.nextCandidate
    const out: number[] = []
    let pos = start
    let wrapped = false
    while (out.length < count) {
      const i = this.bits.findFreeFrom(pos)
      if (i < 0) break
      if (i < pos) {
        // Went round past the last block: once at most, and only when asked.
        if (!wrap || wrapped) break
        wrapped = true
      }
      if (wrapped && i >= start) break
      out.push(i)
      pos = i + 1
      if (pos >= this.maxCidrs) {
        if (!wrap || wrapped) break
        pos = 0
        wrapped = true
      }
    }
    return out
  }

  /** Mark a block as allocated (restoring state); false when it already was. */
  occupy(block: Cidr): boolean {
    const i = this.indexOf(block)
    if (i < 0) throw new RangeError(`${formatCidr(block)} is not a /${this.maskSize} block of ${formatCidr(this.cluster)}`)
    return this.bits.set(i)
  }

  /** Free a block; the cursor stays where it is. False when it was not allocated. */
  release(block: Cidr): boolean {
    const i = this.indexOf(block)
    return i >= 0 && this.bits.clear(i)
  }

  isAllocated(block: Cidr): boolean {
    const i = this.indexOf(block)
    return i >= 0 && this.bits.has(i)
  }
}
