import {BaseCommand} from '../../src/cli/base.js'
import {showNode, type NodeShowResult} from '../../src/node/show.js'

export type NodeShowCmdResult = NodeShowResult

export default class NodeShow extends BaseCommand<typeof NodeShow, NodeShowCmdResult> {
  static summary = 'Compare node.json with the kernel: devices, addresses, route, sysctls, bpffs, endpoints.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<NodeShowCmdResult> {
    return showNode(this.runner, this.stateDir)
  }

  protected render(r: NodeShowCmdResult): string {
    const n = r.node
    const lines = [
      `node ${n.name} (uplink ${n.uplink}, pod cidr ${n.podCidrs.join(', ')}, router ${n.routerIps.join(', ')}, mtu ${n.mtu}, routing ${n.routing}, tunnel ${n.tunnel ?? 'off'}, masquerade ${n.masquerade?.mode ?? 'off'})`,
      ...r.checks.map((c) => `  ${c.ok ? 'ok     ' : 'DRIFT  '} ${c.check}: ${c.ok ? c.actual : `expected ${c.expected}, found ${c.actual}`}`),
      r.ok ? 'everything matches node.json' : 'drift found: rerun `pn node init` to repair (or `pn node reset`)',
    ]
    return lines.join('\n')
  }
}
