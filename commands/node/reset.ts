import {BaseCommand} from '../../src/cli/base.js'
import {runTasks} from '../../src/cli/tasks.js'
import {planNodeReset, type NodeResetResult} from '../../src/node/reset.js'

export type NodeResetCmdResult = NodeResetResult

export default class NodeReset extends BaseCommand<typeof NodeReset, NodeResetCmdResult> {
  static summary = 'Remove everything pn made on this node (and nothing else); safe to repeat.'
  static description = `Deletes the endpoints' veths and records, BPF attachments and the pins under the node's bpffs root,
pn_host/pn_net with their address and pod CIDR route, host-scope IPAM state and node.json, and releases the pod CIDR
to the cluster pool it came from. Sysctls are left as they are.`

  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /run/pn/lab1/node1 --json']

  async execute(): Promise<NodeResetCmdResult> {
    const plan = await planNodeReset(this.runner, this.stateDir)
    return runTasks(plan, {interactive: Boolean(process.stdout.isTTY) && !this.jsonEnabled(), action: 'reset node'})
  }

  protected render(r: NodeResetCmdResult): string {
    return r.changed ? ['removed:', ...r.removed.map((x) => `  ${x}`)].join('\n') : 'nothing to remove'
  }
}
