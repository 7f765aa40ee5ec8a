import {BaseCommand} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
import {listServices, type ServiceEntry} from '../../src/service/index.js'

/** One entry per service; `pn service apply` takes this list (or the whole --json output) as its file. */
export type ServiceListResult = ServiceEntry[]

export default class ServiceList extends BaseCommand<typeof ServiceList, ServiceListResult> {
  static summary = "List the node's services: frontends, backends and per-service packet/connection counters."
  static description = 'The --json output can be given back to `pn service apply` as its file: the counters and ids are ignored there.'
  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
    '<%= config.bin %> <%= command.id %> --json > services.json && <%= config.bin %> service apply services.json --dry-run',
  ]

  async execute(): Promise<ServiceListResult> {
    const {services, inSync} = await listServices(this.runner, this.stateDir)
    if (!inSync) this.warnings.push('the service maps were re-created since this table was written; run `pn service apply` again')
    return services
  }

  protected render(r: ServiceListResult): string {
    if (r.length === 0) return 'no services'
    const rows = r.map((s) => [
      s.frontend,
      s.backends.map((b) => b.address).join(',') || '(none)',
      s.stats.connections,
      s.stats.packets,
      s.stats.replies,
      s.revNatIndex,
    ])
    return table(['FRONTEND', 'BACKENDS', 'CONNECTIONS', 'PACKETS', 'REPLIES', 'ID'], rows, {right: [2, 3, 4]})
  }
}
