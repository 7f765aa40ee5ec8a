import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {unloadBpf, type BpfUnloadResult} from '../../src/node/bpf.js'

export type {BpfUnloadResult} from '../../src/node/bpf.js'

export default class BpfUnload extends BaseCommand<typeof BpfUnload, BpfUnloadResult> {
  static summary = 'Reverse `pn bpf load`: detach the node programs (--host) or one pod (--container-id).'
  static description = `Removes exactly what load added: pn's tc filters, the clsact qdiscs pn created (not ones that were there before), the pod's map entries (only those still pointing at this pod), and with --host the pins — kept while pods are still attached unless --force.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --host --json',
  ]

  static flags = {
    host: Flags.boolean({summary: 'Detach the node programs and unpin programs and maps.', exclusive: ['container-id']}),
    'container-id': containerIdFlag(false),
    ifname: ifnameFlag(),
    netns: Flags.string({summary: 'Pod netns, to read its IPs when there is no endpoint record.'}),
    force: Flags.boolean({summary: 'With --host: unpin even while pods are attached.'}),
  }

  async execute(): Promise<BpfUnloadResult> {
    const f = this.flags
    return unloadBpf(this.runner, this.stateDir, {host: f.host, containerId: f['container-id'], ifname: f.ifname, netns: f.netns, force: f.force})
  }

  protected render(r: BpfUnloadResult): string {
    if (r.target === 'endpoint') return `${r.changed ? 'detached' : 'not attached'}: ${r.device}`
    const lines = [r.changed ? 'unloaded host programs' : 'host programs were not loaded']
    for (const d of r.detached ?? []) lines.push(`  detached ${d.program} from ${d.device} ${d.direction}`)
    if (r.unpinned) lines.push('  unpinned programs and maps')
    return lines.join('\n')
  }
}
