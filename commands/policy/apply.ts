import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {readStdin} from '../../src/cli/stdin.js'
import {applyPolicies, type EndpointPolicyChange, type PolicyApplyResult} from '../../src/cluster/policies.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {PnError} from '../../src/errors.js'

export type {PolicyApplyResult}

const PROTO: Record<number, string> = {0: 'any', 6: 'tcp', 17: 'udp', 132: 'sctp'}

/** One policy map entry as a line: `+ ingress from 257 tcp 80-81`. */
export function entryLine(sign: string, e: EndpointPolicyChange['added'][number]): string {
  const port = e.port === 0 ? 'any port' : e.endPort === e.port ? `${e.port}` : `${e.port}-${e.endPort}`
  return `${sign} ${e.direction} ${e.direction === 'ingress' ? 'from' : 'to'} ${e.identity === 0 ? 'any' : e.identity} ${PROTO[e.protocol]} ${port}`
}

/** Per endpoint, what a dry run would change. */
export function renderEndpointChanges(changes: EndpointPolicyChange[]): string[] {
  const lines: string[] = []
  for (const c of changes) {
    const enf = (d: string, v: {before: boolean; after: boolean}) => (v.before === v.after ? [] : [`${d} ${v.after ? 'enforced (default deny)' : 'open'}`])
    const head = [...enf('ingress', c.ingressEnforced), ...enf('egress', c.egressEnforced)]
    lines.push(`${c.endpoint} (${c.ip}, identity ${c.identity ?? 'none'})${head.length ? `: ${head.join(', ')}` : ''}`)
    for (const e of c.added) lines.push(`  ${entryLine('+', e)}`)
    for (const e of c.removed) lines.push(`  ${entryLine('-', e)}`)
  }
  return lines
}

export default class PolicyApply extends BaseCommand<typeof PolicyApply, PolicyApplyResult> {
  static summary = 'Write Kubernetes NetworkPolicies (networking.k8s.io/v1, YAML or JSON) to the cluster store; every node enforces them.'
  static description = 'FILE (or -f FILE, or - for stdin) holds one NetworkPolicy, several YAML documents, or a List. Each policy is created or replaced by namespace/name; other policies stay. Every field is checked first: anything pn does not support (named ports, an unknown field) is an error naming its path, and nothing is written. --dry-run prints, per endpoint, the policy map entries that would be added and removed.'
  static examples = [
    '<%= config.bin %> <%= command.id %> deny-all.yaml --cluster etcd://10.0.0.5:2379/pn',
    '<%= config.bin %> <%= command.id %> -f policies.yaml --dry-run',
    'kubectl get netpol -A -o yaml | <%= config.bin %> <%= command.id %> - --json',
  ]

  static args = {
    file: Args.string({description: 'YAML or JSON file of NetworkPolicy objects, or - for stdin.'}),
  }

  static flags = {
    filename: Flags.string({char: 'f', summary: 'The file, as kubectl takes it (instead of FILE).'}),
    'dry-run': Flags.boolean({summary: 'Print per endpoint the policy map entries that would change; write nothing.'}),
    cluster: clusterFlag(),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<PolicyApplyResult> {
    const {file: arg} = this.args
    const {filename} = this.flags
    if (arg !== undefined && filename !== undefined) {
      throw new PnError('PN_INVALID_ARGUMENT', 'parse arguments: give the file once, as FILE or as -f FILE', {hint: 'see `pn policy apply --help`', details: {args: [arg], flags: ['-f']}})
    }
    const file = arg ?? filename
    if (file === undefined) throw new PnError('PN_INVALID_ARGUMENT', 'parse arguments: missing required argument FILE (or -f FILE)', {hint: 'pn policy apply FILE; see `pn policy apply --help`', details: {args: ['FILE']}})
    const text = file === '-' ? await readStdin() : undefined
    return withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) => {
      this.warnings.push(...store.warnings)
      return applyPolicies(store, {file, text}, {dryRun: this.flags['dry-run']})
    })
  }

  protected render(r: PolicyApplyResult): string {
    const lines = r.policies.map((p) => `${p.policy}: ${p.action === 'unchanged' ? 'unchanged' : r.dryRun ? `would ${p.action}` : `${p.action}d`}`)
    if (r.dryRun) {
      const eps = renderEndpointChanges(r.endpoints ?? [])
      lines.push(...(eps.length ? eps : ['no endpoint\'s policy would change']))
      lines.push(`dry run at revision ${r.revision}: nothing written`)
    } else {
      lines.push(r.changed ? `cluster ${r.cluster}: written at revision ${r.revision}; every agent updates its endpoints' policy maps` : `cluster ${r.cluster}: already these policies (revision ${r.revision})`)
    }
    return lines.join('\n')
  }
}
