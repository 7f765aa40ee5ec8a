import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {listPool, showPoolNode, type ListPoolResult, type ShowPoolNodeResult} from '../../src/ipam/pool.js'

/** With NODE: that node's pod CIDRs. Without: the pool (its cluster CIDRs with used/free blocks, and its nodes). */
export type PoolShowResult = ShowPoolNodeResult | ListPoolResult

export default class PoolShow extends BaseCommand<typeof PoolShow, PoolShowResult> {
  static summary = "Show the pool's cluster CIDRs and use, or a node's pod CIDRs (PN_NODE_UNKNOWN if it has none)."
  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> node-1',
    '<%= config.bin %> <%= command.id %> node-1 --json',
  ]

  static args = {node: Args.string({description: 'Node name; without it, the whole pool.'})}
  static flags = {pool: poolFlag(), cluster: poolClusterFlag(), ...etcdTlsFlags()}

  async execute(): Promise<PoolShowResult> {
    const store = await this.poolStore(this.flags.pool, this.flags.cluster)
    return this.args.node === undefined ? listPool(store) : showPoolNode(store, this.args.node)
  }

  protected render(r: PoolShowResult): string {
    if ('name' in r) return `${r.name}: ${r.cidrs.join(', ')} (since ${r.allocatedAt})`
    const cidrs = table(
      ['CLUSTER CIDR', 'NODE MASK', 'USED', 'FREE', 'NEXT'],
      r.clusterCidrs.map((c) => [c.cidr, `/${c.maskSize}`, c.used, c.free, c.nextCandidate]),
      {right: [2, 3, 4]},
    )
    const nodes = r.nodes.length === 0 ? '(no nodes)' : table(['NODE', 'POD CIDRS'], r.nodes.map((n) => [n.name, n.cidrs.join(', ')]))
    return `pool ${r.pool}\n${cidrs}\n\n${nodes}`
  }
}
