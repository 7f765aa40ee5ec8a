/** The flags → CniRequest wiring shared by `pn cni add|del|check` (one place, one behaviour). */
import {manualRequest} from '../cni/manual.js'
import type {CniRequest} from '../cni/request.js'
import type {CniCommand} from '../cni/spec.js'
import type {Runner} from '../exec/runner.js'
import type {RequestDefaults} from '../cni/protocol.js'

export interface AttachmentFlags {
  'container-id'?: string
  ifname: string
  netns?: string
  'cni-version'?: string
  args?: string
  verbose?: boolean
}

export function attachmentRequest(
  command: CniCommand,
  ctx: {stateDir: string; runner: Runner; defaults?: RequestDefaults},
  f: AttachmentFlags,
  extra?: Record<string, unknown>,
): Promise<CniRequest> {
  return manualRequest({
    command,
    stateDir: ctx.stateDir,
    runner: ctx.runner,
    cniVersion: f['cni-version'],
    args: f.args,
    // required by each command's flag definition; oclif has enforced it
    containerId: f['container-id'] as string,
    ifname: f.ifname,
    netns: f.netns,
    ...(extra ? {extra} : {}),
    log: f.verbose ? (m) => process.stderr.write(`${m}\n`) : undefined,
    ...(ctx.defaults ? {defaults: ctx.defaults} : {}),
  })
}
