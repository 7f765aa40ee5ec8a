/**
 * The one teardown of a pod attachment, used by CNI DEL and GC, by `pn node reset`, by
 * `pn endpoint delete --purge` and by an ADD that finds its own leftover: veth → BPF entries (and
 * filter) → endpoint record (and its id) → IP. When this call deleted the recorded host veth, the
 * kernel took its clsact qdisc and filter along, and the map entries go by the record's keys in
 * one bpftool batch (2 spawns in all); otherwise (no record, the veth already gone, a failed
 * delete) the filter is detached with tc and the entries are found by dumping the maps. Every part is attempted even when an
 * earlier one failed, and it succeeds when any of it is already gone, when the netns vanished,
 * and when called twice (kubelet retries DEL for a long time, kubernetes#43014). IPAM goes last,
 * so an address is never handed out again while its old veth or map entry exists.
 */
import type {Runner} from '../exec/runner.js'
import {detachPod as detachEndpoint, forgetPod as forgetEndpoint} from '../datapath/bpf/endpoint.js'
import type {DatapathNode} from '../datapath/devices.js'
import {netnsAlive} from '../datapath/netns.js'
import {deleteVeth} from '../datapath/veth.js'
import {runSweep, type SweepFailure} from '../flow/plan.js'
import {releaseIp, type HostIpamTarget} from '../ipam/host.js'
import {SyncGroup} from '../state/files.js'
import {deleteEndpoint, endpointKey, getEndpoint, type EndpointRecord} from './store.js'

export interface TeardownTarget {
  containerId: string
  ifname: string
  /** Pod netns if known and still there; the host side is found by name without it. */
  netns?: string
}

export interface TeardownOptions {
  /** Detach BPF (routing mode bpf): the node's bpffs root. */
  bpf?: Pick<DatapathNode, 'bpffsRoot'>
  /** Release the attachment's IPs (owner `<containerId>:<ifname>`) from this IPAM. */
  ipam?: HostIpamTarget
  log?: (m: string) => void
}

export interface TeardownResult {
  endpoint: boolean
  veth: boolean
  ips: string[]
  bpf: boolean
  errors: SweepFailure[]
}

/** Remove one attachment's parts, newest first; never throws (failures are in `errors`). */
export async function teardownEndpoint(runner: Runner, stateDir: string, t: TeardownTarget, opts: TeardownOptions = {}): Promise<TeardownResult> {
  const id = endpointKey(t.containerId, t.ifname)
  const out: TeardownResult = {endpoint: false, veth: false, ips: [], bpf: false, errors: []}
  const rec: EndpointRecord | undefined = await getEndpoint(stateDir, t.containerId, t.ifname).catch(() => undefined)
  let hostVethDeleted = false
  // The record's, the id's and the IPAM record's directory fsyncs, together at the end.
  const syncs = new SyncGroup()
  const steps = [
    {
      title: 'delete veth',
      run: async () => {
        let netns = t.netns ?? rec?.netns
        if (netns && !(await netnsAlive(netns))) netns = undefined
        const r = await deleteVeth(runner, {containerId: t.containerId, ifname: t.ifname, ...(netns ? {netns} : {})})
        out.veth = r.deleted
        hostVethDeleted = r.hostSide === true && r.hostIfname === rec?.hostIfname
      },
    },
    {
      title: 'detach bpf',
      skip: () => !opts.bpf || !rec,
      run: async () => {
        out.bpf = hostVethDeleted ? (await forgetEndpoint(runner, opts.bpf!, rec!)).changed : (await detachEndpoint(runner, opts.bpf!, rec!)).changed
      },
    },
    {
      title: 'delete endpoint',
      run: async () => {
        out.endpoint = (await deleteEndpoint(stateDir, t.containerId, t.ifname, syncs)).deleted
      },
    },
    {
      title: 'release ip',
      skip: () => !opts.ipam,
      run: async () => {
        out.ips = (await releaseIp({...opts.ipam!, syncs}, {owner: id})).released.map((a) => a.ip)
      },
    },
    {
      title: 'sync state',
      run: () => syncs.flush(),
    },
  ]
  out.errors = await runSweep(steps, id)
  for (const e of out.errors) opts.log?.(`teardown ${id}: ${e.step} failed: ${e.message}`)
  return out
}
