import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {cniGc, type GcResult} from '../../src/cni/gc.js'
import {manualNodeRequest} from '../../src/cni/manual.js'
import {PnError} from '../../src/errors.js'

export type CniGcResult = GcResult

export default class CniGc extends BaseCommand<typeof CniGc, CniGcResult> {
  static summary = 'Remove every pn attachment not listed with --keep: the CNI GC.'
  static description = `Endpoint records, IP reservations owned by <container-id>:<ifname> and lxc veths of attachments that are not kept are removed. Without --keep every attachment goes.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --keep pod1:eth0 --keep pod2:eth0',
    '<%= config.bin %> <%= command.id %> --keep pod1:eth0 --json',
  ]

  static flags = {
    keep: Flags.string({summary: 'Attachment to keep, <container-id>:<ifname>.', multiple: true}),
  }

  async execute(): Promise<CniGcResult> {
    const keep = (this.flags.keep ?? []).map((k) => {
      const i = k.lastIndexOf(':')
      if (i <= 0) throw new PnError('PN_INVALID_ARGUMENT', `parse --keep ${k}: want <container-id>:<ifname>`, {hint: 'e.g. --keep pod1:eth0'})
      return {containerID: k.slice(0, i), ifname: k.slice(i + 1)}
    })
    const req = manualNodeRequest({
      command: 'GC',
      ...this.cni,
      extra: {'cni.dev/valid-attachments': keep},
      log: this.flags.verbose ? (m) => process.stderr.write(`${m}\n`) : undefined,
    })
    return cniGc(req)
  }

  protected render(r: CniGcResult): string {
    const head = `kept ${r.kept.length}, removed ${r.removed.length} attachment(s)${r.removed.length ? `: ${r.removed.join(', ')}` : ''}${r.strayLinks.length ? `; stray veths ${r.strayLinks.join(', ')}` : ''}`
    return [head, ...r.repaired.map((x) => `repaired ${x.subject} (${x.kind}): ${x.action}`)].join('\n')
  }
}
