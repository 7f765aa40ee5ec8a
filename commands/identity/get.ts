import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {getIdentity} from '../../src/cluster/identities.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {PnError} from '../../src/errors.js'

export type IdentityGetResult = Awaited<ReturnType<typeof getIdentity>>

export default class IdentityGet extends BaseCommand<typeof IdentityGet, IdentityGetResult> {
  static summary = 'Show one security identity: its labels (Cilium form) and the endpoints that carry it.'
  static examples = [
    '<%= config.bin %> <%= command.id %> 256 --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> 2 --json',
  ]

  static args = {
    id: Args.string({description: 'The identity number.', required: true}),
  }

  static flags = {
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<IdentityGetResult> {
    if (!/^\d+$/.test(this.args.id)) throw new PnError('PN_INVALID_ARGUMENT', `get identity ${JSON.stringify(this.args.id)}: not an identity number`, {hint: 'list them with pn identity list; see `pn identity get --help`', details: {args: [this.args.id]}})
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return getIdentity(store, Number(this.args.id))
    })
  }

  protected render(r: IdentityGetResult): string {
    const i = r.identity
    return [`identity ${i.id} (${i.kind})`, ...i.labels.map((l) => `  ${l}`), ...(i.unusedSince ? [`unused since ${i.unusedSince}`] : []),
      ...(i.kind === 'cluster' ? [`endpoints: ${r.endpoints.map((e) => `${e.endpoint} ${e.ip} on ${e.node}`).join(', ') || 'none'}`] : [])].join('\n')
  }
}
