import {BaseCommand} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
import {bgpStatus, type BgpSession, type BgpStatusResult} from '../../src/routing/bgp.js'

export type BgpStatusCmdResult = BgpStatusResult

/** Sessions as a table plus what each announces and receives (shared with pn bgp up). */
export function renderSessions(sessions: BgpSession[]): string {
  if (sessions.length === 0) return '(no sessions)'
  const uptime = (s?: number) => (s === undefined ? '-' : s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`)
  return table(
    ['PEER', 'AS', 'STATE', 'SINCE', 'ANNOUNCED', 'RECEIVED'],
    sessions.map((s) => [
      s.peer ?? s.protocol,
      s.peerAs,
      s.bgpState + (s.lastError && !s.established ? ` (${s.lastError})` : ''),
      uptime(s.uptimeSeconds),
      s.announced.join(' ') || '-',
      s.received.map((r) => `${r.prefix} via ${r.nextHops.join(',') || '?'}`).join(' ') || '-',
    ]),
  )
}

export default class BgpStatus extends BaseCommand<typeof BgpStatus, BgpStatusCmdResult> {
  static summary = "Show this node's BGP sessions (state, uptime) and the prefixes announced and received."
  static description = 'Asks the node\'s bird through its control socket (birdc). A bird that is not running is reported as running: false.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /run/pn/lab5/n1 --json']

  async execute(): Promise<BgpStatusCmdResult> {
    return bgpStatus(this.runner, {stateDir: this.stateDir})
  }

  protected render(r: BgpStatusCmdResult): string {
    if (!r.running) return `bgp: no bird running for node ${r.node} (start it with pn bgp up)`
    return [`bird pid ${r.pid} for node ${r.node} (${r.config})`, renderSessions(r.sessions)].join('\n')
  }
}
