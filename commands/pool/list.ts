import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {listPool, type PoolNode} from '../../src/ipam/pool.js'

/** One entry per node holding pod CIDRs (the pool's cluster CIDRs and their use: `pn pool show`). */
export type PoolListResult = PoolNode[]

export default class PoolList extends BaseCommand<typeof PoolList, PoolListResult> {
  static summary = 'List the nodes that hold pod CIDRs from the cluster pool.'
  static description = 'The cluster CIDRs themselves, with used and free node blocks, are shown by `pn pool show` without a NODE.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --pool /run/pn/lab1/pool.json --json']

  static flags = {pool: poolFlag(), cluster: poolClusterFlag(), ...etcdTlsFlags()}

  async execute(): Promise<PoolListResult> {
    const r = await listPool(await this.poolStore(this.flags.pool, this.flags.cluster))
    this.warnings.push(...(r.warnings ?? []))
    return r.nodes
  }

  protected render(r: PoolListResult): string {
    if (r.length === 0) return '(no nodes)'
    return table(['NODE', 'POD CIDRS', 'SINCE'], r.map((n) => [n.name, n.cidrs.join(', '), n.allocatedAt]))
  }
}
