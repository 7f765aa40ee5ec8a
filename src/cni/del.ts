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
import {attachmentId} from './env.js'
import {removeAttachmentLock, withAttachmentLock} from './lock.js'
import type {CniRequest} from './request.js'

export type {TeardownResult} from '../endpoint/teardown.js'

export interface DelResult extends TeardownResult {
  containerId: string
  ifname: string
}

export async function cniDel(req: CniRequest): Promise<DelResult> {
  const id = attachmentId(req.containerId, req.ifname)
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, `delete attachment ${id}`, async () => {
    const node = await readNodeContext(req.stateDir)
    // A netns that is gone is fine (DEL after the pod died); one that is not a netns is a caller
    // error, reported after the host-side cleanup so that even then nothing leaks.
    const probe = req.netns ? await probeNetns(req.netns) : {state: 'missing' as const}
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
