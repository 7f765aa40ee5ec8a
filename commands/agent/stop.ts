import {Flags} from '@oclif/core'
import {stopAgentProcess, type StopAgentResult} from '../../src/agent/lifecycle.js'
import {BaseCommand} from '../../src/cli/base.js'

export type AgentStopResult = StopAgentResult

export default class AgentStop extends BaseCommand<typeof AgentStop, AgentStopResult> {
  static summary = "Stop the node agent gracefully: it finishes the requests in flight, then exits."
  static description = `Sends SIGTERM and waits for the agent to exit. New CNI calls fall back to the standalone path at once (the socket goes first). Idempotent: with no agent running it reports changed: false.`

  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --state-dir /tmp/node1 --json']

  static flags = {
    'timeout-ms': Flags.integer({summary: 'How long to wait for the requests in flight.', default: 60_000, min: 1}),
  }

  async execute(): Promise<AgentStopResult> {
    return stopAgentProcess(this.stateDir, this.flags['timeout-ms'])
  }

  protected render(r: AgentStopResult): string {
    return r.changed ? `stopped agent ${r.pid}` : 'no agent was running'
  }
}
