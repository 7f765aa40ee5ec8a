import {Args} from '@oclif/core'
import {BaseCommand} from '../../../src/cli/base.js'
import {deletePeer, type PeerChangeResult} from '../../../src/node/peer.js'

export type NodePeerDeleteResult = PeerChangeResult

export default class NodePeerDelete extends BaseCommand<typeof NodePeerDelete, NodePeerDeleteResult> {
  static summary = 'Delete a peer added by `pn node peer add` and its pn_ipcache entries (an unknown name: changed false).'
  static examples = ['<%= config.bin %> <%= command.id %> node2', '<%= config.bin %> <%= command.id %> node2 --json']

  static args = {name: Args.string({description: 'The peer\'s name.', required: true})}

  async execute(): Promise<NodePeerDeleteResult> {
    return deletePeer(this.runner, this.stateDir, this.args.name)
  }

  protected render(r: NodePeerDeleteResult): string {
    return r.changed ? `deleted peer ${r.peer!.name} (${r.prefixes.join(', ') || 'no pn_ipcache entry left'})` : `no peer ${this.args.name} (unchanged)`
  }
}
