import {BaseCommand} from '../../src/cli/base.js'
import {listIps, type IpAllocation} from '../../src/ipam/host.js'
import {table} from '../../src/cli/table.js'
import {targetFlags} from './alloc.js'

export type IpamListResult = IpAllocation[]

export default class IpamList extends BaseCommand<typeof IpamList, IpamListResult> {
  static summary = 'List allocated pod IPs: address, owner, state, expiry.'
  static description = 'Pending allocations past their expiry are shown until the next change or `pn ipam gc` returns them.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --pod-cidr 10.0.1.0/24 --json']

  static flags = {
    ...targetFlags(),
  }

  async execute(): Promise<IpamListResult> {
    const f = this.flags
    return listIps(await this.ipam(f))
  }

  protected render(r: IpamListResult): string {
    return table(['IP', 'OWNER', 'STATE', 'EXPIRES'], r.map((a) => [a.ip, a.owner, a.state, a.expiresAt]))
  }
}
