import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {describeIdentity, listIdentities, type IdentityRow} from '../../src/cluster/identities.js'
import {withClusterStore} from '../../src/cluster/store.js'

export type IdentityListResult = IdentityRow[]

export default class IdentityList extends BaseCommand<typeof IdentityList, IdentityListResult> {
  static summary = 'List security identities: reserved, allocated per label set (with their endpoints), and the CIDR ones policies name.'
  static examples = [
    '<%= config.bin %> <%= command.id %> --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> --json',
  ]

  static flags = {
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<IdentityListResult> {
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return (await listIdentities(store)).identities
    })
  }

  protected render(r: IdentityListResult): string {
    return table(['ID', 'KIND', 'ENDPOINTS', 'LABELS'], r.map((i) => [i.id, i.kind, i.kind === 'cluster' ? `${i.endpoints}${i.unusedSince ? ` (unused since ${i.unusedSince})` : ''}` : '', describeIdentity(i.labels)]), {right: [0]})
  }
}
