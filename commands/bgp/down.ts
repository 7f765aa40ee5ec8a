import {BaseCommand} from '../../src/cli/base.js'
import {bgpDown, type BgpDownResult} from '../../src/routing/bgp.js'

export type BgpDownCmdResult = BgpDownResult

export default class BgpDown extends BaseCommand<typeof BgpDown, BgpDownCmdResult> {
  static summary = "Stop this node's bird (its peers withdraw the pod CIDRs) and remove its files; safe to repeat."
  static description = `Signals the bird named by <state-dir>/bgp/bird.pid (only if that process really is this node's bird), waits for it to exit, and removes <state-dir>/bgp/. Never looks for other birds by name.`

  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /run/pn/lab5/n1 --json']

  async execute(): Promise<BgpDownCmdResult> {
    return bgpDown({stateDir: this.stateDir})
  }

  protected render(r: BgpDownCmdResult): string {
    if (!r.changed) return 'no bird running for this node (unchanged)'
    return [r.stopped ? `stopped bird (pid ${r.stopped})` : 'no bird was running', ...r.removed.map((f) => `removed ${f}`)].join('\n')
  }
}
