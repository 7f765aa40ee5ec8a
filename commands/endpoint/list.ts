import {BaseCommand} from '../../src/cli/base.js'
import {listEndpoints, type EndpointRecord} from '../../src/endpoint/store.js'

export type EndpointListResult = EndpointRecord[]

export default class EndpointList extends BaseCommand<typeof EndpointList, EndpointListResult> {
  static summary = 'List endpoint records.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<EndpointListResult> {
    return listEndpoints(this.stateDir)
  }

  protected render(r: EndpointListResult): string {
    if (r.length === 0) return 'no endpoints'
    const rows = r.map((e) => [String(e.endpointId), e.id, e.hostIfname, e.ips.join(',') || '-', e.podNamespace && e.podName ? `${e.podNamespace}/${e.podName}` : '-', e.netns])
    const head = ['ID', 'ENDPOINT', 'HOST IF', 'IPS', 'POD', 'NETNS']
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
    return [head, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
  }
}
