import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {deletePolicy, policyRef} from '../../src/cluster/policies.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {renderEndpointChanges} from './apply.js'

export type PolicyDeleteResult = Awaited<ReturnType<typeof deletePolicy>>

export default class PolicyDelete extends BaseCommand<typeof PolicyDelete, PolicyDeleteResult> {
  static summary = 'Delete one NetworkPolicy from the cluster store; every node drops its entries.'
  static examples = [
    '<%= config.bin %> <%= command.id %> x/deny-all --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> deny-all --namespace x --dry-run --json',
  ]

  static args = {
    policy: Args.string({description: 'NS/NAME, or NAME with --namespace.', required: true}),
  }

  static flags = {
    namespace: Flags.string({char: 'n', summary: 'Namespace of NAME (default: default).'}),
    'dry-run': Flags.boolean({summary: 'Print per endpoint the policy map entries that would change; delete nothing.'}),
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<PolicyDeleteResult> {
    const ref = policyRef(this.args.policy, this.flags.namespace)
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return deletePolicy(store, ref, {dryRun: this.flags['dry-run']})
    })
  }

  protected render(r: PolicyDeleteResult): string {
    if (!r.dryRun) return `${r.policy}: deleted at revision ${r.revision}`
    const eps = renderEndpointChanges(r.endpoints ?? [])
    return [`${r.policy}: would be deleted`, ...(eps.length ? eps : ['no endpoint\'s policy would change'])].join('\n')
  }
}
