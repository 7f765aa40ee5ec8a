/**
 * The node context: what `pn node init` decided (name, uplink, pod CIDRs, router IPs, MTU,
 * bpffs root, routing mode), stored in `<state-dir>/node.json` so later commands need no flags.
 * Several lab nodes on one machine each have their own state dir and bpffs root.
 */
import path from 'node:path'
import {PnError} from '../errors.js'
import {BPF_CACHE_DIR} from '../datapath/bpf/bpffs.js'
import type {TunnelMode} from '../datapath/devices.js'
import type {MasqueradeConfig} from '../datapath/masquerade.js'
import {readJsonFile, writeFileAtomic, type JsonFileSpec} from '../state/files.js'

/** How traffic reaches local pods: BPF redirect (Cilium's default) or one host route per pod. */
export type RoutingMode = 'bpf' | 'host-routes'

export interface NodeContext {
  version: 1
  name: string
  /** The node's uplink device (its "eth0"); carries from-netdev/to-netdev. */
  uplink: string
  /** Pod CIDRs, one per family, normalised (IPv4 first). */
  podCidrs: string[]
  /** Router IP per pod CIDR (same order), assigned /32 (/128) to pn_host. */
  routerIps: string[]
  /** MTU of pn_host/pn_net and pod veths (the uplink MTU unless given; 50 less in tunnel mode). */
  mtu: number
  /** MTU put on the pods' default route. Equal to mtu without tunnelling. */
  routeMtu: number
  /** Folder on a bpffs where this node's programs and maps are pinned. */
  bpffsRoot: string
  routing: RoutingMode
  /** How pod traffic reaches other nodes: native routing (`off`) or VXLAN over pn_vxlan. Absent (an older node.json): off. */
  tunnel?: TunnelMode
  /** Cluster pool location the pod CIDR came from, if any (so reset can release it). */
  pool?: string
  /** Masquerade (`--masquerade`, `--non-masquerade-cidr`); absent on nodes initialised without it: off. */
  masquerade?: MasqueradeConfig
  createdAt: string
}

export {HOST_DEVICE, NET_DEVICE, TUNNEL_DEVICE, type TunnelMode} from '../datapath/devices.js'

/** Where the node's compiled BPF objects are cached. */
export function bpfCacheDir(stateDir: string): string {
  return path.join(stateDir, BPF_CACHE_DIR)
}

export function nodeFile(stateDir: string): string {
  return path.join(stateDir, 'node.json')
}

const spec: JsonFileSpec<NodeContext> = {
  what: 'node context',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v: unknown): v is NodeContext => {
    const n = v as NodeContext
    return (
      !!n && n.version === 1 && typeof n.name === 'string' && typeof n.uplink === 'string' &&
      Array.isArray(n.podCidrs) && Array.isArray(n.routerIps) && typeof n.mtu === 'number' &&
      typeof n.bpffsRoot === 'string'
    )
  },
  corruptHint: 'run `pn node reset --force` to start over, or fix node.json by hand',
}

export async function readNodeContext(stateDir: string): Promise<NodeContext | undefined> {
  return readJsonFile(nodeFile(stateDir), spec)
}

/** The node context, or PN_NODE_NOT_INITIALIZED with the command to run. */
export async function requireNodeContext(stateDir: string): Promise<NodeContext> {
  const ctx = await readNodeContext(stateDir)
  if (!ctx) {
    throw new PnError('PN_NODE_NOT_INITIALIZED', `read node context ${nodeFile(stateDir)}: node is not initialised`, {
      hint: 'run `pn node init --name NODE --device UPLINK --pod-cidr CIDR` first (or pass --pod-cidr for standalone IPAM)',
    })
  }
  return ctx
}

export async function writeNodeContext(stateDir: string, ctx: NodeContext): Promise<void> {
  await writeFileAtomic(nodeFile(stateDir), JSON.stringify(ctx, null, 2) + '\n')
}
