/**
 * DEL: release everything of one attachment — BPF entries, veth, endpoint record, IP — and
 * succeed when any of it is already gone, when CNI_NETNS is empty or vanished, and when called
 * twice (kubelet retries DEL for a long time, kubernetes#43014). Every part is attempted even
 * when an earlier one failed; the failures are reported together so the runtime retries.
 */
import {promises as fs} from 'node:fs'
import {PnError, toPnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {detachEndpoint} from '../datapath/bpf/index.js'
import {deleteVeth} from '../datapath/veth.js'
import {deleteEndpoint, getEndpoint, type EndpointRecord} from '../endpoint/store.js'
import {releaseIp} from '../ipam/host.js'
import {readNodeContext, type NodeContext} from '../node/context.js'
import {attachmentId} from './env.js'
import {attachmentLockFile, withAttachmentLock} from './lock.js'
import {probeNetns, requireNetns} from './netns.js'
import type {CniRequest} from './request.js'

export interface TeardownTarget {
  containerId: string
  ifname: string
  /** Pod netns if known and still there; the host side is found by name without it. */
  netns?: string
}

export interface TeardownResult {
  endpoint: boolean
  veth: boolean
  ips: string[]
  bpf: boolean
  errors: {step: string; code: string; message: string}[]
}

/** Remove one attachment's parts, newest first (bpf → veth → endpoint → IP); never throws. */
export async function teardownAttachment(
  runner: Runner,
  stateDir: string,
  node: NodeContext | undefined,
  t: TeardownTarget,
  log: (m: string) => void = () => {},
): Promise<TeardownResult> {
  const out: TeardownResult = {endpoint: false, veth: false, ips: [], bpf: false, errors: []}
  const attempt = async <T>(step: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn()
    } catch (err) {
      const pe = toPnError(err, `${step} ${attachmentId(t.containerId, t.ifname)}`)
      out.errors.push({step, code: pe.code, message: pe.message})
      log(`teardown ${attachmentId(t.containerId, t.ifname)}: ${step} failed: ${pe.message}`)
      return undefined
    }
  }
  const rec: EndpointRecord | undefined = await getEndpoint(stateDir, t.containerId, t.ifname).catch(() => undefined)
  if (node?.routing === 'bpf' && rec) {
    const r = await attempt('detach bpf', () => detachEndpoint(runner, node, rec))
    out.bpf = r?.changed ?? false
  }
  let netns = t.netns ?? rec?.netns
  if (netns && (await probeNetns(netns)).state !== 'ok') netns = undefined
  const v = await attempt('delete veth', () => deleteVeth(runner, {containerId: t.containerId, ifname: t.ifname, ...(netns ? {netns} : {})}))
  out.veth = v?.deleted ?? false
  const e = await attempt('delete endpoint', () => deleteEndpoint(stateDir, t.containerId, t.ifname))
  out.endpoint = e?.deleted ?? false
  // IPAM last, so an address is never handed out again while its old veth or map entry exists;
  // and always, even without a netns, so nothing leaks.
  if (node) {
    const r = await attempt('release ip', () => releaseIp({stateDir}, {owner: attachmentId(t.containerId, t.ifname)}))
    out.ips = r?.released.map((a) => a.ip) ?? []
  }
  return out
}

export interface DelResult extends TeardownResult {
  containerId: string
  ifname: string
}

export async function cniDel(req: CniRequest): Promise<DelResult> {
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, async () => {
    const node = await readNodeContext(req.stateDir)
    // A netns that is gone is fine (DEL after the pod died); one that is not a netns is a caller
    // error, reported after the host-side cleanup so that even then nothing leaks.
    const probe = req.netns ? await probeNetns(req.netns) : {state: 'missing' as const}
    const res = await teardownAttachment(req.runner, req.stateDir, node, {
      containerId: req.containerId,
      ifname: req.ifname,
      ...(probe.state === 'ok' ? {netns: req.netns} : {}),
    }, req.log)
    req.log(`del ${attachmentId(req.containerId, req.ifname)}: veth=${res.veth} endpoint=${res.endpoint} ips=[${res.ips.join(',')}] bpf=${res.bpf}`)
    if (res.errors.length > 0) {
      const first = res.errors[0]
      throw new PnError(first.code as PnError['code'], `delete attachment ${attachmentId(req.containerId, req.ifname)}: ${res.errors.map((e) => e.message).join('; ')}`, {
        hint: 'DEL is safe to retry; fix the cause and run it again',
        details: {errors: res.errors},
      })
    }
    if (probe.state === 'invalid') await requireNetns(req.netns!)
    await fs.rm(attachmentLockFile(req.stateDir, req.containerId, req.ifname) + '.lock', {force: true})
    return {...res, containerId: req.containerId, ifname: req.ifname}
  })
}
