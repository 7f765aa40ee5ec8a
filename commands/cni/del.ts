import {BaseCommand} from '../../src/cli/base.js'
import {attachmentRequest} from '../../src/cli/cni-request.js'
import {cniArgsFlag, cniVersionFlag, containerIdFlag, ifnameFlag, netnsFlag} from '../../src/cli/flags.js'
import {cniDel, type DelResult} from '../../src/cni/del.js'

export type CniDelResult = DelResult

export default class CniDel extends BaseCommand<typeof CniDel, CniDelResult> {
  static summary = 'Detach a pod by hand: the CNI DEL (bpf entries, veth, endpoint, IP), idempotent.'
  static description = `Succeeds when any part is already gone, when --netns is omitted or no longer exists, and when run twice. The IP is released even without a netns.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --json',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    netns: netnsFlag(false),
    ifname: ifnameFlag(),
    'cni-version': cniVersionFlag('cniVersion of the request.'),
    args: cniArgsFlag(),
  }

  async execute(): Promise<CniDelResult> {
    const f = this.flags
    const req = await attachmentRequest('DEL', this.cni, f)
    return cniDel(req)
  }

  protected render(r: CniDelResult): string {
    if (r.keptLiveIn) return `${r.containerId}:${r.ifname}: kept, it is attached in ${r.keptLiveIn}, not in the netns this DEL names`
    const parts = [r.veth ? 'veth' : '', r.endpoint ? 'endpoint' : '', r.ips.length ? `ip ${r.ips.join(', ')}` : '', r.bpf ? 'bpf entries' : ''].filter(Boolean)
    return parts.length ? `deleted ${r.containerId}:${r.ifname}: ${parts.join(', ')}` : `${r.containerId}:${r.ifname}: nothing to delete (already gone)`
  }
}
