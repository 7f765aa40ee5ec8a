/**
 * DEL: release everything of one attachment through the one teardown (src/endpoint/teardown.ts)
 * and succeed when any of it is already gone, when CNI_NETNS is empty or vanished, and when
 * called twice. Failures are reported together so the runtime retries.
 */
import {PnError} from '../errors.js'
import {probeNetns, requireNetns} from '../datapath/netns.js'
import {teardownEndpoint, type TeardownResult} from '../endpoint/teardown.js'
import {readNodeContext} from '../node/context.js'
import {ipamOf} from '../node/ipam.js'
import {getEndpoint} from '../endpoint/store.js'
import {attachmentId} from './env.js'
import {liveElsewhere} from './live.js'
import {removeAttachmentLock, withAttachmentLock} from './lock.js'
import type {CniRequest} from './request.js'

export type {TeardownResult} from '../endpoint/teardown.js'

export interface DelResult extends TeardownResult {
  containerId: string
  ifname: string
  /** Set when the attachment is alive in this other netns and the DEL (naming another) left it alone. */
  keptLiveIn?: string
}

export async function cniDel(req: CniRequest): Promise<DelResult> {
  const id = attachmentId(req.containerId, req.ifname)
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, `delete attachment ${id}`, async () => {
    const node = await readNodeContext(req.stateDir)
    // A netns that is gone is fine (DEL after the pod died); one that is not a netns is a caller
    // error, reported after the host-side cleanup so that even then nothing leaks.
    const probe = req.netns ? await probeNetns(req.netns) : {state: 'missing' as const}
    // The DEL a runtime sends after an ADD refused with PN_ENDPOINT_EXISTS names the other
    // sandbox: the live pod this (container id, ifname) attaches elsewhere is not its to remove.
    const rec = probe.state === 'ok' ? await getEndpoint(req.stateDir, req.containerId, req.ifname).catch(() => undefined) : undefined
    const live = rec ? await liveElsewhere(req.runner, rec, req.netns!) : undefined
    if (live) {
      req.log(`del ${id}: kept, it is attached in ${live.netns} (endpoint ${live.endpointId}), not in ${req.netns}`)
      return {endpoint: false, veth: false, ips: [], bpf: false, errors: [], containerId: req.containerId, ifname: req.ifname, keptLiveIn: live.netns}
    }
    const res = await teardownEndpoint(req.runner, req.stateDir, {
      containerId: req.containerId,
      ifname: req.ifname,
      ...(probe.state === 'ok' ? {netns: req.netns} : {}),
    }, {
      ...(node?.routing === 'bpf' ? {bpf: node} : {}),
      ...(node ? {ipam: ipamOf(node, req.stateDir, req.lock)} : {}),
      log: req.log,
    })
    req.log(`del ${id}: veth=${res.veth} endpoint=${res.endpoint} ips=[${res.ips.join(',')}] bpf=${res.bpf}`)
    if (res.errors.length > 0) {
      const first = res.errors[0]
      throw new PnError(first.code as PnError['code'], `delete attachment ${id}: ${res.errors.map((e) => e.message).join('; ')}`, {
        hint: 'DEL is safe to retry; fix the cause and run it again',
        details: {errors: res.errors},
      })
    }
    if (probe.state === 'invalid') await requireNetns(req.netns!)
    await removeAttachmentLock(req.stateDir, req.containerId, req.ifname)
    return {...res, containerId: req.containerId, ifname: req.ifname}
  }, req.lock)
}
