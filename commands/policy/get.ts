import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {getPolicy, policyRef} from '../../src/cluster/policies.js'
import {withClusterStore} from '../../src/cluster/store.js'

export type PolicyGetResult = Awaited<ReturnType<typeof getPolicy>>

export default class PolicyGet extends BaseCommand<typeof PolicyGet, PolicyGetResult> {
  static summary = 'Show one NetworkPolicy as the cluster store holds it (the object pn policy apply takes) and the endpoints it selects.'
  static examples = [
    '<%= config.bin %> <%= command.id %> x/deny-all --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> deny-all --namespace x --json',
  ]

  static args = {
    policy: Args.string({description: 'NS/NAME, or NAME with --namespace.', required: true}),
  }

  static flags = {
    namespace: Flags.string({char: 'n', summary: 'Namespace of NAME (default: default).'}),
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<PolicyGetResult> {
    const ref = policyRef(this.args.policy, this.flags.namespace)
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return getPolicy(store, ref)
    })
  }

  protected render(r: PolicyGetResult): string {
    return `${JSON.stringify(r.policy, null, 2)}\nselects: ${r.selects.join(', ') || 'no endpoint'}`
  }
}
