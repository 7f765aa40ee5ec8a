import {BaseCommand} from '../../src/cli/base.js'
import {poolFlag} from '../../src/cli/flags.js'
import {listPool, type ListPoolResult} from '../../src/ipam/pool.js'
import {table} from '../../src/ipam/render.js'

export type PoolListResult = ListPoolResult

export default class PoolList extends BaseCommand<typeof PoolList, PoolListResult> {
  static summary = 'List the cluster CIDRs (used/free node blocks) and the nodes with their pod CIDRs.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --pool /run/pn/lab1/pool.json --json']

  static flags = {pool: poolFlag()}

  async execute(): Promise<PoolListResult> {
    return listPool(await this.poolStore(this.flags.pool))
  }

  protected render(r: PoolListResult): string {
    const cidrs = table(
      ['CLUSTER CIDR', 'NODE MASK', 'USED', 'FREE', 'NEXT'],
      r.clusterCidrs.map((c) => [c.cidr, `/${c.maskSize}`, c.used, c.free, c.nextCandidate]),
    )
    const nodes = r.nodes.length === 0 ? '(no nodes)' : table(['NODE', 'POD CIDRS'], r.nodes.map((n) => [n.name, n.cidrs.join(', ')]))
    return `pool ${r.pool}\n${cidrs}\n\n${nodes}`
  }
}
