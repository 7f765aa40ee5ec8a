import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag, netnsFlag} from '../../src/cli/flags.js'
import {deleteVeth, type DeleteVethResult} from '../../src/node/veth.js'

export type VethDeleteResult = DeleteVethResult

export default class VethDelete extends BaseCommand<typeof VethDelete, VethDeleteResult> {
  static summary = 'Delete a pod veth pair and its endpoint record (succeeds when already gone).'
  static description = `Deleting the host side lxc<hash> removes the pod side and any host route through it. Like CNI DEL this succeeds when the link, the record or the netns no longer exist, so it is safe to repeat. When the node routes by BPF, the pod's map entries and tc filter go first (the same teardown as CNI DEL, without releasing IPs).`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --ifname eth0 --netns /run/netns/pod1 --json',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    ifname: ifnameFlag(),
    netns: netnsFlag(false),
  }

  async execute(): Promise<VethDeleteResult> {
    return deleteVeth(this.runner, this.stateDir, {
      containerId: this.flags['container-id'] as string,
      ifname: this.flags.ifname,
      netns: this.flags.netns,
    })
  }

  protected render(r: VethDeleteResult): string {
    if (!r.changed) return `${r.hostIfname}: nothing to delete (already gone)`
    return `deleted ${r.linkDeleted ? r.hostIfname : 'no link'}${r.endpointDeleted ? ' and its endpoint record' : ''}`
  }
}
