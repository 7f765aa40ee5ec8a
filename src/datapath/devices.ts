/**
 * What the datapath needs to know about a node, as plain values (the node layer's NodeContext
 * satisfies it): device names, the bpffs folder holding this node's pins, the uplink and the
 * router addresses on pn_host. No datapath function reads node.json.
 */

import type {MasqueradeConfig} from './masquerade.js'

/** pn's cilium_host/cilium_net: the node's router side and its peer. */
export const HOST_DEVICE = 'pn_host'
export const NET_DEVICE = 'pn_net'

export interface DatapathNode {
  /** Folder on a bpffs where this node's programs and maps are pinned. */
  bpffsRoot: string
  /** The node's uplink device; carries from-netdev/to-netdev. */
  uplink: string
  /** Router IP per family, on pn_host. */
  routerIps: string[]
  /** `vxlan`: from-overlay goes on pn_vxlan and pn_node_config turns tunnel mode on. Absent: off. */
  tunnel?: TunnelMode
  /** The node's pod CIDRs (never masqueraded). */
  podCidrs?: string[]
  /** Masquerade settings (absent: off); the host load writes them into pn_node_config and pn_nonmasq. */
  masquerade?: MasqueradeConfig
}

/** Cilium's cilium_vxlan: the collect-metadata VXLAN device of tunnel mode. */
export const TUNNEL_DEVICE = 'pn_vxlan'
/** Cilium's VXLAN port (the Linux default, 8472, not IANA's 4789). */
export const VXLAN_PORT = 8472
/** Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: what the pod MTU leaves for the tunnel (Cilium's TunnelOverhead). */
export const TUNNEL_OVERHEAD = 50

/** How pod traffic crosses to other nodes: native routing (`off`) or a VXLAN tunnel. */
export type TunnelMode = 'off' | 'vxlan'
