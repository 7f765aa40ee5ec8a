/**
 * Parsers for `birdc` output (pure, unit-tested against captured bird 2.0 output). birdc has no
 * machine-readable mode, so these read its fixed-column text: `show protocols all` and
 * `show route …`. Unknown lines are skipped rather than fatal, so a newer bird that adds a field
 * still parses.
 */

export interface BirdChannel {
  name: string
  state?: string
  imported?: number
  filtered?: number
  exported?: number
  preferred?: number
}

export interface BirdProtocol {
  name: string
  proto: string
  table: string
  /** bird's protocol state: up, start, down, flush… */
  state: string
  /** As printed (pn's config prints epoch seconds). */
  since: string
  /** The Info column (for BGP: Established, Active, Connect…), the rest of the line included. */
  info: string
  bgp?: {
    state?: string
    neighborAddress?: string
    neighborAs?: number
    localAs?: number
    neighborId?: string
    sourceAddress?: string
    lastError?: string
  }
  channels: BirdChannel[]
}

/** Strip birdc's banner ("BIRD 2.0.12 ready.") and numeric reply codes if any. */
function lines(text: string): string[] {
  return text.split('\n').filter((l) => !/^BIRD [\d.]+ ready\.$/.test(l.trim()))
}

/** `birdc show protocols all` (or without `all`) → one record per protocol. */
export function parseBirdProtocols(text: string): BirdProtocol[] {
  const out: BirdProtocol[] = []
  let cur: BirdProtocol | undefined
  let channel: BirdChannel | undefined
  for (const line of lines(text)) {
    if (line.trim() === '') continue
    if (/^Name\s+Proto\s+Table\s+State\s+Since\s+Info/.test(line)) continue
    if (!/^\s/.test(line)) {
      // Name Proto Table State Since [Info…]: Since is one token with pn's "%s" time format.
      const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+(?: \d\d:\d\d:\d\d(?:\.\d+)?)?)\s*(.*)$/.exec(line)
      if (!m) continue
      cur = {name: m[1], proto: m[2], table: m[3], state: m[4], since: m[5], info: m[6].trim(), channels: []}
      if (cur.proto === 'BGP') cur.bgp = {}
      channel = undefined
      out.push(cur)
      continue
    }
    if (!cur) continue
    const t = line.trim()
    const ch = /^Channel (\S+)$/.exec(t)
    if (ch) {
      channel = {name: ch[1]}
      cur.channels.push(channel)
      continue
    }
    const kv = /^([A-Za-z][A-Za-z0-9 ._-]*?):\s+(.*)$/.exec(t)
    if (!kv) continue
    const [, key, value] = kv
    if (channel) {
      if (key === 'State') channel.state = value
      else if (key === 'Routes') {
        for (const [, n, what] of value.matchAll(/(\d+) (imported|filtered|exported|preferred)/g)) {
          channel[what as 'imported' | 'filtered' | 'exported' | 'preferred'] = Number(n)
        }
      }
      continue
    }
    if (!cur.bgp) continue
    switch (key) {
      case 'BGP state':
        cur.bgp.state = value
        break
      case 'Neighbor address':
        cur.bgp.neighborAddress = value
        break
      case 'Neighbor AS':
        cur.bgp.neighborAs = Number(value)
        break
      case 'Local AS':
        cur.bgp.localAs = Number(value)
        break
      case 'Neighbor ID':
        cur.bgp.neighborId = value
        break
      case 'Source address':
        cur.bgp.sourceAddress = value
        break
      case 'Last error':
        cur.bgp.lastError = value
        break
    }
  }
  return out
}

export interface BirdRoute {
  prefix: string
  /** unicast, unreachable, blackhole… */
  type: string
  /** The protocol the route came from. */
  protocol: string
  /** The best route for its prefix (`*`). */
  primary: boolean
  preference?: number
  /** `[AS65001i]` as printed, for BGP routes. */
  asPath?: string
  /** `via` addresses (more than one for a multipath route). */
  nextHops: string[]
  /** Outgoing interface (the `on DEV` of the first next hop). */
  device?: string
}

/** `birdc show route …` (without `all`) → routes; a prefix with several routes gives several. */
export function parseBirdRoutes(text: string): BirdRoute[] {
  const out: BirdRoute[] = []
  let prefix: string | undefined
  let cur: BirdRoute | undefined
  for (const line of lines(text)) {
    if (line.trim() === '' || /^Table \S+:$/.test(line.trim())) continue
    // A route line: PREFIX TYPE [PROTO SINCE…] [*] (PREF) [ASPATH]; the prefix is blank when it
    // repeats the previous route's.
    const m = /^(\S+)?\s+(\S+) \[(\S+)[^\]]*\]( \*)?(?: \((\d+)(?:\/[^)]*)?\))?(?: \[([^\]]*)\])?/.exec(line)
    if (m && (m[1] !== undefined || !/^\t/.test(line))) {
      if (m[1] !== undefined) prefix = m[1]
      if (!prefix || !prefix.includes('/')) continue
      cur = {
        prefix,
        type: m[2],
        protocol: m[3],
        primary: m[4] !== undefined,
        ...(m[5] ? {preference: Number(m[5])} : {}),
        ...(m[6] ? {asPath: m[6]} : {}),
        nextHops: [],
      }
      out.push(cur)
      continue
    }
    const via = /^\s+via (\S+)(?: on (\S+))?/.exec(line)
    if (via && cur) {
      cur.nextHops.push(via[1])
      cur.device ??= via[2]
    }
  }
  return out
}

/** birdc's error lines are not reflected in its exit code; find them in the text. */
export function birdcError(text: string): string | undefined {
  for (const l of lines(text)) {
    const t = l.trim()
    if (/^(Unable to connect|syntax error|Unknown protocol|Protocol .* not found|There is no|Error)/i.test(t)) return t
    if (/:\d+:\d+ /.test(t) && /error/i.test(t)) return t
  }
  return undefined
}
