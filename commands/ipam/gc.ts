import {BaseCommand} from '../../src/cli/base.js'
import {gcIps, type GcResult} from '../../src/ipam/host.js'
import {targetFlags} from './alloc.js'

export type IpamGcResult = GcResult

export default class IpamGc extends BaseCommand<typeof IpamGc, IpamGcResult> {
  static summary = 'Return expired pending allocations to the pool now.'
  static description = 'Every change to the IPAM state does this first anyway; gc does only this.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --pod-cidr 10.0.1.0/24 --json']

  static flags = {
    ...targetFlags(),
  }

  async execute(): Promise<IpamGcResult> {
    const f = this.flags
    return gcIps(await this.ipam(f))
  }

  protected render(r: IpamGcResult): string {
    if (r.released.length === 0) return 'no expired allocations'
    return r.released.map((a) => `released ${a.ip} (${a.owner}, expired ${a.expiresAt})`).join('\n')
  }
}
