import {BaseCommand} from '../../src/cli/base.js'
import {listServices, type ServiceListResult} from '../../src/service/index.js'

export type {ServiceListResult}

export default class ServiceList extends BaseCommand<typeof ServiceList, ServiceListResult> {
  static summary = "List the node's services: frontends, backends and per-service packet/connection counters."
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<ServiceListResult> {
    return listServices(this.runner, this.stateDir)
  }

  protected render(r: ServiceListResult): string {
    if (r.services.length === 0) return 'no services'
    const head = ['FRONTEND', 'BACKENDS', 'CONNECTIONS', 'PACKETS', 'REPLIES', 'ID']
    const rows = r.services.map((s) => [
      s.frontend,
      s.backends.map((b) => b.address).join(',') || '(none)',
      String(s.stats.connections),
      String(s.stats.packets),
      String(s.stats.replies),
      String(s.revNatIndex),
    ])
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
    const out = [head, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd())
    if (!r.inSync) out.push('warning: the service maps were re-created since this table was written; run `pn service apply` again')
    return out.join('\n')
  }
}
