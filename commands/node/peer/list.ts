import {BaseCommand} from '../../../src/cli/base.js'
import {listPeers, type PeerListResult} from '../../../src/node/peer.js'

export type NodePeerListResult = PeerListResult

export default class NodePeerList extends BaseCommand<typeof NodePeerList, NodePeerListResult> {
  static summary = 'List the peers added by hand, and whether pn_ipcache holds their pod CIDRs.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<NodePeerListResult> {
    return listPeers(this.runner, this.stateDir)
  }

  protected render(r: NodePeerListResult): string {
    if (r.length === 0) return 'no peers'
    return [...r.map((p) => `  ${p.name.padEnd(12)} node ${p.nodeIp.padEnd(15)} ${p.podCidrs.join(', ')}${p.inIpcache ? '' : '  (NOT in pn_ipcache: add it again)'}`)].join('\n')
  }
}
