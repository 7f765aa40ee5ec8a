/** Host-scope IPAM of this node: the pod CIDRs from the flags (standalone) or from node.json. */
import type {HostIpamTarget} from '../ipam/host.js'
import type {LockOptions} from '../state/files.js'
import {requireNodeContext, type NodeContext} from './context.js'

/** The IPAM target for a node that is known. */
export function ipamOf(node: Pick<NodeContext, 'podCidrs' | 'routerIps'>, stateDir: string, lock?: LockOptions): HostIpamTarget {
  return {stateDir, podCidrs: node.podCidrs, routerIps: node.routerIps, source: 'node', ...(lock ? {lock} : {})}
}

/** `--pod-cidr`/`--router-ip` when given (standalone), else node.json's (PN_NODE_NOT_INITIALIZED without one). */
export async function nodeIpamTarget(
  stateDir: string,
  opts: {podCidrs?: string[]; routerIps?: string[]; lock?: LockOptions} = {},
): Promise<HostIpamTarget> {
  if (opts.podCidrs && opts.podCidrs.length > 0) {
    return {stateDir, podCidrs: opts.podCidrs, routerIps: opts.routerIps, source: 'standalone', ...(opts.lock ? {lock: opts.lock} : {})}
  }
  const node = await requireNodeContext(stateDir)
  return {...ipamOf(node, stateDir, opts.lock), ...(opts.routerIps ? {routerIps: opts.routerIps} : {})}
}
