import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {PnError} from '../../src/errors.js'
import {detachEndpoint, unloadHostPrograms} from '../../src/datapath/bpf/index.js'
import {resolveEndpoint} from '../../src/datapath/bpf/resolve.js'
import {getEndpoint, saveEndpoint} from '../../src/endpoint/store.js'
import {requireNodeContext} from '../../src/node/context.js'

export interface BpfUnloadResult {
  target: 'host' | 'endpoint'
  changed: boolean
  detached?: {device: string; direction: string; program: string}[]
  unpinned?: boolean
  device?: string
  warnings: string[]
}

export default class BpfUnload extends BaseCommand<typeof BpfUnload, BpfUnloadResult> {
  static summary = 'Reverse `pn bpf load`: detach the node programs (--host) or one pod (--container-id).'
  static description = `Removes exactly what load added: pn's tc filters, the clsact qdiscs pn created (not ones that were
there before), the pod's map entries (only those still pointing at this pod), and with --host the pins —
kept while pods are still attached unless --force.`

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
    const node = await requireNodeContext(this.stateDir)
    if (f.host) {
      const r = await unloadHostPrograms(this.runner, node, this.stateDir, {force: f.force})
      return {target: 'host', changed: r.changed, detached: r.detached, unpinned: r.unpinned, warnings: r.warnings ?? []}
    }
    if (!f['container-id']) {
      throw new PnError('PN_INVALID_ARGUMENT', 'unload bpf: pass --host or --container-id', {hint: 'see `pn bpf unload --help`'})
    }
    const {endpoint} = await resolveEndpoint(this.runner, this.stateDir, {containerId: f['container-id'], ifname: f.ifname, netns: f.netns})
    const r = await detachEndpoint(this.runner, node, endpoint)
    const rec = await getEndpoint(this.stateDir, endpoint.containerId, endpoint.ifname)
    if (rec?.bpfAttached) await saveEndpoint(this.stateDir, {...rec, bpfAttached: false})
    return {target: 'endpoint', changed: r.changed, device: endpoint.hostIfname, warnings: r.warnings ?? []}
  }

  protected render(r: BpfUnloadResult): string {
    if (r.target === 'endpoint') return `${r.changed ? 'detached' : 'not attached'}: ${r.device}`
    const lines = [r.changed ? 'unloaded host programs' : 'host programs were not loaded']
    for (const d of r.detached ?? []) lines.push(`  detached ${d.program} from ${d.device} ${d.direction}`)
    if (r.unpinned) lines.push('  unpinned programs and maps')
    return lines.join('\n')
  }
}
