/**
 * GC (CNI 1.1.0): remove every pn attachment the runtime does not list as valid — endpoint
 * records, IP reservations and endpoint ids whose owner looks like `<cid>:<ifname>`, and
 * `lxc<hash>` veths — and keep the listed ones. Each stale attachment is torn down through the
 * one teardown under its own lock; errors do not stop the sweep and are reported together at
 * the end, as the spec asks. Endpoint ids taken by an ADD that was killed before it wrote its
 * record are reclaimed here too.
 */
import {PnError} from '../errors.js'
import {deleteLinkByName} from '../datapath/link.js'
import {podDevices} from '../datapath/sweep.js'
import {hostIfnameFor} from '../datapath/veth.js'
import {endpointIdOwners, listEndpoints, releaseEndpointId} from '../endpoint/store.js'
import {teardownEndpoint} from '../endpoint/teardown.js'
import {listIps, ROUTER_OWNER} from '../ipam/host.js'
import {checkConsistency, repairInconsistencies} from '../node/consistency.js'
import {readNodeContext} from '../node/context.js'
import {ipamOf} from '../node/ipam.js'
import {withNodeShared} from '../node/lock.js'
import {attachmentId, isAttachmentOwner} from './env.js'
import {withAttachmentFileLock} from './lock.js'
import type {NodeRequest} from './request.js'

export interface GcResult {
  kept: string[]
  removed: string[]
  strayLinks: string[]
  /** What the consistency check found and fixed (stale map entries, routes, IPs, missing entries). */
  repaired: {subject: string; kind: string; action: string}[]
  errors: {attachment: string; step: string; message: string}[]
}

function splitOwner(owner: string): {containerId: string; ifname: string} {
  const i = owner.lastIndexOf(':')
  return {containerId: owner.slice(0, i), ifname: owner.slice(i + 1)}
}

export async function cniGc(req: NodeRequest): Promise<GcResult> {
  return withNodeShared(req.stateDir, 'gc attachments', () => gc(req))
}

async function gc(req: NodeRequest): Promise<GcResult> {
  const valid = new Set((req.conf.validAttachments ?? []).map((a) => attachmentId(a.containerId, a.ifname)))
  const out: GcResult = {kept: [], removed: [], strayLinks: [], repaired: [], errors: []}
  const node = await readNodeContext(req.stateDir)
  const ipam = node ? ipamOf(node, req.stateDir, req.lock) : undefined
  const seen = new Map<string, {containerId: string; ifname: string; netns?: string}>()
  for (const ep of await listEndpoints(req.stateDir)) seen.set(ep.id, {containerId: ep.containerId, ifname: ep.ifname, netns: ep.netns})
  if (ipam) {
    for (const a of await listIps(ipam)) {
      if (a.owner === ROUTER_OWNER || !isAttachmentOwner(a.owner) || seen.has(a.owner)) continue
      seen.set(a.owner, splitOwner(a.owner))
    }
  }
  for (const [id, t] of [...seen.entries()].sort()) {
    if (valid.has(id)) {
      out.kept.push(id)
      continue
    }
    const res = await withAttachmentFileLock(req.stateDir, t.containerId, t.ifname, () =>
      teardownEndpoint(req.runner, req.stateDir, t, {...(node?.routing === 'bpf' ? {bpf: node} : {}), ...(ipam ? {ipam} : {}), log: req.log}), req.lock)
    out.removed.push(id)
    for (const e of res.errors) out.errors.push({attachment: id, step: e.step, message: e.message})
  }
  // Endpoint ids whose owner has no record any more (an ADD killed between id and record).
  const records = new Set((await listEndpoints(req.stateDir)).map((e) => e.id))
  for (const {id, owner} of await endpointIdOwners(req.stateDir)) {
    if (records.has(owner) || valid.has(owner) || !isAttachmentOwner(owner)) continue
    const t = splitOwner(owner)
    await withAttachmentFileLock(req.stateDir, t.containerId, t.ifname, async () => {
      // Re-checked under the attachment's lock: an ADD in flight holds it until its record exists.
      if (!(await listEndpoints(req.stateDir)).some((e) => e.id === owner)) await releaseEndpointId(req.stateDir, owner, id)
    }, req.lock)
  }
  // Veths whose attachment left no record at all (e.g. a crash between veth and endpoint).
  const keepNames = new Set([...valid].map((id) => {
    const t = splitOwner(id)
    return hostIfnameFor(t.containerId, t.ifname)
  }))
  for (const name of await podDevices(req.runner)) {
    if (keepNames.has(name)) continue
    try {
      if (await deleteLinkByName(req.runner, name)) out.strayLinks.push(name)
    } catch (err) {
      out.errors.push({attachment: name, step: 'delete veth', message: (err as Error).message})
    }
  }
  // Then the consistency check over what is left: map entries, routes and IPs no record explains
  // are removed, records without their lxc torn down, a kept endpoint's missing parts written again.
  if (node) {
    const found = await checkConsistency(req.runner, req.stateDir, node)
    const fixed = await repairInconsistencies(req.runner, req.stateDir, node, found, {lock: req.lock, log: req.log, teardownRecordsWithoutLink: true, keep: valid})
    out.repaired.push(...fixed.repaired)
    for (const e of fixed.errors) out.errors.push({attachment: e.subject, step: `repair ${e.kind}`, message: e.message})
  }
  req.log(`gc: kept ${out.kept.length}, removed ${out.removed.length} attachment(s) and ${out.strayLinks.length} stray veth(s), repaired ${out.repaired.length} inconsistenc${out.repaired.length === 1 ? 'y' : 'ies'}`)
  if (out.errors.length > 0) {
    throw new PnError('PN_COMMAND_FAILED', `gc attachments: ${out.errors.map((e) => `${e.attachment} ${e.step}: ${e.message}`).join('; ')}`, {
      hint: 'GC is safe to rerun; the other stale attachments were removed',
      details: {...out},
    })
  }
  return out
}
