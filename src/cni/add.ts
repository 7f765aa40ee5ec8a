/**
 * ADD, Cilium's order done by pn: the node → `ipam alloc` (owner `<cid>:<ifname>`, with an
 * expiry) → `veth create` → endpoint record → `bpf load` (routing bpf) → confirm the IP →
 * result. Each step pushes its inverse on the plan's undo stack; any failure (or an interrupt)
 * unwinds all of them, so a failed ADD leaves no IP, veth, endpoint or map entry. The plan runs
 * through the one flow runner, plainly (protocol mode) or under listr2 (`pn cni add` on a TTY).
 * The netns was checked once, when the request was built (protocol.ts / manual.ts).
 */
import {PnError} from '../errors.js'
import {attachPod as attachEndpoint, detachPod as detachEndpoint} from '../datapath/bpf/endpoint.js'
import {getLink} from '../datapath/link.js'
import {deleteVeth, hostIfnameFor, setupVeth, type VethResult} from '../datapath/veth.js'
import {allocateEndpointId, deleteEndpoint, endpointRecordFor, getEndpoint, saveEndpoint, type EndpointRecord} from '../endpoint/store.js'
import {teardownEndpoint} from '../endpoint/teardown.js'
import {runPlan, UndoStack, type FlowOptions, type Plan} from '../flow/plan.js'
import {allocateIp, confirmIp, releaseIp, type HostIpamTarget, type IpAllocation} from '../ipam/host.js'
import {requireNodeContext, type NodeContext} from '../node/context.js'
import {SyncGroup} from '../state/files.js'
import {ipamOf} from '../node/ipam.js'
import {attachmentId} from './env.js'
import {liveElsewhere} from './live.js'
import {withAttachmentLock} from './lock.js'
import {ADD_STEPS, type AddStep, type CniRequest} from './request.js'
import {buildResult} from './result.js'
import type {CniResult} from './spec.js'

/** Cilium's IPAMExpiration: an ADD that dies mid-way gets its IP back after this. */
export const DEFAULT_IPAM_EXPIRATION_MS = 10 * 60 * 1000

export interface AddState {
  node?: NodeContext
  ipam?: HostIpamTarget
  leftover?: boolean
  allocations?: IpAllocation[]
  veth?: VethResult
  endpoint?: EndpointRecord
  bpfAttached?: boolean
}

/**
 * An interface named like ours already in the netns is removed only when it is pn's leftover of
 * this very attachment (its veth peer is our `lxc<hash>`), e.g. an ADD retried after a crash —
 * Cilium deletes it too. Anything else is someone else's interface: the spec requires an error.
 * A record of this attachment that is alive in another netns is not a leftover but a running pod:
 * PN_ENDPOINT_EXISTS (live.ts). Into the same netns, the attachment is replaced.
 */
async function removeOwnLeftover(req: CniRequest, state: AddState): Promise<void> {
  const stale = await getEndpoint(req.stateDir, req.containerId, req.ifname).catch(() => undefined)
  const live = stale && req.netns ? await liveElsewhere(req.runner, stale, req.netns) : undefined
  if (live) {
    const id = attachmentId(req.containerId, req.ifname)
    throw new PnError('PN_ENDPOINT_EXISTS', `add attachment ${id}: endpoint ${live.endpointId} already attaches ${live.containerId} (${live.ifname}) in ${live.netns}, a live netns other than ${req.netns}`, {
      hint: `a container id and ifname name one attachment: DEL it first (pn cni del --container-id ${live.containerId} --ifname ${live.ifname}), or use another CNI_IFNAME`,
      details: {containerId: live.containerId, ifname: live.ifname, netns: live.netns, endpointId: live.endpointId, requestedNetns: req.netns},
    })
  }
  const pod = await getLink(req.runner, req.ifname, req.netns)
  if (pod) {
    const hostName = hostIfnameFor(req.containerId, req.ifname)
    const host = await getLink(req.runner, hostName)
    const ours = !!host && pod.linkinfo?.info_kind === 'veth' && pod.link_index === host.ifindex && host.link_index === pod.ifindex
    if (!ours) {
      throw new PnError('PN_LINK_EXISTS', `add attachment ${attachmentId(req.containerId, req.ifname)}: interface ${req.ifname} already exists in ${req.netns}`, {
        hint: 'the pod already has an interface of that name that pn did not create; use another CNI_IFNAME (--ifname) or remove it',
        details: {ifname: req.ifname, netns: req.netns, kind: pod.linkinfo?.info_kind},
      })
    }
  }
  if (!pod && !stale) return
  state.leftover = true
  req.log(`add ${attachmentId(req.containerId, req.ifname)}: removing pn's leftover of this attachment first`)
  const node = state.node!
  const res = await teardownEndpoint(req.runner, req.stateDir, {containerId: req.containerId, ifname: req.ifname, netns: req.netns}, {
    ...(node.routing === 'bpf' ? {bpf: node} : {}),
    ipam: state.ipam,
    log: req.log,
  })
  if (res.errors.length > 0) {
    throw new PnError(res.errors[0].code as PnError['code'], `add attachment ${attachmentId(req.containerId, req.ifname)}: remove leftover: ${res.errors.map((e) => e.message).join('; ')}`, {
      hint: `run DEL for this attachment (pn cni del --container-id ${req.containerId} --ifname ${req.ifname}) and retry`,
      details: {errors: res.errors},
    })
  }
}

/** The ADD as a plan of titled steps sharing one undo stack. */
export function addPlan(req: CniRequest): Plan<CniResult> & {state: AddState; syncs: SyncGroup} {
  const state: AddState = {}
  // The directory fsyncs of the IPAM records, the endpoint id and the endpoint record, run
  // together once, before the ADD answers (src/state/files.ts SyncGroup): one group commit
  // instead of five in a row. Each file's data is fsync'd before its rename as always.
  const syncs = new SyncGroup()
  const undo = new UndoStack()
  const owner = attachmentId(req.containerId, req.ifname)
  const requested = req.conf.argsIps.length > 0 ? req.conf.argsIps : req.args.ips
  const steps = [
    {
      title: 'read the node and remove a leftover of this attachment',
      run: async () => {
        state.node = await requireNodeContext(req.stateDir)
        state.ipam = {...ipamOf(state.node, req.stateDir, req.lock), syncs}
        await removeOwnLeftover(req, state)
      },
    },
    {
      title: `ipam: allocate a pod IP for ${owner}`,
      run: async () => {
        const ipam = state.ipam!
        const r = await allocateIp(ipam, {
          owner,
          ...(requested.length > 0 ? {ip: requested} : {}),
          expirationMs: req.conf.ipamExpirationMs ?? DEFAULT_IPAM_EXPIRATION_MS,
        })
        undo.push('release ip', () => releaseIp(ipam, {owner}))
        state.allocations = r.allocations
      },
    },
    {
      title: `veth: create ${hostIfnameFor(req.containerId, req.ifname)} <-> ${req.ifname}`,
      run: async () => {
        const node = state.node!
        state.veth = await setupVeth(req.runner, {
          containerId: req.containerId,
          ifname: req.ifname,
          netns: req.netns!,
          mtu: node.mtu,
          ips: state.allocations!.map((a) => a.ip),
          routerIps: node.routerIps,
          routeMtu: node.routeMtu,
          hostRoutes: node.routing === 'host-routes',
        })
        undo.push('delete veth', () => deleteVeth(req.runner, {containerId: req.containerId, ifname: req.ifname}))
      },
    },
    {
      title: 'endpoint: write the endpoint record',
      run: async () => {
        const node = state.node!
        const endpointId = await allocateEndpointId(req.stateDir, owner, syncs)
        undo.push('delete endpoint', () => deleteEndpoint(req.stateDir, req.containerId, req.ifname))
        const rec = endpointRecordFor(state.veth!, {
          containerId: req.containerId,
          ifname: req.ifname,
          endpointId,
          routerIps: node.routerIps,
          podName: req.args.podName,
          podNamespace: req.args.podNamespace,
          podUid: req.args.podUid,
          labels: req.conf.labels,
          // Written once, before the attach: the undo stack removes the record if the attach fails.
          bpfAttached: node.routing === 'bpf',
        })
        await saveEndpoint(req.stateDir, rec, syncs)
        state.endpoint = rec
      },
    },
    {
      title: 'bpf: attach from-container and write endpoint map entries',
      skip: () => (state.node && state.node.routing !== 'bpf' ? `routing is ${state.node.routing}` : false),
      run: async () => {
        const node = state.node!
        undo.push('detach bpf', () => detachEndpoint(req.runner, node, state.endpoint!))
        // setupVeth just created the host veth: no qdisc on it yet.
        await attachEndpoint(req.runner, node, state.endpoint!, {freshDevice: true})
        state.bpfAttached = true
      },
    },
    {
      title: 'ipam: confirm the pod IP',
      run: async () => {
        await confirmIp(state.ipam!, {owner})
        // Everything the ADD wrote is durable before it reports success.
        await syncs.flush()
      },
    },
  ]
  return {
    steps,
    state,
    syncs,
    undo,
    result: () => {
      const veth = state.veth!
      return buildResult(req.conf.cniVersion, {
        hostIfname: veth.hostIfname,
        hostMac: veth.hostMac,
        podIfname: veth.podIfname,
        podMac: veth.podMac,
        netns: req.netns!,
        mtu: veth.mtu,
        ips: state.allocations!.map((a) => a.ip),
        routerIps: state.node!.routerIps,
      }, req.conf.dns ?? {})
    },
  }
}

/** PN_CNI_FAIL_AFTER: fail right after the named step (skipped steps count: every mode is covered). */
function injectFailure(req: CniRequest, owner: string): FlowOptions['afterStep'] {
  if (!req.failAfter) return undefined
  return (index) => {
    const step: AddStep | undefined = index === 0 ? undefined : ADD_STEPS[index - 1]
    if (step && step === req.failAfter) {
      throw new PnError('PN_CNI_INJECTED_FAILURE', `add attachment ${owner}: injected failure after ${step}`, {
        hint: `unset PN_CNI_FAIL_AFTER (one of ${ADD_STEPS.join(', ')})`,
      })
    }
  }
}

/** Run the ADD plan (plainly, or through `run`, e.g. listr2) under the node and attachment locks. */
export async function cniAdd(
  req: CniRequest,
  run?: (plan: Plan<CniResult>, action: string, flow: FlowOptions) => Promise<CniResult>,
): Promise<CniResult> {
  const owner = attachmentId(req.containerId, req.ifname)
  const action = `add attachment ${owner}`
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, action, async () => {
    const plan = addPlan(req)
    const started = Date.now()
    const flow: FlowOptions = {signal: req.signal, ...req.flow, afterStep: injectFailure(req, owner)}
    let result: CniResult
    try {
      result = await (run ?? runPlan)(plan, action, flow)
    } catch (err) {
      // What the undo stack released is durable too before the error is reported.
      await plan.syncs.flush().catch(() => undefined)
      const failures = (err as PnError).details?.rollbackErrors as {step: string; message: string}[] | undefined
      req.log(`${action} failed, undone: ${failures?.length ? failures.map((f) => `${f.step}: ${f.message}`).join('; ') : 'cleanly'}`)
      throw err
    }
    req.log(`add ${owner}: ${describe(plan.state)} in ${Date.now() - started} ms`)
    return result
  }, req.lock)
}

function describe(s: AddState): string {
  return `ips=[${(s.allocations ?? []).map((a) => a.ip).join(',')}] host=${s.veth?.hostIfname} endpoint=${s.endpoint?.endpointId} bpf=${s.bpfAttached ?? false}${s.leftover ? ' (replaced leftover)' : ''}`
}
