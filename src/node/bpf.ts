/**
 * `pn bpf load|unload`: the datapath's node-level load (--host) or one pod's attachment
 * (--container-id), with the node taken from node.json and the pod from its endpoint record
 * (or the kernel), and the record's `bpfAttached` kept in step.
 */
import type {Runner} from '../exec/runner.js'
import {PnError} from '../errors.js'
import {attachEndpoint, detachEndpoint, loadHostPrograms, unloadHostPrograms, type HostLoadResult} from '../datapath/bpf/index.js'
import {resolveEndpoint} from '../endpoint/resolve.js'
import {getEndpoint, saveEndpoint} from '../endpoint/store.js'
import {bpfCacheDir, requireNodeContext} from './context.js'

export interface BpfTarget {
  host?: boolean
  containerId?: string
  ifname: string
  netns?: string
  /** bpf/ sources when pn runs outside its tree (PN_BPF_DIR). */
  sourceDir?: string
}

export type BpfLoadResult =
  | ({target: 'host'} & HostLoadResult)
  | {target: 'endpoint'; changed: boolean; containerId: string; ifname: string; device: string; ips: string[]; source: 'record' | 'kernel'}

function requireTarget(action: string, t: BpfTarget): string {
  if (!t.containerId) throw new PnError('PN_INVALID_ARGUMENT', `${action}: pass --host or --container-id`, {hint: `see \`pn ${action} --help\``})
  return t.containerId
}

async function setAttached(stateDir: string, containerId: string, ifname: string, attached: boolean): Promise<void> {
  const rec = await getEndpoint(stateDir, containerId, ifname)
  if (rec && Boolean(rec.bpfAttached) !== attached) await saveEndpoint(stateDir, {...rec, bpfAttached: attached})
}

export async function loadBpf(runner: Runner, stateDir: string, t: BpfTarget): Promise<BpfLoadResult> {
  const node = await requireNodeContext(stateDir)
  if (t.host) {
    return {target: 'host', ...(await loadHostPrograms(runner, node, {cacheDir: bpfCacheDir(stateDir), sourceDir: t.sourceDir}))}
  }
  const containerId = requireTarget('bpf load', t)
  const {endpoint, source} = await resolveEndpoint(runner, stateDir, {containerId, ifname: t.ifname, netns: t.netns})
  const r = await attachEndpoint(runner, node, endpoint)
  await setAttached(stateDir, endpoint.containerId, endpoint.ifname, true)
  return {target: 'endpoint', changed: r.changed, containerId, ifname: endpoint.ifname, device: endpoint.hostIfname, ips: endpoint.ips, source}
}

export interface BpfUnloadResult {
  target: 'host' | 'endpoint'
  changed: boolean
  detached?: {device: string; direction: string; program: string}[]
  unpinned?: boolean
  device?: string
  warnings: string[]
}

export async function unloadBpf(runner: Runner, stateDir: string, t: BpfTarget & {force?: boolean}): Promise<BpfUnloadResult> {
  const node = await requireNodeContext(stateDir)
  if (t.host) {
    const r = await unloadHostPrograms(runner, node, {force: t.force})
    return {target: 'host', changed: r.changed, detached: r.detached, unpinned: r.unpinned, warnings: r.warnings ?? []}
  }
  const containerId = requireTarget('bpf unload', t)
  const {endpoint} = await resolveEndpoint(runner, stateDir, {containerId, ifname: t.ifname, netns: t.netns})
  const r = await detachEndpoint(runner, node, endpoint)
  await setAttached(stateDir, endpoint.containerId, endpoint.ifname, false)
  return {target: 'endpoint', changed: r.changed, device: endpoint.hostIfname, warnings: r.warnings ?? []}
}
