import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {initCluster, type InitClusterResult} from '../../src/cluster/store.js'

export type ClusterInitResult = InitClusterResult & {warnings?: string[]}

export default class ClusterInit extends BaseCommand<typeof ClusterInit, ClusterInitResult> {
  static summary = 'Create a cluster store: write its schema key (idempotent; a store with a newer schema is refused).'
  static description = 'The store holds the cluster\'s nodes, endpoints and services (docs/CLUSTER.md). On etcd its keys sit under <prefix>/cluster/, beside the pool\'s <prefix>/pool/, so the same location given to --pool names the cluster\'s pool; in a directory the pool is <dir>/cluster-pool.json. Create the pool with pn pool init as before.'

  static examples = [
    '<%= config.bin %> <%= command.id %> --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> --cluster etcds://10.0.0.5:2379/pn --etcd-ca ca.pem --etcd-cert node.pem --etcd-key node-key.pem',
    '<%= config.bin %> <%= command.id %> --cluster /run/pn/lab07 --json',
  ]

  static flags = {cluster: clusterFlag(), ...etcdTlsFlags()}

  async execute(): Promise<ClusterInitResult> {
    return initCluster(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock})
  }

  protected render(r: ClusterInitResult): string {
    return `${r.changed ? 'created' : 'found'} cluster store ${r.location} (schema ${r.schema}); its pool: ${r.pool}`
  }
}
