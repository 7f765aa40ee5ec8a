import {agentStatus, type AgentStatus} from '../../src/agent/lifecycle.js'
import {BaseCommand} from '../../src/cli/base.js'

export type AgentStatusResult = AgentStatus

function clusterLine(c: NonNullable<NonNullable<AgentStatus['stats']>['cluster']>): string {
  const store = c.store === 'connected' ? `connected since ${c.since}` : `retrying since ${c.since}${c.error ? ` (${c.error})` : ''}`
  return `cluster ${String(c.location)}: store ${store}; applied revision ${c.appliedRevision ?? '-'}; ${String(c.queued)} publication(s) queued${c.servicesError ? `; service table refused: ${String(c.servicesError)}` : ''}`
}

export default class AgentStatusCommand extends BaseCommand<typeof AgentStatusCommand, AgentStatusResult> {
  static summary = "Show whether a node agent serves this node, and its counters (requests, queue, memory)."
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /tmp/node1 --json']

  async execute(): Promise<AgentStatusResult> {
    return agentStatus(this.stateDir)
  }

  protected render(r: AgentStatusResult): string {
    if (!r.running) return `no agent on ${r.socket} (CNI calls run standalone)`
    const s = r.stats
    if (!s) return `agent ${r.pid} is starting or stopping`
    return [
      `agent ${s.pid} on ${s.socket} since ${s.startedAt}${s.draining ? ' (draining)' : ''}`,
      `requests: ${s.served} served, ${s.inflight} in flight, ${s.queued} queued, ${s.refused} refused, ${s.hangups} interrupted by a client hang-up, ${s.fallbacks} sent to the standalone path`,
      `connections: ${s.connections} open`,
      `memory: ${(s.rssBytes / 1048576).toFixed(1)} MiB RSS`,
      ...(s.cluster ? [clusterLine(s.cluster)] : []),
    ].join('\n')
  }
}
