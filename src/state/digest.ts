/**
 * SHA-256 of short names (a container id and ifname → lxc<hash>, an owner → its file name) and
 * random suffixes for temporary files and MAC addresses, through node:crypto. A hand-written
 * SHA-256 once spared a standalone pn-cni call loading node:crypto; measured on the bench it saved
 * ≈ 2.5 ms per call (p50 over 90 interleaved rounds), under the 3 ms a start-up trick must save
 * to stay (docs/AGENT.md, "Start-up tricks, judged").
 */
import {createHash, randomBytes} from 'node:crypto'

/** SHA-256 of `text` (UTF-8), as 64 lowercase hex digits. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

/** `n` random bytes: names and MACs, not secrets. */
export function randomBytesWeak(n: number): Buffer {
  return randomBytes(n)
}

/** `n` random bytes as hex, for temporary file names. */
export function randomHex(n: number): string {
  return randomBytesWeak(n).toString('hex')
}
