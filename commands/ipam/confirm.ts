import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {confirmIp, type ConfirmResult} from '../../src/ipam/host.js'
import {ipFlag, targetFlags} from './alloc.js'
import {addressesOf} from './release.js'

export type IpamConfirmResult = ConfirmResult

export default class IpamConfirm extends BaseCommand<typeof IpamConfirm, IpamConfirmResult> {
  static summary = 'Confirm a pending allocation (made with --expiration) so it no longer expires.'
  static description = `What Cilium's CNI plugin does once the endpoint exists (StopExpirationTimer). Fails with PN_IPAM_NOT_ALLOCATED when an address is not allocated any more, e.g. because its expiry passed. The address may also be given without --ip (\`pn ipam confirm 10.0.1.23\`, the older form).`

  static examples = [
    '<%= config.bin %> <%= command.id %> --ip 10.0.1.23',
    '<%= config.bin %> <%= command.id %> --owner pod1:eth0 --json',
  ]

  static args = {ip: Args.string({description: 'Address to confirm (the same as --ip).'})}

  static flags = {
    ...targetFlags(),
    ip: ipFlag('Confirm this address (repeatable).'),
    owner: Flags.string({summary: 'Confirm every address of this owner.'}),
  }

  async execute(): Promise<IpamConfirmResult> {
    const f = this.flags
    return confirmIp(await this.ipam(f), {ip: addressesOf(f.ip, this.args.ip), owner: f.owner})
  }

  protected render(r: IpamConfirmResult): string {
    return r.allocations.map((a) => `${r.changed ? 'confirmed' : 'already ' + a.state}: ${a.ip} (${a.owner})`).join('\n')
  }
}
