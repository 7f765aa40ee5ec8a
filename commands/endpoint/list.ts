import {BaseCommand} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
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
    const rows = r.map((e) => [e.endpointId, e.id, e.hostIfname, e.ips.join(','), e.podNamespace && e.podName ? `${e.podNamespace}/${e.podName}` : '-', e.netns])
    return table(['ID', 'ENDPOINT', 'HOST IF', 'IPS', 'POD', 'NETNS'], rows)
  }
}
