import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {labelNamespace, type NamespaceLabelResult} from '../../src/cluster/namespaces.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {PnError} from '../../src/errors.js'
import {parseLabelChanges, type LabelChange} from '../../src/policy/labels.js'

export type {NamespaceLabelResult}

/** --cluster for the label commands: their words after the first are label changes, so oclif cannot require the flag itself. */
export const labelClusterFlag = () =>
  Flags.string({summary: 'Cluster store: etcd://HOST:PORT[,HOST:PORT…][/PREFIX], etcds://… (TLS), or a directory for one machine (required).', env: 'PN_CLUSTER'})

/** The words after the command's own argument, as label changes; a stray flag or a bad word is named. */
export function labelChanges(id: string, words: string[], cluster: string | undefined, action: string): {change: LabelChange; cluster: string} {
  const help = `see \`pn ${id.replaceAll(':', ' ')} --help\``
  const flags = words.filter((w) => w.startsWith('-'))
  if (flags.length) throw new PnError('PN_INVALID_ARGUMENT', `parse arguments: unknown flag${flags.length === 1 ? '' : 's'} ${flags.join(', ')}`, {hint: help, details: {flags}})
  const bad = words.filter((w) => !/^[^=]+=.*$/.test(w) && !/^[^=]+-$/.test(w))
  if (bad.length) throw new PnError('PN_INVALID_ARGUMENT', `${action}: ${bad.map((w) => JSON.stringify(w)).join(', ')} ${bad.length === 1 ? 'is' : 'are'} neither key=value nor key-`, {hint: `write key=value to set a label and key- to remove it; ${help}`, details: {args: bad}})
  const change = parseLabelChanges(words, action)
  if (cluster === undefined) throw new PnError('PN_INVALID_ARGUMENT', 'parse arguments: missing required flag --cluster', {hint: `give --cluster or PN_CLUSTER; ${help}`, details: {flags: ['--cluster']}})
  return {change, cluster}
}

export default class NamespaceLabel extends BaseCommand<typeof NamespaceLabel, NamespaceLabelResult> {
  static summary = 'Set (key=value) or remove (key-) labels of a namespace, as kubectl label namespace does; its pods move to their new identities.'
  static description = 'Namespace labels are part of every pod identity (k8s:io.cilium.k8s.namespace.labels.KEY=VALUE) and are what a namespaceSelector matches. Every namespace also carries kubernetes.io/metadata.name=NS, which cannot be changed.'
  static examples = [
    '<%= config.bin %> <%= command.id %> x team=blue --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> x env=prod team- --json',
  ]

  static strict = false

  static args = {
    namespace: Args.string({description: 'The namespace, then key=value or key- words.', required: true}),
  }

  static flags = {
    cluster: labelClusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<NamespaceLabelResult> {
    const {argv} = await this.parse(NamespaceLabel)
    const ns = this.args.namespace
    const {change, cluster} = labelChanges(this.id ?? 'namespace:label', (argv as string[]).slice(1), this.flags.cluster, `label namespace ${ns}`)
    return withClusterStore(cluster, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return labelNamespace(store, ns, change)
    })
  }

  protected render(r: NamespaceLabelResult): string {
    const labels = Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',') || 'no labels'
    const moved = r.endpoints.map((e) => `  ${e.namespace}/${e.pod ?? e.ip} ${e.ip}: identity ${e.from ?? 'none'} -> ${e.to}`)
    return [`namespace ${r.namespace}: ${r.changed ? '' : 'already '}${labels}`, ...moved].join('\n')
  }
}
