/** `pn node show`: node.json against the kernel — what exists, what is missing or drifted. */
import {promises as fs} from 'node:fs'
import type {Runner} from '../exec/runner.js'
import {hostPrefix} from '../cidr/cidr.js'
import {getLink, isVethPairOf} from '../datapath/link.js'
import {readSysctls} from '../datapath/sysctl.js'
import {listEndpoints} from '../endpoint/store.js'
import {isBpffs} from '../datapath/bpffs.js'
import {iptablesMasqueradePresent, natPortsReserved} from '../datapath/masquerade.js'
import {foreignOverlaps, hostAddresses, nodeNetworks, nodeSysctls, podCidrRouteOk} from '../datapath/host.js'
import {tunnelSysctls} from '../datapath/tunnel.js'
import {HOST_DEVICE, NET_DEVICE, requireNodeContext, TUNNEL_DEVICE, type NodeContext} from './context.js'

export interface NodeCheck {
  check: string
  ok: boolean
  expected: string
  actual: string
}

export interface NodeShowResult {
  node: NodeContext
  ok: boolean
  checks: NodeCheck[]
  endpoints: {id: string; hostIfname: string; ips: string[]; linkPresent: boolean}[]
}

export async function showNode(runner: Runner, stateDir: string): Promise<NodeShowResult> {
  const node = await requireNodeContext(stateDir)
  const checks: NodeCheck[] = []
  const add = (check: string, ok: boolean, expected: string, actual: string) => checks.push({check, ok, expected, actual})

  const [host, net, uplink] = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE), getLink(runner, node.uplink)])
  add(`uplink ${node.uplink}`, !!uplink, 'present', uplink ? `present, mtu ${uplink.mtu}` : 'missing')
  for (const [name, d] of [[HOST_DEVICE, host], [NET_DEVICE, net]] as const) {
    const up = !!d && (d.flags ?? []).includes('UP')
    add(`device ${name}`, !!d && d.linkinfo?.info_kind === 'veth' && up && d.mtu === node.mtu,
      `veth, up, mtu ${node.mtu}`, d ? `${d.linkinfo?.info_kind ?? '?'}, ${up ? 'up' : 'down'}, mtu ${d.mtu}, ${d.address}` : 'missing')
  }
  if (node.tunnel === 'vxlan') {
    const vx = await getLink(runner, TUNNEL_DEVICE)
    const up = !!vx && (vx.flags ?? []).includes('UP')
    add(`device ${TUNNEL_DEVICE}`, vx?.linkinfo?.info_kind === 'vxlan' && up, 'vxlan, up', vx ? `${vx.linkinfo?.info_kind ?? '?'}, ${up ? 'up' : 'down'}, mtu ${vx.mtu}` : 'missing')
  }
  add(`${HOST_DEVICE} peer`, isVethPairOf(host, net), NET_DEVICE,
    host ? (isVethPairOf(host, net) ? NET_DEVICE : host.link ?? `ifindex ${host.link_index ?? '?'}`) : 'missing')

  const addrs = host ? await hostAddresses(runner) : []
  for (const r of node.routerIps) {
    const want = `${r}/${hostPrefix(r)}`
    add(`router ip on ${HOST_DEVICE}`, addrs.includes(want), want, addrs.join(', ') || 'none')
  }
  for (let i = 0; i < node.podCidrs.length; i++) {
    const ok = host ? await podCidrRouteOk(runner, node.podCidrs[i], node.routerIps[i]) : false
    add(`route ${node.podCidrs[i]}`, ok, `via ${node.routerIps[i]} dev ${HOST_DEVICE}`, ok ? 'present' : 'missing or different')
  }
  // What init refuses can still appear later (a route or address added by hand): it shadows pods.
  const networks = await nodeNetworks(runner)
  for (const c of node.podCidrs) {
    const hits = foreignOverlaps(c, networks)
    add(`pod cidr ${c} apart from the node's networks`, hits.length === 0, 'no address or route of another device overlaps it',
      hits.length === 0 ? 'none overlaps' : hits.map((h) => `${h.kind} ${h.text}`).join('; '))
  }
  const wanted = {...nodeSysctls(node.podCidrs), ...(node.tunnel === 'vxlan' ? tunnelSysctls() : {})}
  const current = await readSysctls(runner, Object.keys(wanted))
  for (const [k, v] of Object.entries(wanted)) add(`sysctl ${k}`, current[k] === v, v, current[k] ?? 'missing')

  if (node.masquerade?.mode === 'iptables') {
    const ok = await iptablesMasqueradePresent(runner)
    add('masquerade iptables', ok, 'chain PN-MASQUERADE with a MASQUERADE rule', ok ? 'present' : 'missing')
    if (node.podCidrs.some((c) => c.includes(':'))) {
      const ok6 = await iptablesMasqueradePresent(runner, 6)
      add('masquerade ip6tables', ok6, 'ip6tables chain PN-MASQUERADE with a MASQUERADE rule', ok6 ? 'present' : 'missing')
    }
  } else if (node.masquerade?.mode === 'bpf') {
    const r = await natPortsReserved(runner, node.masquerade)
    add('masquerade ports reserved', r.ok, `${node.masquerade.portMin}-${node.masquerade.portMax} in net.ipv4.ip_local_reserved_ports`, r.actual)
  }

  const bpffsOk = await isBpffs(node.bpffsRoot)
  add('bpffs root', bpffsOk, `${node.bpffsRoot} on bpffs`, bpffsOk ? 'present' : (await fs.stat(node.bpffsRoot).then(() => 'not on bpffs', () => 'missing')))

  const endpoints = []
  for (const ep of await listEndpoints(stateDir)) {
    const link = await getLink(runner, ep.hostIfname)
    endpoints.push({id: ep.id, hostIfname: ep.hostIfname, ips: ep.ips, linkPresent: !!link && link.ifindex === ep.hostIfindex})
  }
  for (const ep of endpoints) add(`endpoint ${ep.id}`, ep.linkPresent, `${ep.hostIfname} present`, ep.linkPresent ? 'present' : 'missing')
  return {node, ok: checks.every((c) => c.ok), checks, endpoints}
}
