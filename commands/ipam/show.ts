import {BaseCommand} from '../../src/cli/base.js'
import {showIpam, type RangeStatus} from '../../src/ipam/host.js'
import {table} from '../../src/cli/table.js'
import {targetFlags} from './alloc.js'

export type IpamShowResult = RangeStatus[]

export default class IpamShow extends BaseCommand<typeof IpamShow, IpamShowResult> {
  static summary = 'Show capacity, used and free addresses per pod CIDR.'
  static description = `Capacity counts the allocatable addresses: the pod CIDR without network and broadcast (IPv6: the first 65534 addresses, as Cilium). The router reservation counts as used.`
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --pod-cidr 10.0.1.0/24 --json']

  static flags = {
    ...targetFlags(),
  }

  async execute(): Promise<IpamShowResult> {
    const f = this.flags
    return showIpam(await this.ipam(f))
  }

  protected render(r: IpamShowResult): string {
    return table(
      ['CIDR', 'RANGE', 'ROUTER', 'CAPACITY', 'USED', 'FREE', 'PENDING'],
      r.map((s) => [s.cidr, `${s.firstIp}-${s.lastIp}`, s.routerIp, s.capacity, s.used, s.free, s.pending]),
    )
  }
}
