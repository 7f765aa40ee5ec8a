/**
 * GC (CNI 1.1.0): remove every pn attachment the runtime does not list as valid — endpoint
 * records, IP reservations whose owner looks like `<cid>:<ifname>`, and `lxc<hash>` veths — and
 * keep the listed ones. Each stale attachment is torn down under its own lock; errors do not
 * stop the sweep and are reported together at the end, as the spec asks.
 */
import {PnError} from '../errors.js'
import {deleteLinkByName, parseJson} from '../datapath/link.js'
import {hostIfnameFor} from '../datapath/veth.js'
import {listEndpoints} from '../endpoint/store.js'
import {listIps, ROUTER_OWNER} from '../ipam/host.js'
import {readNodeContext} from '../node/context.js'
import {teardownAttachment} from './del.js'
import {attachmentId, isAttachmentOwner} from './env.js'
import {withAttachmentLock} from './lock.js'
import type {NodeRequest} from './request.js'

export interface GcResult {
  kept: string[]
  removed: string[]
  strayLinks: string[]
  errors: {attachment: string; step: string; message: string}[]
}

const LXC_RE = /^lxc[0-9a-f]{12}$/

export async function cniGc(req: NodeRequest): Promise<GcResult> {
  const valid = new Set((req.conf.validAttachments ?? []).map((a) => attachmentId(a.containerId, a.ifname)))
  const out: GcResult = {kept: [], removed: [], strayLinks: [], errors: []}
  const node = await readNodeContext(req.stateDir)
  const seen = new Map<string, {containerId: string; ifname: string; netns?: string}>()
  for (const ep of await listEndpoints(req.stateDir)) seen.set(ep.id, {containerId: ep.containerId, ifname: ep.ifname, netns: ep.netns})
  if (node) {
    for (const a of await listIps({stateDir: req.stateDir})) {
      if (a.owner === ROUTER_OWNER || !isAttachmentOwner(a.owner) || seen.has(a.owner)) continue
      const i = a.owner.lastIndexOf(':')
      seen.set(a.owner, {containerId: a.owner.slice(0, i), ifname: a.owner.slice(i + 1)})
    }
  }
  for (const [id, t] of [...seen.entries()].sort()) {
    if (valid.has(id)) {
      out.kept.push(id)
      continue
    }
    const res = await withAttachmentLock(req.stateDir, t.containerId, t.ifname, () =>
      teardownAttachment(req.runner, req.stateDir, node, t, req.log))
    out.removed.push(id)
    for (const e of res.errors) out.errors.push({attachment: id, step: e.step, message: e.message})
  }
  // Veths whose attachment left no record at all (e.g. a crash between veth and endpoint).
  const keepNames = new Set([...valid].map((id) => {
    const i = id.lastIndexOf(':')
    return hostIfnameFor(id.slice(0, i), id.slice(i + 1))
  }))
  const r = await req.runner.run('ip', ['-j', 'link', 'show', 'type', 'veth'], {readOnly: true})
  for (const l of parseJson<{ifname: string}[]>(r.stdout, 'list veths') ?? []) {
    if (!LXC_RE.test(l.ifname) || keepNames.has(l.ifname)) continue
    try {
      if (await deleteLinkByName(req.runner, l.ifname)) out.strayLinks.push(l.ifname)
    } catch (err) {
      out.errors.push({attachment: l.ifname, step: 'delete veth', message: (err as Error).message})
    }
  }
  req.log(`gc: kept ${out.kept.length}, removed ${out.removed.length} attachment(s) and ${out.strayLinks.length} stray veth(s)`)
  if (out.errors.length > 0) {
    throw new PnError('PN_COMMAND_FAILED', `gc attachments: ${out.errors.map((e) => `${e.attachment} ${e.step}: ${e.message}`).join('; ')}`, {
      hint: 'GC is safe to rerun; the other stale attachments were removed',
      details: {...out},
    })
  }
  return out
}
