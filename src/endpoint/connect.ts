/**
 * Veth + endpoint record as one transactional step (what `pn veth create/delete` do; `pn cni`
 * may compose setupVeth and the store itself). Settings come from node.json when the node is
 * initialised, else from the options (standalone use).
 */
import type {Runner} from '../exec/runner.js'
import {PnError} from '../errors.js'
import {readNodeContext, type NodeContext} from '../node/context.js'
import {checkpoint, runningFlow} from '../flow/interrupt.js'
import {UndoStack, withRollbackDetails} from '../flow/plan.js'
import {deleteVeth, hostIfnameFor, setupVeth, type VethResult} from '../datapath/veth.js'
import {allocateEndpointId, deleteEndpoint, endpointKey, endpointRecordFor, getEndpoint, saveEndpoint} from './store.js'

export const DEFAULT_MTU = 1500

export interface ConnectOptions {
  containerId: string
  ifname: string
  netns: string
  ips?: string[]
  mtu?: number
  /** Standalone override of node.json's router IPs. */
  routerIps?: string[]
  routeMtu?: number
  podName?: string
  podNamespace?: string
  podUid?: string
}

export interface ConnectResult extends VethResult {
  changed: boolean
  endpointId: number
  routing: NodeContext['routing'] | 'none'
}

export async function connectEndpoint(runner: Runner, stateDir: string, opts: ConnectOptions): Promise<ConnectResult> {
  const node = await readNodeContext(stateDir)
  const routerIps = opts.routerIps && opts.routerIps.length > 0 ? opts.routerIps : node?.routerIps ?? []
  const mtu = opts.mtu ?? node?.mtu ?? DEFAULT_MTU
  const routeMtu = opts.routeMtu ?? (opts.mtu ? opts.mtu : node?.routeMtu ?? mtu)
  if ((opts.ips?.length ?? 0) > 0 && routerIps.length === 0) {
    throw new PnError('PN_NODE_NOT_INITIALIZED', 'configure pod addresses: no router IP known', {
      hint: 'run `pn node init` first, or pass --router-ip for standalone use',
    })
  }
  const undo = new UndoStack()
  const action = `create veth for ${opts.containerId}`
  return runningFlow(async () => {
  try {
    const veth = await setupVeth(runner, {
      containerId: opts.containerId,
      ifname: opts.ifname,
      netns: opts.netns,
      mtu,
      ips: opts.ips,
      routerIps,
      routeMtu,
      hostRoutes: node?.routing === 'host-routes',
    })
    undo.push(`delete veth ${veth.hostIfname}`, () => deleteVeth(runner, {containerId: opts.containerId, ifname: opts.ifname}))
    await checkpoint(action)
    const id = endpointKey(opts.containerId, opts.ifname)
    const endpointId = await allocateEndpointId(stateDir, id)
    undo.push(`delete endpoint ${id}`, () => deleteEndpoint(stateDir, opts.containerId, opts.ifname))
    const rec = endpointRecordFor(veth, {
      containerId: opts.containerId,
      ifname: opts.ifname,
      endpointId,
      routerIps,
      podName: opts.podName,
      podNamespace: opts.podNamespace,
      podUid: opts.podUid,
    })
    await saveEndpoint(stateDir, rec)
    await checkpoint(action)
    return {...veth, changed: true, endpointId, routing: node?.routing ?? 'none'}
  } catch (err) {
    throw withRollbackDetails(err, await undo.unwind(), action)
  }
  })
}

export interface DisconnectResult {
  changed: boolean
  hostIfname: string
  linkDeleted: boolean
  endpointDeleted: boolean
}

/** Remove veth and record; succeeds when either or both are already gone. */
export async function disconnectEndpoint(
  runner: Runner,
  stateDir: string,
  opts: {containerId: string; ifname: string; netns?: string},
): Promise<DisconnectResult> {
  const rec = await getEndpoint(stateDir, opts.containerId, opts.ifname).catch(() => undefined)
  const {deleted} = await deleteVeth(runner, {...opts, netns: opts.netns ?? rec?.netns})
  const ep = await deleteEndpoint(stateDir, opts.containerId, opts.ifname)
  return {
    changed: deleted || ep.deleted,
    hostIfname: hostIfnameFor(opts.containerId, opts.ifname),
    linkDeleted: deleted,
    endpointDeleted: ep.deleted,
  }
}
