import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {listClusterServices, type ClusterServiceEntry} from '../../src/cluster/services.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {listServices, type ServiceEntry} from '../../src/service/index.js'

/** One entry per service; `pn service apply` takes this list (or the whole --json output) as its file. */
export type ServiceListResult = ServiceEntry[] | ClusterServiceEntry[]

export default class ServiceList extends BaseCommand<typeof ServiceList, ServiceListResult> {
  static summary = "List the node's services: frontends, backends and per-service packet/connection counters."
  static description = 'The --json output can be given back to `pn service apply` as its file: the counters and ids are ignored there. With --cluster: the cluster store\'s table (what every agent applies), without counters.'
  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
    '<%= config.bin %> <%= command.id %> --json > services.json && <%= config.bin %> service apply services.json --dry-run',
    '<%= config.bin %> <%= command.id %> --cluster etcd://10.0.0.5:2379/pn',
  ]

  static flags = {
    cluster: Flags.string({summary: 'List the cluster store\'s table instead of the node\'s.'}),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<ServiceListResult> {
    if (this.flags.cluster !== undefined) {
      return withClusterStore(this.flags.cluster, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
        this.warnings.push(...store.warnings)
        const r = await listClusterServices(store)
        if (!r.consistent) this.warnings.push(`the cluster's service table at revision ${r.revision} does not add up to its digest (a torn or hand-edited table); agents do not apply it`)
        return r.services
      })
    }
    const {services, inSync} = await listServices(this.runner, this.stateDir)
    if (!inSync) this.warnings.push('the service maps were re-created since this table was written; run `pn service apply` again')
    return services
  }

  protected render(r: ServiceListResult): string {
    if (r.length === 0) return 'no services'
    if (!('stats' in r[0])) return table(['FRONTEND', 'BACKENDS'], (r as ClusterServiceEntry[]).map((s) => [s.frontend, s.backends.join(',') || '(none)']))
    const rows = (r as ServiceEntry[]).map((s) => [
      s.via ? `${s.frontend} (via ${s.via})` : s.nodePort !== undefined ? `${s.frontend} (NodePort ${s.nodePort}${s.externalTrafficPolicy ? ', Local' : ''})` : s.frontend,
      s.backends.map((b) => b.address).join(',') || '(none)',
      s.stats.connections,
      s.stats.packets,
      s.stats.replies,
      s.revNatIndex,
    ])
    return table(['FRONTEND', 'BACKENDS', 'CONNECTIONS', 'PACKETS', 'REPLIES', 'ID'], rows, {right: [2, 3, 4]})
  }
}
