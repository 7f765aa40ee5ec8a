import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {PnError} from '../../src/errors.js'
import {attachEndpoint, loadHostPrograms, type HostLoadResult} from '../../src/datapath/bpf/index.js'
import {resolveEndpoint} from '../../src/datapath/bpf/resolve.js'
import {getEndpoint, saveEndpoint} from '../../src/endpoint/store.js'
import {requireNodeContext} from '../../src/node/context.js'

export type BpfLoadResult =
  | ({target: 'host'} & HostLoadResult)
  | {target: 'endpoint'; changed: boolean; containerId: string; ifname: string; device: string; ips: string[]; source: 'record' | 'kernel'}

export default class BpfLoad extends BaseCommand<typeof BpfLoad, BpfLoadResult> {
  static summary = 'Load the node programs (--host) or attach from-container to a pod (--container-id).'
  static description = `--host compiles (cached), loads and pins every program and map ONCE under the node's bpffs root,
then attaches from-netdev/to-netdev to the uplink and to-host/from-host to pn_host.
--container-id writes the pod's entries into pn_endpoints/pn_lxc/pn_ipcache and attaches the pinned
from-container to its lxc ingress; it never compiles or loads programs.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --host',
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --ifname eth0 --json',
  ]

  static flags = {
    host: Flags.boolean({summary: 'Load and attach the node (uplink, pn_host) programs.', exclusive: ['container-id']}),
    'container-id': containerIdFlag(false),
    ifname: ifnameFlag(),
    netns: Flags.string({summary: 'Pod netns, to read its MAC/IPs when there is no endpoint record.'}),
  }

  async execute(): Promise<BpfLoadResult> {
    const f = this.flags
    const node = await requireNodeContext(this.stateDir)
    if (f.host) return {target: 'host', ...(await loadHostPrograms(this.runner, node, this.stateDir))}
    if (!f['container-id']) {
      throw new PnError('PN_INVALID_ARGUMENT', 'load bpf: pass --host or --container-id', {hint: 'see `pn bpf load --help`'})
    }
    const {endpoint, source} = await resolveEndpoint(this.runner, this.stateDir, {containerId: f['container-id'], ifname: f.ifname, netns: f.netns})
    const r = await attachEndpoint(this.runner, node, endpoint)
    const rec = await getEndpoint(this.stateDir, endpoint.containerId, endpoint.ifname)
    if (rec && !rec.bpfAttached) await saveEndpoint(this.stateDir, {...rec, bpfAttached: true})
    return {target: 'endpoint', changed: r.changed, containerId: endpoint.containerId, ifname: endpoint.ifname, device: endpoint.hostIfname, ips: endpoint.ips, source}
  }

  protected render(r: BpfLoadResult): string {
    if (r.target === 'host') {
      const lines = [`${r.changed ? 'loaded' : 'already loaded'}: programs and maps pinned under ${r.bpffsRoot}${r.cacheHit ? ' (compile cache hit)' : ''}`]
      for (const a of r.attachments) lines.push(`  ${a.device.padEnd(16)} ${a.direction.padEnd(8)} ${a.program}`)
      return lines.join('\n')
    }
    return `${r.changed ? 'attached' : 'already attached'}: from-container on ${r.device} ingress for ${r.containerId}:${r.ifname} (${r.ips.join(', ')})`
  }
}
