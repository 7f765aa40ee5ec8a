/**
 * Veth + endpoint record as one transactional plan (what `pn veth create` runs; `pn cni add`
 * composes the same pieces with IPAM and BPF). Every setting comes in as a plain option: the
 * node layer (src/node/veth.ts) fills them from node.json.
 */
import type {Runner} from '../exec/runner.js'
import {PnError} from '../errors.js'
import {requireNetns} from '../datapath/netns.js'
import {deleteVeth, hostIfnameFor, setupVeth, type VethResult} from '../datapath/veth.js'
import {runPlan, UndoStack, type FlowOptions, type Plan} from '../flow/plan.js'
import {allocateEndpointId, deleteEndpoint, endpointKey, endpointRecordFor, saveEndpoint, type PodMeta} from './store.js'

export interface ConnectOptions extends PodMeta {
  containerId: string
  ifname: string
  netns: string
  ips?: string[]
  mtu: number
  routerIps: string[]
  routeMtu: number
  /** Add `podIP/32 dev lxc…` on the host (routing mode host-routes). */
  hostRoutes: boolean
}

export interface ConnectResult extends VethResult {
  changed: boolean
  endpointId: number
}

/** The veth-create plan; nothing runs until its steps do. */
export function connectPlan(runner: Runner, stateDir: string, opts: ConnectOptions): Plan<ConnectResult> {
  const undo = new UndoStack()
  let veth: VethResult | undefined
  let endpointId = 0
  const id = endpointKey(opts.containerId, opts.ifname)
  return {
    undo,
    steps: [
      {
        title: `check netns ${opts.netns}`,
        run: async () => {
          if ((opts.ips?.length ?? 0) > 0 && opts.routerIps.length === 0) {
            throw new PnError('PN_NODE_NOT_INITIALIZED', 'configure pod addresses: no router IP known', {
              hint: 'run `pn node init` first, or pass --router-ip for standalone use',
            })
          }
          await requireNetns(opts.netns)
        },
      },
      {
        title: `create ${hostIfnameFor(opts.containerId, opts.ifname)} <-> ${opts.ifname} in ${opts.netns}`,
        run: async () => {
          veth = await setupVeth(runner, {
            containerId: opts.containerId,
            ifname: opts.ifname,
            netns: opts.netns,
            mtu: opts.mtu,
            ips: opts.ips,
            routerIps: opts.routerIps,
            routeMtu: opts.routeMtu,
            hostRoutes: opts.hostRoutes,
          })
          undo.push(`delete veth ${veth.hostIfname}`, () => deleteVeth(runner, {containerId: opts.containerId, ifname: opts.ifname}))
        },
      },
      {
        title: `write endpoint record ${id}`,
        run: async () => {
          endpointId = await allocateEndpointId(stateDir, id)
          undo.push(`delete endpoint ${id}`, () => deleteEndpoint(stateDir, opts.containerId, opts.ifname))
          await saveEndpoint(stateDir, endpointRecordFor(veth!, {...opts, endpointId}))
        },
      },
    ],
    result: () => ({...veth!, changed: true, endpointId}),
  }
}

export async function connectEndpoint(runner: Runner, stateDir: string, opts: ConnectOptions, flow: FlowOptions = {}): Promise<ConnectResult> {
  return runPlan(connectPlan(runner, stateDir, opts), `create veth for ${opts.containerId}`, flow)
}
