/**
 * `pn veth create|delete` and `pn endpoint delete`: the endpoint layer's connect and teardown,
 * with the settings a user did not pass taken from node.json (MTU, router IPs, routing mode).
 */
import type {Runner} from '../exec/runner.js'
import {connectEndpoint, type ConnectResult} from '../endpoint/connect.js'
import {hostIfnameFor} from '../datapath/veth.js'
import {teardownEndpoint, type TeardownTarget} from '../endpoint/teardown.js'
import {sweepError, type FlowOptions} from '../flow/plan.js'
import type {PodMeta} from '../endpoint/store.js'
import {readNodeContext, type NodeContext} from './context.js'
import {removeAttachmentLock, withAttachmentLock} from './lock.js'

export const DEFAULT_MTU = 1500

export interface CreateVethOptions extends PodMeta {
  containerId: string
  ifname: string
  netns: string
  ips?: string[]
  mtu?: number
  /** Standalone override of node.json's router IPs. */
  routerIps?: string[]
  routeMtu?: number
}

export interface CreateVethResult extends ConnectResult {
  routing: NodeContext['routing'] | 'none'
}

export async function createVeth(runner: Runner, stateDir: string, opts: CreateVethOptions, flow: FlowOptions = {}): Promise<CreateVethResult> {
  const action = `create veth for ${opts.containerId}:${opts.ifname}`
  return withAttachmentLock(stateDir, opts.containerId, opts.ifname, action, () => create(runner, stateDir, opts, flow))
}

async function create(runner: Runner, stateDir: string, opts: CreateVethOptions, flow: FlowOptions): Promise<CreateVethResult> {
  const node = await readNodeContext(stateDir)
  const mtu = opts.mtu ?? node?.mtu ?? DEFAULT_MTU
  const r = await connectEndpoint(runner, stateDir, {
    ...opts,
    mtu,
    routerIps: opts.routerIps && opts.routerIps.length > 0 ? opts.routerIps : node?.routerIps ?? [],
    routeMtu: opts.routeMtu ?? (opts.mtu ? opts.mtu : node?.routeMtu ?? mtu),
    hostRoutes: node?.routing === 'host-routes',
  }, flow)
  return {...r, routing: node?.routing ?? 'none'}
}

export interface DeleteVethResult {
  changed: boolean
  hostIfname: string
  linkDeleted: boolean
  endpointDeleted: boolean
  bpfDetached: boolean
}

/**
 * Remove the pod's veth and endpoint record (and its BPF entries when the node routes by BPF),
 * through the one teardown; succeeds when already gone. IPs stay with whoever allocated them.
 */
export async function deleteVeth(runner: Runner, stateDir: string, t: TeardownTarget): Promise<DeleteVethResult> {
  const node = await readNodeContext(stateDir).catch(() => undefined)
  const r = await withAttachmentLock(stateDir, t.containerId, t.ifname, `delete veth of ${t.containerId}:${t.ifname}`, async () => {
    const res = await teardownEndpoint(runner, stateDir, t, {...(node?.routing === 'bpf' ? {bpf: node} : {})})
    if (res.errors.length === 0) await removeAttachmentLock(stateDir, t.containerId, t.ifname)
    return res
  })
  if (r.errors.length > 0) {
    throw sweepError(`delete veth of ${t.containerId}:${t.ifname}`, r.errors, 'delete is safe to retry; fix the cause and run it again')
  }
  return {
    changed: r.veth || r.endpoint || r.bpf,
    hostIfname: hostIfnameFor(t.containerId, t.ifname),
    linkDeleted: r.veth,
    endpointDeleted: r.endpoint,
    bpfDetached: r.bpf,
  }
}
