import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {listPolicies, type PolicyRow} from '../../src/cluster/policies.js'
import {withClusterStore} from '../../src/cluster/store.js'

export type PolicyListResult = PolicyRow[]

export default class PolicyList extends BaseCommand<typeof PolicyList, PolicyListResult> {
  static summary = 'List the NetworkPolicies in the cluster store, with how many endpoints each selects.'
  static examples = [
    '<%= config.bin %> <%= command.id %> --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> --namespace x --json',
  ]

  static flags = {
    namespace: Flags.string({char: 'n', summary: 'Only this namespace\'s policies (default: every namespace).'}),
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<PolicyListResult> {
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return (await listPolicies(store, {namespace: this.flags.namespace})).policies
    })
  }

  protected render(r: PolicyListResult): string {
    if (r.length === 0) return 'no policies'
    return table(['NAMESPACE', 'NAME', 'POD SELECTOR', 'TYPES', 'INGRESS', 'EGRESS', 'ENDPOINTS'],
      r.map((p) => [p.namespace, p.name, p.podSelector, p.policyTypes.join(','), p.ingressRules, p.egressRules, p.endpoints]), {right: [4, 5, 6]})
  }
}
