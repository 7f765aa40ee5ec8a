/**
 * Finding pod devices pn made without a record naming them (a crash between veth and record,
 * or a reset racing an ADD): host-side veths named `lxc` + 12 hex, the name setupVeth gives.
 */
import type {Runner} from '../exec/runner.js'
import {cidrContains} from '../cidr/cidr.js'
import {parseJson} from './link.js'

export const LXC_RE = /^lxc[0-9a-f]{12}$/

/** Every host-side pod veth in this netns. */
export async function podDevices(runner: Runner): Promise<string[]> {
  const r = await runner.run('ip', ['-j', 'link', 'show', 'type', 'veth'], {readOnly: true})
  return (parseJson<{ifname: string}[]>(r.stdout, 'list veths') ?? []).map((l) => l.ifname).filter((n) => LXC_RE.test(n))
}

/**
 * Pod veths that are pn's beyond doubt: the from-container program on their tc ingress (bpf
 * mode), or a host route into one of the node's pod CIDRs (host-routes mode).
 */
export async function pnPodDevices(runner: Runner, podCidrs: string[]): Promise<string[]> {
  const all = new Set(await podDevices(runner))
  if (all.size === 0) return []
  const out = new Set<string>()
  const net = await runner.run('bpftool', ['-j', 'net', 'show'], {readOnly: true, allowFailure: true})
  if (net.exitCode === 0) {
    const tc = (parseJson<{tc?: {devname: string; name?: string}[]}[]>(net.stdout, 'list tc programs') ?? [])[0]?.tc ?? []
    for (const t of tc) if (all.has(t.devname) && (t.name ?? '').startsWith('from_container')) out.add(t.devname)
  }
  for (const family of ['-4', '-6']) {
    const r = await runner.run('ip', [family, '-j', 'route', 'show'], {readOnly: true, allowFailure: true})
    if (r.exitCode !== 0) continue
    for (const rt of parseJson<{dst: string; dev?: string}[]>(r.stdout, 'list routes') ?? []) {
      if (!rt.dev || !all.has(rt.dev) || rt.dst === 'default') continue
      const ip = rt.dst.split('/')[0]
      if (podCidrs.some((c) => {
        try {
          return cidrContains(c, ip)
        } catch {
          return false
        }
      })) out.add(rt.dev)
    }
  }
  return [...out].sort()
}
