/**
 * Finding pod devices pn made without a record naming them (a crash between veth and record,
 * or a reset racing an ADD): host-side veths named `lxc` + 12 hex, the name setupVeth gives.
 */
import type {Runner} from '../exec/runner.js'
import {cidrContains} from '../cidr/cidr.js'
import {applyOne} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'

export const LXC_RE = /^lxc[0-9a-f]{12}$/

/** Every host-side pod veth in this netns. */
export async function podDevices(runner: Runner): Promise<string[]> {
  const {links} = await applyOne(kernelFor(runner), {kind: 'link.list'})
  return links.filter((l) => l.linkinfo?.info_kind === 'veth' && LXC_RE.test(l.ifname)).map((l) => l.ifname)
}

/**
 * Pod veths that are pn's beyond doubt: a host route into one of the node's pod CIDRs
 * (host-routes mode), or the from-container program on their tc ingress (bpf mode).
 */
export async function pnPodDevices(runner: Runner, podCidrs: string[]): Promise<string[]> {
  const all = new Set(await podDevices(runner))
  if (all.size === 0) return []
  const kernel = kernelFor(runner)
  const out = new Set<string>()
  for (const family of [4, 6] as const) {
    const {routes} = await applyOne(kernel, {kind: 'route.list', family}).catch(() => ({routes: []}))
    for (const rt of routes) {
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
  const rest = [...all].filter((d) => !out.has(d)).sort()
  const hooks = await kernel.apply(rest.map((dev) => ({kind: 'tc.list', dev, direction: 'ingress'}))).catch(() => [])
  for (const [k, h] of hooks.entries()) {
    if (h.kind === 'tc.list' && h.filters.some((f) => (f.prog?.name ?? '').startsWith('from_container'))) out.add(rest[k])
  }
  return [...out].sort()
}
