import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {releasePodCidrs, type ReleasePodCidrsResult} from '../../src/ipam/pool.js'

export type PoolReleaseResult = ReleasePodCidrsResult

export default class PoolRelease extends BaseCommand<typeof PoolRelease, PoolReleaseResult> {
  static summary = "Give a node's pod CIDRs back to the pool (a node without any: changed false)."
  static examples = ['<%= config.bin %> <%= command.id %> node-1', '<%= config.bin %> <%= command.id %> node-1 --json']

  static args = {node: Args.string({description: 'Node name.', required: true})}
  static flags = {pool: poolFlag(), cluster: poolClusterFlag(), ...etcdTlsFlags()}

  async execute(): Promise<PoolReleaseResult> {
    return releasePodCidrs(await this.poolStore(this.flags.pool, this.flags.cluster), this.args.node)
  }

  protected render(r: PoolReleaseResult): string {
    return r.changed ? `released ${r.released.join(', ')} from ${r.node}` : `nothing to release for ${r.node} (unchanged)`
  }
}
