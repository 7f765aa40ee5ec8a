/**
 * The agent's wire format, shared with the C client (native/pn-cni.c): one request per
 * connection, netstrings (`<len>:<bytes>,`, D. J. Bernstein's) after a magic line. Netstrings
 * carry any bytes (a netconf, an env value with newlines) with no escaping, and the C side
 * writes and parses them in a few lines.
 *   request:  "PNCNI/1\n" netns-inode, env-count, env-count × "KEY=VALUE", stdin
 *   response: exit-code, stdout, stderr
 * The client half-closes its side after the request; the agent closes after the response.
 * Limits (native/pn-cni.c checks the same): a netstring holds at most MAX_WIRE_FIELD bytes (its
 * length at most 8 digits), at most MAX_WIRE_ENV environment entries, a request at most
 * MAX_WIRE_REQUEST bytes in all (a reader stops buffering past it).
 */

export const MAGIC = 'PNCNI/1\n'
/** The most one netstring may hold: 16 MiB (8 digits of length). */
export const MAX_WIRE_FIELD = 16 << 20
/** The most environment entries a request may carry. */
export const MAX_WIRE_ENV = 4096
/** The most bytes a whole request may have: a server stops reading (and refuses) past it. */
export const MAX_WIRE_REQUEST = 32 << 20
/** Exit code meaning "not served here, run the standalone path" (e.g. another netns). */
export const FALLBACK_EXIT = 254

export interface WireRequest {
  /** Inode of the client's network namespace ('' when unknown). */
  netnsIno: string
  /** The CNI_* and PN_* variables of the client. */
  env: Record<string, string>
  stdin: string
}

export interface WireResponse {
  exitCode: number
  stdout: string
  stderr: string
}

function netstring(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${b.length}:`), b, Buffer.from(',')])
}

/** Thrown while a buffer does not yet hold a whole message (or holds a malformed one). */
export class WireError extends Error {
  constructor(message: string, readonly incomplete = false) {
    super(message)
  }
}

/** Read netstrings from a buffer, in order. */
class Reader {
  pos = 0
  constructor(private readonly b: Buffer) {}

  next(): Buffer {
    let i = this.pos
    let len = 0
    const start = i
    while (i < this.b.length && this.b[i] >= 0x30 && this.b[i] <= 0x39) {
      len = len * 10 + (this.b[i] - 0x30)
      i++
      if (i - start > 8) throw new WireError('netstring length too long')
    }
    if (i >= this.b.length) throw new WireError('truncated netstring length', true)
    if (i === start || this.b[i] !== 0x3a) throw new WireError(`malformed netstring at byte ${this.pos}`)
    if (len > MAX_WIRE_FIELD) throw new WireError(`netstring of ${len} bytes is over the limit of ${MAX_WIRE_FIELD}`)
    if (i + 1 + len + 1 > this.b.length) throw new WireError('truncated netstring', true)
    if (this.b[i + 1 + len] !== 0x2c) throw new WireError(`netstring at byte ${this.pos} does not end with a comma`)
    const out = this.b.subarray(i + 1, i + 1 + len)
    this.pos = i + 1 + len + 1
    return out
  }
}

export function encodeRequest(r: WireRequest): Buffer {
  const env = Object.entries(r.env).map(([k, v]) => netstring(Buffer.from(`${k}=${v}`)))
  return Buffer.concat([Buffer.from(MAGIC), netstring(Buffer.from(r.netnsIno)), netstring(Buffer.from(String(env.length))), ...env, netstring(Buffer.from(r.stdin))])
}

/** Decode a whole request; WireError (incomplete=true when more bytes may complete it). */
export function decodeRequest(b: Buffer): WireRequest {
  if (b.length > MAX_WIRE_REQUEST) throw new WireError(`request of ${b.length} bytes is over the limit of ${MAX_WIRE_REQUEST}`)
  if (b.length < MAGIC.length) throw new WireError('truncated magic', MAGIC.startsWith(b.toString('latin1')))
  if (b.subarray(0, MAGIC.length).toString('latin1') !== MAGIC) throw new WireError('not a pn agent request (bad magic)')
  const r = new Reader(b.subarray(MAGIC.length))
  const netnsIno = r.next().toString('utf8')
  const count = Number(r.next().toString('utf8'))
  if (!Number.isInteger(count) || count < 0 || count > MAX_WIRE_ENV) throw new WireError('bad environment count')
  const env: Record<string, string> = {}
  for (let i = 0; i < count; i++) {
    const kv = r.next().toString('utf8')
    const eq = kv.indexOf('=')
    if (eq <= 0) throw new WireError(`environment entry without '=': ${kv.slice(0, 40)}`)
    env[kv.slice(0, eq)] = kv.slice(eq + 1)
  }
  const stdin = r.next().toString('utf8')
  if (r.pos !== b.length - MAGIC.length) throw new WireError('trailing bytes after the request')
  return {netnsIno, env, stdin}
}

export function encodeResponse(r: WireResponse): Buffer {
  return Buffer.concat([netstring(Buffer.from(String(r.exitCode))), netstring(Buffer.from(r.stdout)), netstring(Buffer.from(r.stderr))])
}

export function decodeResponse(b: Buffer): WireResponse {
  const r = new Reader(b)
  const exitCode = Number(r.next().toString('utf8'))
  if (!Number.isInteger(exitCode)) throw new WireError('bad exit code')
  return {exitCode, stdout: r.next().toString('utf8'), stderr: r.next().toString('utf8')}
}
