import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
import {bgpUp, type BgpUpResult} from '../../src/routing/bgp.js'
import {renderSessions} from './status.js'

export type BgpUpCmdResult = BgpUpResult

export default class BgpUp extends BaseCommand<typeof BgpUp, BgpUpCmdResult> {
  static summary = "Announce the node's pod CIDRs to BGP peers (ToR, route reflector) through the node's own bird2."
  static description = `Writes <state-dir>/bgp/bird.conf and starts bird for this node (its own control socket and pid file under <state-dir>/bgp/). Run it inside the node's network namespace (ip netns exec NODE pn bgp up …), after pn node init. Only the pod CIDRs are announced, with the uplink address as next hop; nothing learned leaks. With --import, routes learned from the peers (the other nodes' pod CIDRs) are installed in this node's kernel table (proto bird): use it when the node has no default route through a router that knows every pod CIDR. Running it again with the same flags changes nothing; with other flags bird is reconfigured (birdc configure) and the sessions to peers that stay are kept. A peer that does not answer is a session state (see pn bgp status).`

  static examples = [
    '<%= config.bin %> <%= command.id %> --local-as 65001 --peer 10.99.0.1 --peer-as 65000',
    '<%= config.bin %> <%= command.id %> --local-as 65001 --peer 10.99.0.1 --peer 10.99.0.254 --peer-as 65000 --import',
    'ip netns exec pn-lab-n1 <%= config.bin %> <%= command.id %> --local-as 65001 --peer 10.99.0.1 --peer-as 65000 --state-dir /run/pn/lab5/n1 --json',
  ]

  static flags = {
    'local-as': Flags.string({summary: "This node's AS number (1-4294967294).", required: true}),
    peer: Flags.string({summary: 'Address of a BGP peer (router); repeatable.', required: true, multiple: true, multipleNonGreedy: true}),
    'peer-as': Flags.string({summary: "Peer AS number: once for every peer, or once per --peer in the same order.", required: true, multiple: true, multipleNonGreedy: true}),
    'router-id': Flags.string({summary: 'BGP router id (default: the uplink IPv4 address).'}),
    import: Flags.boolean({summary: "Install routes learned from peers (other nodes' pod CIDRs) into this node's kernel table."}),
  }

  async execute(): Promise<BgpUpCmdResult> {
    const f = this.flags
    return bgpUp(this.runner, {
      stateDir: this.stateDir,
      localAs: f['local-as'],
      peers: f.peer,
      peerAs: f['peer-as'],
      routerId: f['router-id'],
      importRoutes: f.import,
    })
  }

  protected render(r: BgpUpCmdResult): string {
    const head = {started: `started bird (pid ${r.pid})`, reconfigured: `reconfigured bird (pid ${r.pid})`, unchanged: `bird already running with this config (pid ${r.pid}, unchanged)`}[r.action]
    return [
      `${head} for node ${r.node}: AS ${r.localAs}, router id ${r.routerId}, announcing ${r.announces.join(', ') || '(nothing)'}${r.importRoutes ? ', importing learned routes' : ''}`,
      table(['PEER', 'AS'], r.peers.map((p) => [p.address, p.as])),
      '',
      renderSessions(r.sessions),
    ].join('\n')
  }
}
