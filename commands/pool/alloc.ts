import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {allocatePodCidrs, type AllocatePodCidrsResult} from '../../src/ipam/pool.js'

export type PoolAllocResult = AllocatePodCidrsResult

export default class PoolAlloc extends BaseCommand<typeof PoolAlloc, PoolAllocResult> {
  static summary = 'Give a node its pod CIDR (one per family); the same one again if it has one.'
  static description = `The first cluster CIDR that is not full is used; inside it blocks go round-robin from a cursor that release does not rewind, so a released block is reused only after the others (Kubernetes cidrset).`

  static examples = ['<%= config.bin %> <%= command.id %> node-1', '<%= config.bin %> <%= command.id %> node-2 --pool /run/pn/lab1/pool.json --json']

  static args = {node: Args.string({description: 'Node name.', required: true})}
  static flags = {pool: poolFlag(), cluster: poolClusterFlag(), ...etcdTlsFlags()}

  async execute(): Promise<PoolAllocResult> {
    return allocatePodCidrs(await this.poolStore(this.flags.pool, this.flags.cluster), this.args.node)
  }

  protected render(r: PoolAllocResult): string {
    return `${r.changed ? 'allocated' : 'already allocated (unchanged)'}: ${r.node} -> ${r.cidrs.join(', ')}`
  }
}
