import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../../src/cli/base.js'
import {addPeer, type PeerChangeResult} from '../../../src/node/peer.js'

export type NodePeerAddResult = PeerChangeResult

export default class NodePeerAdd extends BaseCommand<typeof NodePeerAdd, NodePeerAddResult> {
  static summary = "Add another node by hand: its pod CIDRs go into pn_ipcache with its node IP (tunnel mode needs nothing else)."
  static description = 'For labs without a cluster store (the cluster agent writes remote pods itself). Re-adding the same peer changes nothing; a new node IP or CIDR list replaces the old one. Refused: a pod CIDR overlapping this node\'s or another peer\'s (PN_CIDR_CONFLICT), a node in --routing host-routes (no pn_ipcache).'
  static examples = [
    '<%= config.bin %> <%= command.id %> node2 --node-ip 192.168.2.10 --pod-cidr 10.0.2.0/24',
    '<%= config.bin %> <%= command.id %> node2 --node-ip 192.168.2.10 --pod-cidr 10.0.2.0/24 --pod-cidr fd00:2::/64 --json',
  ]

  static args = {name: Args.string({description: 'The other node\'s name.', required: true})}
  static flags = {
    'node-ip': Flags.string({summary: "The other node's IP (the tunnel endpoint in tunnel mode).", required: true}),
    'pod-cidr': Flags.string({summary: "The other node's pod CIDR (repeat once per family).", multiple: true, multipleNonGreedy: true, required: true}),
  }

  async execute(): Promise<NodePeerAddResult> {
    return addPeer(this.runner, this.stateDir, {name: this.args.name, nodeIp: this.flags['node-ip'], podCidrs: this.flags['pod-cidr']})
  }

  protected render(r: NodePeerAddResult): string {
    const p = r.peer!
    return r.changed ? `peer ${p.name}: ${p.podCidrs.join(', ')} via node ${p.nodeIp} (in pn_ipcache)` : `peer ${p.name} unchanged`
  }
}
