import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {dryRun, renderDryRun, type DryRunResult} from '../../src/cli/dry-run.js'
import {containerIdFlag, dryRunFlag, ifnameFlag} from '../../src/cli/flags.js'
import {loadBpf, type BpfLoadResult, type BpfTarget} from '../../src/node/bpf.js'

export type BpfLoadCmdResult = BpfLoadResult | DryRunResult<BpfLoadResult>

export default class BpfLoad extends BaseCommand<typeof BpfLoad, BpfLoadCmdResult> {
  static summary = 'Load the node programs (--host) or attach from-container to a pod (--container-id).'
  static description = `--host compiles (cached), loads and pins every program and map ONCE under the node's bpffs root, then attaches from-netdev/to-netdev to the uplink and to-host/from-host to pn_host. Maps a running node lacks (it was loaded by an older pn) are created and pinned first.

--container-id writes the pod's entries into pn_endpoints/pn_lxc/pn_ipcache and attaches the pinned from-container to its lxc ingress; it never compiles or loads programs.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --host',
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --ifname eth0 --json',
    '<%= config.bin %> <%= command.id %> --host --dry-run',
  ]

  static flags = {
    host: Flags.boolean({summary: 'Load and attach the node (uplink, pn_host) programs.', exclusive: ['container-id']}),
    'container-id': containerIdFlag(false),
    ifname: ifnameFlag(),
    netns: Flags.string({summary: 'Pod netns, to read its MAC/IPs when there is no endpoint record.'}),
    'dry-run': dryRunFlag(),
  }

  async execute(): Promise<BpfLoadCmdResult> {
    const f = this.flags
    const t: BpfTarget = {host: f.host, containerId: f['container-id'], ifname: f.ifname, netns: f.netns, sourceDir: this.entry.bpfDir}
    if (f['dry-run']) return dryRun(this.runner, this.stateDir, (d) => loadBpf(d.runner, d.stateDir, t))
    return loadBpf(this.runner, this.stateDir, t)
  }

  protected render(r: BpfLoadCmdResult): string {
    if ('dryRun' in r) return renderDryRun(r)
    if (r.target === 'host') {
      const lines = [`${r.changed ? 'loaded' : 'already loaded'}: programs and maps pinned under ${r.bpffsRoot}${r.cacheHit ? ' (compile cache hit)' : ''}`]
      if (r.createdMaps?.length) lines.push(`  created maps the node lacked: ${r.createdMaps.join(', ')}`)
      for (const a of r.attachments) lines.push(`  ${a.device.padEnd(16)} ${a.direction.padEnd(8)} ${a.program}`)
      return lines.join('\n')
    }
    return `${r.changed ? 'attached' : 'already attached'}: from-container on ${r.device} ingress for ${r.containerId}:${r.ifname} (${r.ips.join(', ')})`
  }
}
