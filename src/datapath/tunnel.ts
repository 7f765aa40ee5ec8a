/**
 * Tunnel mode's device: pn_vxlan, a VXLAN device in collect-metadata mode (`external`) on UDP
 * 8472, as Cilium's cilium_vxlan. It has no remote and no VNI: from-container sets both per
 * packet (bpf/include/tunnel.h) and from-overlay runs on its ingress. Made only when missing,
 * so its ifindex (in pn_node_config) stays stable across re-runs.
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import type {UndoStack} from '../flow/undo.js'
import type {KernelOp} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'
import {TUNNEL_DEVICE, VXLAN_PORT} from './devices.js'
import {deleteLinkByName, getLink, randomMac, type LinkInfo} from './link.js'
import {devSysctl} from './sysctl.js'

/** The sysctls pn_vxlan needs: decapsulated traffic for the node itself must pass rp_filter (its source is a remote pod). */
export function tunnelSysctls(): Record<string, string> {
  return {[devSysctl('ipv4', TUNNEL_DEVICE, 'rp_filter')]: '0', [devSysctl('ipv4', TUNNEL_DEVICE, 'forwarding')]: '1'}
}

function isPnTunnel(l: LinkInfo | undefined): boolean {
  return l?.linkinfo?.info_kind === 'vxlan'
}

/** Create pn_vxlan (and bring it up) unless it is there; what was done. A device of that name of another kind is PN_NODE_CONFLICT. */
export async function setupTunnelDevice(runner: Runner, mtu: number, undo: UndoStack): Promise<string[]> {
  const dev = await getLink(runner, TUNNEL_DEVICE)
  const actions: string[] = []
  const ops: KernelOp[] = []
  if (dev && !isPnTunnel(dev)) {
    throw new PnError('PN_NODE_CONFLICT', `create ${TUNNEL_DEVICE}: a ${dev.linkinfo?.info_kind ?? 'device'} of that name exists`, {
      hint: `rename or delete it yourself (\`ip -d link show ${TUNNEL_DEVICE}\`), or run without --tunnel vxlan`,
    })
  }
  if (!dev) {
    ops.push({kind: 'link.add', type: 'vxlan', name: TUNNEL_DEVICE, address: randomMac(), mtu, dstport: VXLAN_PORT})
    undo.push(`delete ${TUNNEL_DEVICE}`, () => deleteLinkByName(runner, TUNNEL_DEVICE))
    actions.push(`created ${TUNNEL_DEVICE} (vxlan external dstport ${VXLAN_PORT})`)
  } else if (dev.mtu !== mtu) {
    ops.push({kind: 'link.set', name: TUNNEL_DEVICE, mtu})
    actions.push(`set ${TUNNEL_DEVICE} mtu ${mtu}`)
  }
  if (!dev || !(dev.flags ?? []).includes('UP')) ops.push({kind: 'link.set', name: TUNNEL_DEVICE, up: true})
  for (const [key, value] of Object.entries(tunnelSysctls())) ops.push({kind: 'sysctl.set', key, value})
  await kernelFor(runner).apply(ops)
  return actions
}

/** Delete pn_vxlan if it is a VXLAN device (pn's); true when it was deleted. */
export async function deleteTunnelDevice(runner: Runner): Promise<boolean> {
  if (!isPnTunnel(await getLink(runner, TUNNEL_DEVICE))) return false
  return deleteLinkByName(runner, TUNNEL_DEVICE)
}
