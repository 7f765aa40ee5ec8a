/** Go-style durations (`500ms`, `30s`, `10m`, `1h`, `1m30s`) for `--expiration`. */
import {PnError} from '../errors.js'

const UNIT_MS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000}
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy

/** Parse a duration into milliseconds (> 0); throws PN_INVALID_DURATION. */
export function parseDuration(text: string): number {
  const s = String(text).trim()
  let total = 0
  let pos = 0
  PART.lastIndex = 0
  let m: RegExpExecArray | null
  while (pos < s.length && (m = PART.exec(s)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]]
    pos = PART.lastIndex
  }
  if (s === '' || pos !== s.length || !(total > 0) || !Number.isFinite(total)) {
    throw new PnError('PN_INVALID_DURATION', `parse duration ${JSON.stringify(text)}: expected a positive number with a unit (ms, s, m, h)`, {
      hint: 'write e.g. 500ms, 30s, 10m, 1h or 1m30s',
    })
  }
  return Math.round(total)
}
