/**
 * ADD, Cilium's order done by pn: check the netns → `ipam alloc` (owner `<cid>:<ifname>`, with
 * an expiry) → `veth create` → endpoint record → `bpf load` (routing bpf) → confirm the IP →
 * result. Each step pushes its inverse on an undo stack; any failure unwinds all of them, so a
 * failed ADD leaves no IP, veth, endpoint or map entry. The same plan runs plainly (protocol
 * mode) or under listr2 (`pn cni add` on a TTY).
 */
import {PnError} from '../errors.js'
import {attachEndpoint, detachEndpoint} from '../datapath/bpf/index.js'
import {getLink} from '../datapath/link.js'
import type {Plan} from '../flow/plan.js'
import {deleteVeth, hostIfnameFor, setupVeth, type VethResult} from '../datapath/veth.js'
import {allocateEndpointId, deleteEndpoint, endpointRecordFor, getEndpoint, saveEndpoint, type EndpointRecord} from '../endpoint/store.js'
import {allocateIp, confirmIp, releaseIp, type IpAllocation} from '../ipam/host.js'
import {requireNodeContext, type NodeContext} from '../node/context.js'
import {teardownAttachment} from './del.js'
import {attachmentId} from './env.js'
import {withAttachmentLock} from './lock.js'
import {requireNetns} from './netns.js'
import {ADD_STEPS, type AddStep, type CniRequest} from './request.js'
import {buildResult} from './result.js'
import type {CniResult} from './spec.js'
import {checkpoint, runningFlow} from '../flow/interrupt.js'
import {UndoStack, withRollbackDetails} from '../flow/undo.js'

/** Cilium's IPAMExpiration: an ADD that dies mid-way gets its IP back after this. */
export const DEFAULT_IPAM_EXPIRATION_MS = 10 * 60 * 1000

export interface AddState {
  node?: NodeContext
  leftover?: boolean
  allocations?: IpAllocation[]
  veth?: VethResult
  endpoint?: EndpointRecord
  bpfAttached?: boolean
}

function injectFailure(req: CniRequest, step: AddStep): void {
  if (req.failAfter === step) {
    throw new PnError('PN_CNI_INJECTED_FAILURE', `add attachment ${attachmentId(req.containerId, req.ifname)}: injected failure after ${step}`, {
      hint: `unset PN_CNI_FAIL_AFTER (one of ${ADD_STEPS.join(', ')})`,
    })
  }
}

/**
 * An interface named like ours already in the netns is removed only when it is pn's leftover of
 * this very attachment (its veth peer is our `lxc<hash>`), e.g. an ADD retried after a crash —
 * Cilium deletes it too. Anything else is someone else's interface: the spec requires an error.
 */
async function checkExistingInterface(req: CniRequest, state: AddState): Promise<void> {
  const pod = await getLink(req.runner, req.ifname, req.netns)
  const stale = await getEndpoint(req.stateDir, req.containerId, req.ifname).catch(() => undefined)
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
  if (pod || stale) {
    state.leftover = true
    req.log(`add ${attachmentId(req.containerId, req.ifname)}: removing pn's leftover of this attachment first`)
    const res = await teardownAttachment(req.runner, req.stateDir, state.node, {containerId: req.containerId, ifname: req.ifname, netns: req.netns}, req.log)
    if (res.errors.length > 0) {
      throw new PnError(res.errors[0].code as PnError['code'], `add attachment ${attachmentId(req.containerId, req.ifname)}: remove leftover: ${res.errors.map((e) => e.message).join('; ')}`, {
        hint: `run DEL for this attachment (pn cni del --container-id ${req.containerId} --ifname ${req.ifname}) and retry`,
        details: {errors: res.errors},
      })
    }
  }
}

/** The ADD as a plan of titled steps (for listr2) sharing one undo stack. */
export function addPlan(req: CniRequest): Plan<CniResult> & {state: AddState; undo: UndoStack} {
  const state: AddState = {}
  const undo = new UndoStack()
  const owner = attachmentId(req.containerId, req.ifname)
  const ipamTarget = {stateDir: req.stateDir}
  const step = async (name: AddStep | 'prepare', fn: () => Promise<void>) => {
    req.onStep?.({step: name, state: 'start'})
    await fn()
    req.onStep?.({step: name, state: 'done'})
    if (name !== 'prepare') injectFailure(req, name)
  }
  const requested = req.conf.argsIps.length > 0 ? req.conf.argsIps : req.args.ips
  const steps = [
    {
      title: `check netns ${req.netns} and the node`,
      run: () => step('prepare', async () => {
        state.node = await requireNodeContext(req.stateDir)
        await requireNetns(req.netns!)
        await checkExistingInterface(req, state)
      }),
    },
    {
      title: `ipam: allocate a pod IP for ${owner}`,
      run: () => step('ipam', async () => {
        const r = await allocateIp(ipamTarget, {
          owner,
          ...(requested.length > 0 ? {ip: requested} : {}),
          expirationMs: req.conf.ipamExpirationMs ?? DEFAULT_IPAM_EXPIRATION_MS,
        })
        undo.push('release ip', () => releaseIp(ipamTarget, {owner}))
        state.allocations = r.allocations
      }),
    },
    {
      title: `veth: create ${hostIfnameFor(req.containerId, req.ifname)} <-> ${req.ifname}`,
      run: () => step('veth', async () => {
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
      }),
    },
    {
      title: 'endpoint: write the endpoint record',
      run: () => step('endpoint', async () => {
        const node = state.node!
        const veth = state.veth!
        const endpointId = await allocateEndpointId(req.stateDir, owner)
        const rec = endpointRecordFor(veth, {
          containerId: req.containerId,
          ifname: req.ifname,
          endpointId,
          routerIps: node.routerIps,
          podName: req.args.podName,
          podNamespace: req.args.podNamespace,
          podUid: req.args.podUid,
          // Written once, before the attach: the undo stack removes the record if the attach fails.
          bpfAttached: node.routing === 'bpf',
        })
        undo.push('delete endpoint', () => deleteEndpoint(req.stateDir, req.containerId, req.ifname))
        await saveEndpoint(req.stateDir, rec)
        state.endpoint = rec
      }),
    },
    {
      title: 'bpf: attach from-container and write endpoint map entries',
      skip: () => (state.node && state.node.routing !== 'bpf' ? `routing is ${state.node.routing}` : false),
      run: () => step('bpf', async () => {
        const node = state.node!
        undo.push('detach bpf', () => detachEndpoint(req.runner, node, state.endpoint!))
        await attachEndpoint(req.runner, node, state.endpoint!)
        state.bpfAttached = true
      }),
    },
    {
      title: 'ipam: confirm the pod IP',
      run: () => step('confirm', async () => {
        if (state.node!.routing !== 'bpf') injectFailure(req, 'bpf')
        await confirmIp(ipamTarget, {owner})
      }),
    },
  ]
  return {
    steps,
    state,
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
    rollback: () => undo.unwind(),
  }
}

/** Run the ADD plan (plainly, or through `run` e.g. listr2), under the attachment lock. */
export async function cniAdd(
  req: CniRequest,
  run?: (plan: ReturnType<typeof addPlan>) => Promise<CniResult>,
): Promise<CniResult> {
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, async () => {
    const plan = addPlan(req)
    const action = `add attachment ${attachmentId(req.containerId, req.ifname)}`
    const started = Date.now()
    let result: CniResult
    if (run) {
      result = await run(plan)
    } else {
      result = await runningFlow(async () => {
        try {
          for (const s of plan.steps) {
            await checkpoint(action)
            const skip = s.skip?.()
          if (skip) {
              req.onStep?.({step: 'bpf', state: 'skipped', detail: String(skip)})
              // A skipped step still honours fault injection, so tests cover every mode.
              continue
            }
            await s.run()
          }
          await checkpoint(action)
        } catch (err) {
          const failures = await plan.rollback()
          const undone = failures.length === 0 ? 'cleanly' : failures.map((f) => `${f.step}: ${f.message}`).join('; ')
          req.log(`add ${attachmentId(req.containerId, req.ifname)} failed, undone: ${undone}`)
          throw withRollbackDetails(err, failures, action)
        }
        return plan.result()
      })
    }
    req.log(`add ${attachmentId(req.containerId, req.ifname)}: ${state(plan.state)} in ${Date.now() - started} ms`)
    return result
  })
}

function state(s: AddState): string {
  return `ips=[${(s.allocations ?? []).map((a) => a.ip).join(',')}] host=${s.veth?.hostIfname} endpoint=${s.endpoint?.endpointId} bpf=${s.bpfAttached ?? false}${s.leftover ? ' (replaced leftover)' : ''}`
}
