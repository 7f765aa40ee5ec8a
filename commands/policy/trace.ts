import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {tracePolicy, type PolicyTraceResult} from '../../src/cluster/policies.js'
import {withClusterStore} from '../../src/cluster/store.js'

export type {PolicyTraceResult}

export default class PolicyTrace extends BaseCommand<typeof PolicyTrace, PolicyTraceResult> {
  static summary = 'Would a new connection pass? The verdict and the rule (or the default deny) that decides it.'
  static description = 'Computed from the cluster store\'s state with the same resolution the nodes write their policy maps from: egress is checked at the source pod, ingress at the destination pod. An address that is not a pod is world, or the identity of the most specific CIDR a policy names.'
  static examples = [
    '<%= config.bin %> <%= command.id %> --from y/b --to x/a --port 80/tcp --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> --from x/a --to 192.0.2.10 --port 53/udp --json',
  ]

  static flags = {
    from: Flags.string({summary: 'Source: NS/POD or an IP address.', required: true}),
    to: Flags.string({summary: 'Destination: NS/POD or an IP address.', required: true}),
    port: Flags.string({summary: 'Destination PORT[/tcp|udp|sctp] (default tcp).', required: true}),
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<PolicyTraceResult> {
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return tracePolicy(store, {from: this.flags.from!, to: this.flags.to!, port: this.flags.port!})
    })
  }

  protected render(r: PolicyTraceResult): string {
    const side = (p: PolicyTraceResult['from']) => `${p.endpoint ?? p.ip} (${p.ip}, identity ${p.identity})`
    return [`${side(r.from)} -> ${side(r.to)} ${this.flags.port}: ${r.verdict.toUpperCase()}`, r.reason].join('\n')
  }
}
