/**
 * The bird2 configuration `pn bgp up` writes (pure: spec in, text out, unit-tested).
 *
 * What it says, and why:
 *  - One static protocol per family originates the node's pod CIDRs as `unreachable` routes.
 *    They live only in bird's table (no kernel protocol ever exports static routes), so the
 *    kernel keeps routing the pod CIDR to pn_host as `pn node init` set it up.
 *  - One BGP protocol per peer, named after the peer's address, so adding or removing a peer
 *    leaves the other protocols' text identical and `birdc configure` keeps their sessions.
 *  - The export filter accepts exactly those static routes: nothing learned from a peer or from
 *    the kernel can leak to the routers. The next hop is the node's uplink address.
 *  - Learned routes are imported into bird's table (so `pn bgp status` can show them), except the
 *    node's own pod CIDRs coming back; they reach the kernel only with `importRoutes` (a kernel
 *    protocol exporting BGP routes, `proto bird` in `ip route`).
 *  - Short connect retry / error wait timers: bird's defaults (120 s retry) would leave a lab
 *    whose router starts a second late without a session for two minutes.
 */
import type {Family} from '../cidr/cidr.js'

export interface BgpPeer {
  /** Canonical peer address. */
  address: string
  family: Family
  as: number
  /** bird protocol name (peerProtocolName). */
  name: string
}

export interface BirdConfigSpec {
  /** Node name, for the header comment only. */
  node: string
  routerId: string
  localAs: number
  peers: BgpPeer[]
  /** Canonical pod CIDRs to announce (IPv4 first). */
  podCidrs: {cidr: string; family: Family}[]
  /** The node's uplink address per family: the session source and the announced next hop. */
  nextHops: Partial<Record<Family, string>>
  /** Install routes learned from peers into the kernel table. */
  importRoutes: boolean
  logFile: string
}

/** bird protocol name for a peer: `peer_` + the address with every non-alphanumeric as `_`. */
export function peerProtocolName(address: string): string {
  return `peer_${address.replace(/[^A-Za-z0-9]/g, '_')}`
}

const CHANNEL: Record<Family, string> = {4: 'ipv4', 6: 'ipv6'}

function prefixSet(cidrs: string[], suffix = ''): string {
  return `[ ${cidrs.map((c) => c + suffix).join(', ')} ]`
}

/** Render the whole bird.conf. Deterministic: the same spec always gives the same bytes. */
export function renderBirdConfig(spec: BirdConfigSpec): string {
  const families = ([4, 6] as const).filter((f) => spec.peers.some((p) => p.family === f))
  const cidrsOf = (f: Family) => spec.podCidrs.filter((c) => c.family === f).map((c) => c.cidr)
  const out: string[] = [
    `# bird2 configuration of pn node ${spec.node.replace(/[^A-Za-z0-9._-]/g, '_')}, written by \`pn bgp up\`.`,
    '# Rewritten on every run: change the flags of pn bgp up, not this file.',
    '',
    `router id ${spec.routerId};`,
    '# Epoch seconds, so pn bgp status can compute session uptimes.',
    'timeformat protocol "%s";',
    `log ${quote(spec.logFile)} { info, remote, warning, error, auth, fatal, bug };`,
    '',
    '# Interfaces and their addresses (BGP needs them to reach directly connected peers).',
    'protocol device {',
    '  scan time 10;',
    '}',
  ]

  for (const f of families) {
    const ch = CHANNEL[f]
    const cidrs = cidrsOf(f)
    out.push('')
    if (cidrs.length > 0) {
      out.push(
        `# The node's IPv${f} pod CIDRs, originated here and announced to every IPv${f} peer.`,
        `protocol static pn_pods_v${f} {`,
        `  ${ch};`,
        ...cidrs.map((c) => `  route ${c} unreachable;`),
        '}',
        '',
        `# Announce the pod CIDRs and nothing else: no learned, kernel or device route ever leaves.`,
        `filter pn_export_v${f} {`,
        `  if source = RTS_STATIC && proto = "pn_pods_v${f}" && net ~ ${prefixSet(cidrs)} then accept;`,
        '  reject;',
        '}',
        '',
        `# Learn what the peers announce, except our own pod CIDRs (or parts of them) coming back.`,
        `filter pn_import_v${f} {`,
        `  if net ~ ${prefixSet(cidrs, '+')} then reject;`,
        '  accept;',
        '}',
      )
    } else {
      out.push(
        `# No IPv${f} pod CIDR: nothing to announce to IPv${f} peers, only learn from them.`,
        `filter pn_export_v${f} {`,
        '  reject;',
        '}',
        '',
        `filter pn_import_v${f} {`,
        '  accept;',
        '}',
      )
    }
    if (spec.importRoutes) {
      out.push(
        '',
        `# --import: install routes learned by BGP into the kernel table (they show as proto bird).`,
        `protocol kernel pn_kernel_v${f} {`,
        `  ${ch} {`,
        '    import none;',
        '    export where source = RTS_BGP;',
        '  };',
        '}',
      )
    }
  }

  for (const p of spec.peers) {
    const ch = CHANNEL[p.family]
    const local = spec.nextHops[p.family]
    out.push(
      '',
      `protocol bgp ${p.name} {`,
      `  description ${quote(`pn peer ${p.address} AS ${p.as}`)};`,
      `  local ${local ? `${local} ` : ''}as ${spec.localAs};`,
      `  neighbor ${p.address} as ${p.as};`,
      '  connect retry time 5;',
      '  error wait time 5, 30;',
      `  ${ch} {`,
      `    import filter pn_import_v${p.family};`,
      `    export filter pn_export_v${p.family};`,
      '    next hop self;',
      ...(local ? [`    next hop address ${local};`] : []),
      '  };',
      '}',
    )
  }
  return out.join('\n') + '\n'
}

function quote(s: string): string {
  return JSON.stringify(s)
}
