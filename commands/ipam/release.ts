import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import type {ReleaseResult} from '../../src/ipam/host.js'
import {releaseNodeIps} from '../../src/node/ipam.js'
import {ipFlag, targetFlags} from './alloc.js'

export type IpamReleaseResult = ReleaseResult

/** `--ip` (repeatable) and the positional address (the older form, kept as an alias): one list. */
export function addressesOf(flag: string[] | undefined, positional: string | undefined): string[] | undefined {
  const all = [...(flag ?? []), ...(positional === undefined ? [] : [positional])]
  return all.length > 0 ? all : undefined
}

export default class IpamRelease extends BaseCommand<typeof IpamRelease, IpamReleaseResult> {
  static summary = 'Release pod IPs, by address or by owner (idempotent).'
  static description = `Releasing an address or owner that holds nothing succeeds with changed: false (a CNI DEL can be called several times). The router reservation cannot be released here. An address a live endpoint holds (its owner has an endpoint record, or a record lists the address) is refused with PN_IPAM_IN_USE naming the endpoint: delete the pod first, or pass --force if you mean to free it while the pod still uses it. The address may also be given without --ip (\`pn ipam release 10.0.1.23\`, the older form).`

  static examples = [
    '<%= config.bin %> <%= command.id %> --ip 10.0.1.23',
    '<%= config.bin %> <%= command.id %> --ip 10.0.1.23 --ip fd00:1::17 --json',
    '<%= config.bin %> <%= command.id %> --owner pod1:eth0 --json',
    '<%= config.bin %> <%= command.id %> --ip 10.0.1.23 --force',
  ]

  static args = {ip: Args.string({description: 'Address to release (the same as --ip).'})}

  static flags = {
    ...targetFlags(),
    ip: ipFlag('Release this address (repeatable).'),
    owner: Flags.string({summary: 'Release every address of this owner.'}),
    force: Flags.boolean({summary: 'Release even what a live endpoint holds (the pod keeps using the address).'}),
  }

  async execute(): Promise<IpamReleaseResult> {
    const f = this.flags
    return releaseNodeIps(await this.ipam(f), {ip: addressesOf(f.ip, this.args.ip), owner: f.owner}, {force: f.force})
  }

  protected render(r: IpamReleaseResult): string {
    if (!r.changed) return 'nothing to release (unchanged)'
    return r.released.map((a) => `released ${a.ip} (${a.owner})`).join('\n')
  }
}
