/**
 * STATUS (CNI 1.1.0): can pn service an ADD right now? Yes when the node is initialised and
 * every pod CIDR has a free address; otherwise code 50 (not available). Read-only.
 */
import {PnError} from '../errors.js'
import {showIpam, type RangeStatus} from '../ipam/host.js'
import {readNodeContext, nodeFile} from '../node/context.js'
import {ipamOf} from '../node/ipam.js'
import type {NodeRequest} from './request.js'

export interface StatusResult {
  node: string
  routing: string
  ranges: RangeStatus[]
}

export async function cniStatus(req: Pick<NodeRequest, 'stateDir' | 'lock'>): Promise<StatusResult> {
  const node = await readNodeContext(req.stateDir)
  if (!node) {
    throw new PnError('PN_CNI_NOT_AVAILABLE', `check status: node is not initialised (no ${nodeFile(req.stateDir)})`, {
      hint: 'run `pn node init` on this node (or point "stateDir" in the netconf at its state dir)',
    })
  }
  const ranges = await showIpam(ipamOf(node, req.stateDir, req.lock))
  const full = ranges.filter((r) => r.free <= 0)
  if (ranges.length === 0 || full.length > 0) {
    throw new PnError('PN_CNI_NOT_AVAILABLE', `check status: pod CIDR ${full.map((r) => r.cidr).join(', ') || '(none)'} has no free addresses`, {
      hint: 'delete unused pods (DEL/GC), or give the node a larger pod CIDR',
      details: {ranges},
    })
  }
  return {node: node.name, routing: node.routing, ranges}
}
