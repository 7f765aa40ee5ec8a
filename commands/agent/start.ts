import {Flags} from '@oclif/core'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {resolveGroup, startAgentProcess, type StartAgentResult} from '../../src/agent/lifecycle.js'
import {agentLogFile} from '../../src/agent/paths.js'
import {AGENT_DEFAULTS} from '../../src/agent/server.js'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags} from '../../src/cli/flags.js'
import {NODE_REACH, type NodeReach} from '../../src/cluster/layout.js'
import {agentLogger, startAgent, stopOnSignals} from '../../src/entry/agent-main.js'

export type AgentStartResult = StartAgentResult & {foreground?: boolean}

/** bin/run.js of this build (dist/commands/agent → repo root). */
const RUN_JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/run.js')

export default class AgentStart extends BaseCommand<typeof AgentStart, AgentStartResult> {
  static summary = "Start the node agent: serves CNI ADD/DEL/CHECK/STATUS/GC on <state-dir>/agent.sock."
  static description = `The agent is one long-running process per node. The pn-cni client (dist/native/pn-cni, what \`pn cni install\` installs) forwards each CNI call to it instead of booting Node; with no agent it runs the standalone path. Start it in the node's network namespace. Without --foreground it starts in the background, logging to <state-dir>/agent.log, and returns once it answers (idempotent: an agent already running is reported with changed: false; one agent per state dir, held by a lock on <state-dir>/agent.lock). --foreground is for supervisors (systemd): the first SIGTERM stops it after the requests in flight, a second interrupts them. Only root may use the socket (0600, and every caller's credentials are checked); --group lets a group's members use it too (0660).`

  static examples = [
    '<%= config.bin %> <%= command.id %> --state-dir /var/lib/pn',
    '<%= config.bin %> <%= command.id %> --foreground   # under systemd (contrib/systemd/pn-agent.service)',
    'ip netns exec pn-lab-node1 <%= config.bin %> <%= command.id %> --state-dir /tmp/node1 --json',
  ]

  static flags = {
    foreground: Flags.boolean({summary: 'Run in this process until SIGTERM (for systemd and other supervisors).'}),
    'log-file': Flags.string({summary: 'Append the agent log here (default: stderr in the foreground, <state-dir>/agent.log in the background).'}),
    'max-inflight': Flags.integer({summary: 'Requests served at once.', default: 16, min: 1}),
    'max-queued': Flags.integer({summary: 'Requests waiting before new ones get CNI code 11 (try again later).', default: 512, min: 0}),
    'queue-timeout-ms': Flags.integer({summary: 'Longest wait in the queue before CNI code 11.', default: 60_000, min: 1}),
    group: Flags.string({summary: 'Also serve callers in this group (name or gid): the socket becomes 0660 root:GROUP.'}),
    'max-connections': Flags.integer({summary: 'Connections open at once; more get CNI code 11 at once.', default: AGENT_DEFAULTS.maxConnections, min: 1}),
    'idle-timeout-ms': Flags.integer({summary: 'Close a connection that has not sent its whole request this long after connecting.', default: AGENT_DEFAULTS.idleTimeoutMs, min: 1}),
    'max-request-bytes': Flags.integer({summary: 'Largest request accepted (netconf + environment).', default: AGENT_DEFAULTS.maxRequestBytes, min: 1024}),
    // Tests only: honour PN_CNI_FAIL_AFTER, PN_TEST_HOLD_LOCK_MS and PN_TEST_CHECKPOINT_DELAY_MS in requests.
    'test-hooks': Flags.boolean({summary: 'Honour the test hooks requests carry (tests only).', hidden: true}),
    'kernel-worker': Flags.boolean({
      summary: 'Do the ip/tc/bpftool commands of ADD and DEL in one long-lived rtnetlink worker (dist/native/pn-netlink) instead of a process each.',
      description: 'On by default. --no-kernel-worker spawns every command, as the standalone path does (for comparisons and debugging).',
      default: true,
      allowNo: true,
    }),
    cluster: Flags.string({summary: 'Join the cluster store here (etcd://HOST:PORT[,…][/PREFIX], etcds://…, or a directory): register the node, publish its endpoints, program the others\' (docs/CLUSTER.md).', env: 'PN_CLUSTER'}),
    ...etcdTlsFlags(),
    'auto-direct-routes': Flags.boolean({summary: 'With --cluster: route to every other node\'s pod CIDRs via its node IP on the uplink (nodes on one L2).'}),
    reach: Flags.string({summary: 'With --cluster: how the other nodes reach this node\'s pod CIDRs (default: tunnel on a node in tunnel mode, else direct).', options: [...NODE_REACH]}),
    'node-ip': Flags.string({summary: 'With --cluster: the node IP(s) to publish (default: the uplink\'s addresses).', multiple: true}),
    'lease-ttl': Flags.integer({summary: 'With --cluster: seconds the node\'s keys outlive a dead agent (its lease TTL).', default: 10, min: 2}),
  }

  async execute(): Promise<AgentStartResult> {
    const f = this.flags
    if (!f.foreground) {
      const argv = [process.execPath, RUN_JS, 'agent', 'start', '--foreground', '--state-dir', this.stateDir, '--log-file', f['log-file'] ?? agentLogFile(this.stateDir),
        '--max-inflight', String(f['max-inflight']), '--max-queued', String(f['max-queued']), '--queue-timeout-ms', String(f['queue-timeout-ms']),
        '--max-connections', String(f['max-connections']), '--idle-timeout-ms', String(f['idle-timeout-ms']), '--max-request-bytes', String(f['max-request-bytes']),
        ...(f.group === undefined ? [] : ['--group', f.group]),
        ...(f['kernel-worker'] ? [] : ['--no-kernel-worker']),
        ...(f['test-hooks'] ? ['--test-hooks'] : []),
        ...(f.cluster === undefined ? [] : ['--cluster', f.cluster, ...(f.reach ? ['--reach', f.reach] : []), '--lease-ttl', String(f['lease-ttl']), ...(f['auto-direct-routes'] ? ['--auto-direct-routes'] : []),
          ...(f['node-ip'] ?? []).flatMap((ip) => ['--node-ip', ip]),
          ...(['ca', 'cert', 'key'] as const).flatMap((k) => (this.etcdTls[k] ? [`--etcd-${k}`, this.etcdTls[k]!] : []))])]
      return startAgentProcess(this.runner, this.stateDir, argv)
    }
    const logFile = f['log-file']
    const log = agentLogger(logFile)
    const group = f.group === undefined ? undefined : await resolveGroup(f.group)
    const agent = await startAgent({
      stateDir: this.stateDir,
      log,
      maxInflight: f['max-inflight'],
      maxQueued: f['max-queued'],
      queueTimeoutMs: f['queue-timeout-ms'],
      traceExec: this.entry.traceExec,
      kernelWorker: f['kernel-worker'],
      ...(group === undefined ? {} : {group}),
      maxConnections: f['max-connections'],
      idleTimeoutMs: f['idle-timeout-ms'],
      maxRequestBytes: f['max-request-bytes'],
      testHooks: f['test-hooks'],
      ...(f.cluster === undefined ? {} : {cluster: {
        location: f.cluster,
        store: {etcdTls: this.etcdTls},
        autoDirectRoutes: f['auto-direct-routes'],
        ...(f.reach ? {reach: f.reach as NodeReach} : {}),
        ttlSeconds: f['lease-ttl'],
        ...(f['node-ip'] ? {nodeIps: f['node-ip']} : {}),
      }}),
    }).catch((err: Error) => {
      // A background agent's stderr goes nowhere: `pn agent start` shows this line from the log.
      log(`start failed: ${err.message}`)
      throw err
    })
    stopOnSignals(agent)
    await agent.stopped
    // A store client's handle (etcd's gRPC channel, reconnecting) must not keep a stopped agent's
    // process alive: `pn agent stop` waits for it to exit. Unref'd: a clean exit comes first.
    if (f.cluster !== undefined) setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref()
    const s = agent.stats()
    return {changed: true, foreground: true, pid: s.pid, stateDir: this.stateDir, socket: s.socket, logFile: logFile ?? ''}
  }

  protected render(r: AgentStartResult): string {
    if (r.foreground) return `agent ${r.pid} stopped`
    return `${r.changed ? 'started' : 'already running'}: agent ${r.pid} on ${r.socket} (log ${r.logFile})`
  }
}
