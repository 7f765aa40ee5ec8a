import {Flags} from '@oclif/core'
import {agentStatus, type AgentStatus} from '../../src/agent/lifecycle.js'
import {BaseCommand} from '../../src/cli/base.js'
import {clusterFlag, etcdTlsFlags} from '../../src/cli/flags.js'
import {table} from '../../src/cli/table.js'
import {clusterStatus, type ClusterStatus} from '../../src/cluster/status.js'
import {withClusterStore} from '../../src/cluster/store.js'
import {PnError} from '../../src/errors.js'

type LocalAgent = NonNullable<NonNullable<AgentStatus['stats']>['cluster']>

/** With a cluster agent on this node (--state-dir): its view of the store too. */
export type ClusterStatusResult = ClusterStatus & {agent?: LocalAgent}

function agentLine(a: LocalAgent): string {
  const store = a.store === 'connected' ? `connected since ${a.since}` : `retrying since ${a.since}${a.error ? ` (${a.error})` : ''}`
  return `this node's agent (${String(a.node)}): store ${store}; applied revision ${a.appliedRevision ?? '-'}; ${String(a.queued)} publication(s) queued`
}

export default class ClusterStatusCommand extends BaseCommand<typeof ClusterStatusCommand, ClusterStatusResult> {
  static summary = 'Show the cluster: each node, its lease, the store revision its agent applied, and whether it has converged.'
  static description = 'Nodes are those registered under a live lease, and those holding pod CIDRs in the cluster\'s pool without one (ALIVE no). APPLIED is the store revision a node\'s agent reported as fully applied (- until it reports); CONVERGED compares it with the newest revision of the desired state (nodes, endpoints, services). The pool is the cluster\'s own unless --pool (PN_POOL) names another.'

  static examples = [
    '<%= config.bin %> <%= command.id %> --cluster etcd://10.0.0.5:2379/pn',
    'PN_CLUSTER=/run/pn/lab07 <%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --cluster etcds://10.0.0.5:2379/pn --etcd-ca ca.pem --json',
  ]

  static flags = {
    cluster: clusterFlag(),
    pool: Flags.string({summary: 'Pool to list unregistered nodes from, when not the cluster\'s own (the same etcd URL, or <dir>/cluster-pool.json).', env: 'PN_POOL'}),
    ...etcdTlsFlags(),
  }

  async execute(): Promise<ClusterStatusResult> {
    // The agent of this node, if it follows a cluster: it says whether it reaches the store.
    const local = (await agentStatus(this.stateDir).catch(() => undefined))?.stats?.cluster
    try {
      const r = await withClusterStore(this.flags.cluster!, {etcdTls: this.etcdTls, lock: this.lock}, async (store) =>
        clusterStatus(store, {pool: await this.poolStore(this.flags.pool ?? store.poolLocation)}))
      return local ? {...r, agent: local} : r
    } catch (err) {
      if (!(err instanceof PnError) || !local) throw err
      throw new PnError(err.code, err.message, {hint: `${err.hint ?? ''}${err.hint ? '; ' : ''}${agentLine(local)}`, details: {...err.details, agent: local}})
    }
  }

  protected render(r: ClusterStatusResult): string {
    const nodes = r.nodes.length === 0
      ? '(no nodes)'
      : table(
        ['NODE', 'ALIVE', 'REACH', 'NODE IPS', 'POD CIDRS', 'LEASE AGE', 'APPLIED', 'CONVERGED'],
        r.nodes.map((n) => [
          n.name, n.alive ? 'yes' : 'no', n.reach, n.nodeIps.join(', '), n.podCidrs.join(', '),
          n.leaseAgeSeconds === undefined ? undefined : `${n.leaseAgeSeconds}s`, n.appliedRevision, n.converged === null ? undefined : n.converged ? 'yes' : 'no',
        ]),
        {right: [5, 6]},
      )
    const lines = [
      `cluster ${r.location} (schema ${r.schema}) at revision ${r.revision}, desired state at ${r.desiredRevision}; pool ${r.pool}`,
      nodes,
      '',
      `endpoints: ${r.endpoints}; services: ${r.services.count}${r.services.consistent ? '' : ' (table inconsistent: not applied)'}`,
      ...r.problems.map((p) => `problem: ${p.key}: ${p.message}`),
      ...(r.agent ? [agentLine(r.agent)] : []),
    ]
    return lines.join('\n')
  }
}
