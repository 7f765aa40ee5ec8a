import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {releaseIp, type ReleaseResult} from '../../src/ipam/host.js'
import {targetFlags} from './alloc.js'

export type IpamReleaseResult = ReleaseResult

export default class IpamRelease extends BaseCommand<typeof IpamRelease, IpamReleaseResult> {
  static summary = 'Release a pod IP, by address or by owner (idempotent).'
  static description = `Releasing an address or owner that holds nothing succeeds with changed: false (a CNI DEL can be called several times). The router reservation cannot be released here.`

  static examples = [
    '<%= config.bin %> <%= command.id %> 10.0.1.23',
    '<%= config.bin %> <%= command.id %> --owner pod1:eth0 --json',
  ]

  static args = {ip: Args.string({description: 'Address to release.'})}

  static flags = {
    ...targetFlags(),
    owner: Flags.string({summary: 'Release every address of this owner.'}),
  }

  async execute(): Promise<IpamReleaseResult> {
    const f = this.flags
    return releaseIp(await this.ipam(f), {ip: this.args.ip, owner: f.owner})
  }

  protected render(r: IpamReleaseResult): string {
    if (!r.changed) return 'nothing to release (unchanged)'
    return r.released.map((a) => `released ${a.ip} (${a.owner})`).join('\n')
  }
}
