import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {readStdin} from '../../src/cli/stdin.js'
import {applyClusterServices, type ClusterServicesApplyResult} from '../../src/cluster/services.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {applyServices, type ApplyResult} from '../../src/service/index.js'

export type ServiceApplyResult = (ApplyResult & {source: string}) | ClusterServicesApplyResult

export function renderApply(r: ApplyResult): string {
  const d = r.diff
  const lines: string[] = []
  const verb = r.dryRun ? 'would ' : ''
  for (const c of d.added) lines.push(`+ ${c.frontend} -> ${c.backends.join(', ') || '(no backends)'}`)
  for (const c of d.updated) lines.push(`~ ${c.frontend} -> ${c.backends.join(', ') || '(no backends)'} (was ${c.previous?.join(', ') || 'none'})`)
  for (const c of d.removed) lines.push(`- ${c.frontend}`)
  const total = d.counts.added + d.counts.updated + d.counts.removed
  if (total > 40) lines.splice(40, lines.length - 40, `… ${total - 40} more (--json lists up to 1,000 of each kind)`)
  const c = d.counts
  const summary = `${r.dryRun ? 'dry run: ' : ''}${c.added} ${verb}add, ${c.updated} ${verb}update, ${c.removed} ${verb}remove, ${c.unchanged} unchanged; ${r.mapOps} map operation(s)${r.dryRun ? '' : ` in one batch; ${r.services} service(s) on the node; ${r.durationMs} ms`}${r.resynced ? ' (maps were re-created: rewrote every service)' : ''}${r.recovered ? ' (first completed an earlier apply that was killed midway)' : ''}`
  return [...lines, summary].join('\n')
}

export default class ServiceApply extends BaseCommand<typeof ServiceApply, ServiceApplyResult> {
  static summary = "Make the node's service table exactly a JSON list: adds, updates and removes in one go."
  static description = `FILE (or - for stdin) is a JSON list: [{"frontend": "10.96.0.10:80/tcp", "backends": ["10.1.0.5:8080"]}, …]. The whole diff is computed and validated first, then written in ONE batch (batch syscalls): new backends and backend slots before each service's switch, deletions last. If the kernel refuses a write, everything written is reverted and the previous table stays in force. Apply the same file on every node to keep a cluster in sync, or write it once to the cluster store with --cluster: every node's agent (pn agent start --cluster) then applies it to its node.`

  static examples = [
    '<%= config.bin %> <%= command.id %> services.json',
    '<%= config.bin %> <%= command.id %> services.json --dry-run',
    'cat services.json | <%= config.bin %> <%= command.id %> - --json',
    '<%= config.bin %> <%= command.id %> services.json --cluster etcd://10.0.0.5:2379/pn   # once, for every node',
  ]

  static args = {
    file: Args.string({description: 'JSON file with the desired services, or - for stdin.', required: true}),
  }

  static flags = {
    'dry-run': Flags.boolean({summary: 'Print the diff (added, updated, removed services) without writing anything.'}),
    cluster: Flags.string({summary: 'Write the table to this cluster store instead of the node (PN_CLUSTER is not read here: the per-node flow stays the default).'}),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<ServiceApplyResult> {
    const text = this.args.file === '-' ? await readStdin() : undefined
    if (this.flags.cluster !== undefined) {
      return withClusterStore(this.flags.cluster, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
        this.warnings.push(...store.warnings)
        return applyClusterServices(store, {file: this.args.file, text}, {dryRun: this.flags['dry-run']})
      })
    }
    return applyServices(this.runner, this.stateDir, {file: this.args.file, text}, {dryRun: this.flags['dry-run'], lock: this.lock})
  }

  protected render(r: ServiceApplyResult): string {
    if ('cluster' in r) {
      if (r.dryRun) return `dry run: cluster ${r.cluster} would ${r.changed ? 'change to' : 'keep'} ${r.count} service(s) (revision ${r.revision})`
      return r.changed
        ? `cluster ${r.cluster}: ${r.count} service(s), ${r.shards} shard(s) written at revision ${r.revision}; every agent applies them to its node`
        : `cluster ${r.cluster}: already these ${r.count} service(s) (revision ${r.revision})`
    }
    return renderApply(r)
  }
}
