import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {poolFlag} from '../../src/cli/flags.js'
import {showPoolNode, type ShowPoolNodeResult} from '../../src/ipam/pool.js'

export type PoolShowResult = ShowPoolNodeResult

export default class PoolShow extends BaseCommand<typeof PoolShow, PoolShowResult> {
  static summary = "Show a node's pod CIDRs (PN_NODE_UNKNOWN if it has none)."
  static examples = ['<%= config.bin %> <%= command.id %> node-1', '<%= config.bin %> <%= command.id %> node-1 --json']

  static args = {node: Args.string({description: 'Node name.', required: true})}
  static flags = {pool: poolFlag()}

  async execute(): Promise<PoolShowResult> {
    return showPoolNode(await this.poolStore(this.flags.pool), this.args.node)
  }

  protected render(r: PoolShowResult): string {
    return `${r.name}: ${r.cidrs.join(', ')} (since ${r.allocatedAt})`
  }
}
