import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {labelEndpoint, type EndpointLabelResult} from '../../src/cluster/identities.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {labelChanges, labelClusterFlag} from '../namespace/label.js'

export type {EndpointLabelResult}

export default class EndpointLabel extends BaseCommand<typeof EndpointLabel, EndpointLabelResult> {
  static summary = 'Set (key=value) or remove (key-) labels of a pod, as kubectl label pod does; it moves to the identity of its new labels everywhere.'
  static description = 'The pod is named by its container id or as NS/POD. Its endpoint in the cluster store gets the new labels and identity (under its node\'s lease), so every node\'s ipcache and policy maps follow.'
  static examples = [
    '<%= config.bin %> <%= command.id %> x/a role=client --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> 4f1c2e9a77d0 role- --json',
  ]

  static strict = false

  static args = {
    container: Args.string({description: 'Container id or NS/POD, then key=value or key- words.', required: true}),
  }

  static flags = {
    cluster: labelClusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<EndpointLabelResult> {
    const {argv} = await this.parse(EndpointLabel)
    const target = this.args.container
    const {change, cluster} = labelChanges(this.id ?? 'endpoint:label', (argv as string[]).slice(1), this.flags.cluster, `label endpoint ${target}`)
    return withClusterStore(cluster, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return labelEndpoint(store, target, change)
    })
  }

  protected render(r: EndpointLabelResult): string {
    const labels = Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',') || 'no labels'
    const moved = r.endpoints.map((e) => `  ${e.ip}: identity ${e.from ?? 'none'} -> ${e.to}`)
    return [`endpoint ${r.endpoint}: ${labels}${moved.length ? '' : ' (unchanged)'}`, ...moved].join('\n')
  }
}
