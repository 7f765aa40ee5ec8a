/**
 * Reconcile the node's state dir with the kernel after a reboot (or anything else that took the
 * pods' namespaces and veths away while the state dir stayed): every endpoint record whose pod
 * netns AND host-side veth are both gone is torn down through the one teardown — BPF entries,
 * record, endpoint id, then its IPs — and reported. `pn node init` runs it, and so will the agent
 * at start. containerd 1.6/1.7 never send CNI GC, so without this an old pod's IP would stay held
 * forever; host-local has the same leak unless its dataDir is on tmpfs.
 *
 * Endpoints with only one of the two gone are kept and reported as `suspect`: a live netns with no
 * veth is a broken pod its runtime still knows (its DEL will clean up), and a veth without its
 * netns path is an ADD or DEL in flight. Each endpoint is checked again under its attachment lock,
 * so a concurrent ADD/DEL of the same pod is never interleaved with. Then the consistency check
 * (consistency.ts) repairs the rest: map entries, lxc devices, routes and IPs no record explains,
 * and the missing map entries and routes of live endpoints.
 */
import {getLink} from '../datapath/link.js'
import {netnsAlive} from '../datapath/netns.js'
import {listEndpoints, getEndpoint, type EndpointRecord} from '../endpoint/store.js'
import {teardownEndpoint} from '../endpoint/teardown.js'
import type {Runner} from '../exec/runner.js'
import {PnError} from '../errors.js'
import type {LockOptions} from '../state/files.js'
import type {NodeContext} from './context.js'
import {checkConsistency, repairInconsistencies} from './consistency.js'
import {ipamOf} from './ipam.js'
import {withAttachmentFileLock} from './lock.js'

export interface ReconcileOptions {
  runner: Runner
  /** Checked between endpoints: an interrupted reconcile leaves each endpoint whole or reaped. */
  signal?: AbortSignal
  lock?: LockOptions
  log?: (m: string) => void
}

export interface ReapedEndpoint {
  id: string
  containerId: string
  ifname: string
  netns: string
  hostIfname: string
  /** The addresses returned to the pool. */
  ips: string[]
}

export interface ReconcileResult {
  reaped: ReapedEndpoint[]
  /** Endpoints whose netns and host device are both there. */
  kept: number
  /** Endpoints with only one of the two gone: kept, for their runtime's DEL (or CNI GC). */
  suspect: {id: string; reason: string}[]
  /** What the consistency check then found and fixed (consistency.ts): stale map entries, orphan lxc devices and IPs, missing parts of live endpoints. */
  repaired?: {subject: string; kind: string; action: string}[]
  /** Teardown steps that failed (the rest of the sweep went on; rerunning is safe). */
  errors: {id: string; step: string; message: string}[]
}

type Liveness = {netns: boolean; device: boolean}

async function liveness(runner: Runner, ep: EndpointRecord): Promise<Liveness> {
  const [netns, link] = await Promise.all([netnsAlive(ep.netns).catch(() => false), getLink(runner, ep.hostIfname)])
  return {netns, device: link !== undefined}
}

/** Reap the endpoints of `node` (state in `stateDir`) whose pod netns and host veth are both gone. */
export async function reconcileNode(stateDir: string, node: NodeContext, opts: ReconcileOptions): Promise<ReconcileResult> {
  const repaired: NonNullable<ReconcileResult['repaired']> = []
  const out: ReconcileResult = {reaped: [], kept: 0, suspect: [], repaired, errors: []}
  const ipam = ipamOf(node, stateDir, opts.lock)
  for (const ep of await listEndpoints(stateDir)) {
    if (opts.signal?.aborted) {
      throw new PnError('PN_INTERRUPTED', `reconcile node ${node.name}: interrupted after ${out.reaped.length} reaped endpoint(s)`, {
        hint: 'rerun pn node init: what was reaped stays reaped, the rest is checked again',
        details: {...out},
      })
    }
    const first = await liveness(opts.runner, ep)
    if (first.netns && first.device) {
      out.kept++
      continue
    }
    if (first.netns || first.device) {
      out.suspect.push({id: ep.id, reason: first.netns ? `netns ${ep.netns} is there but ${ep.hostIfname} is gone` : `${ep.hostIfname} is there but netns ${ep.netns} is gone`})
      continue
    }
    await withAttachmentFileLock(stateDir, ep.containerId, ep.ifname, async () => {
      // Again under the attachment's lock: a DEL may have finished, or an ADD re-created it.
      const now = await getEndpoint(stateDir, ep.containerId, ep.ifname).catch(() => undefined)
      if (!now || now.createdAt !== ep.createdAt) return
      const again = await liveness(opts.runner, now)
      if (again.netns || again.device) {
        out.kept++
        return
      }
      const res = await teardownEndpoint(opts.runner, stateDir, {containerId: now.containerId, ifname: now.ifname}, {
        ...(node.routing === 'bpf' ? {bpf: node} : {}),
        ipam,
        ...(opts.log ? {log: opts.log} : {}),
      })
      out.reaped.push({id: now.id, containerId: now.containerId, ifname: now.ifname, netns: now.netns, hostIfname: now.hostIfname, ips: res.ips})
      for (const e of res.errors) out.errors.push({id: now.id, step: e.step, message: e.message})
      opts.log?.(`reconcile: reaped ${now.id} (netns ${now.netns} and ${now.hostIfname} gone), released ${res.ips.join(', ') || 'no address'}`)
    }, opts.lock)
  }
  // Then both directions of the consistency check. Records without their lxc stay (the suspects
  // above, for their runtime's DEL or `pn cni gc`); everything else is repaired.
  const found = await checkConsistency(opts.runner, stateDir, node)
  const fixed = await repairInconsistencies(opts.runner, stateDir, node, found, {...(opts.lock ? {lock: opts.lock} : {}), ...(opts.log ? {log: opts.log} : {})})
  repaired.push(...fixed.repaired)
  for (const e of fixed.errors) out.errors.push({id: e.subject, step: `repair ${e.kind}`, message: e.message})
  return out
}
