import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {resetNode, type NodeResetResult} from '../../src/node/reset.js'
import {bgpResetStep} from '../../src/routing/bgp.js'
import {serviceResetStep} from '../../src/service/apply.js'

export type NodeResetCmdResult = NodeResetResult

export default class NodeReset extends BaseCommand<typeof NodeReset, NodeResetCmdResult> {
  static summary = 'Remove everything pn made on this node (and nothing else); safe to repeat.'
  static description = `Deletes the endpoints' veths and records, BPF attachments and the pins under the node's bpffs root, pn_host/pn_net with their address and pod CIDR route, host-scope IPAM state, the service table and node.json, and releases the pod CIDR to the cluster pool it came from (an etcds:// pool with --etcd-ca/--etcd-cert/--etcd-key, or PN_ETCD_*). Routes pn did not make, the uplink and sysctls are left as they are.`

  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /run/pn/lab1/node1 --json']

  static flags = {...etcdTlsFlags()}

  async execute(): Promise<NodeResetCmdResult> {
    return resetNode(this.runner, this.stateDir, {lock: this.lock, etcdTls: this.etcdTls, before: [bgpResetStep(this.stateDir), serviceResetStep(this.stateDir, this.lock)]}, (plan) => this.runSteps(plan, 'reset node'))
  }

  protected render(r: NodeResetCmdResult): string {
    return r.changed ? ['removed:', ...r.removed.map((x) => `  ${x}`)].join('\n') : 'nothing to remove'
  }
}
