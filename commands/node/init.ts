import {Flags} from '@oclif/core'
import {BaseCommand, poolOfCluster} from '../../src/cli/base.js'
import {dryRun, renderDryRun, type DryRunResult} from '../../src/cli/dry-run.js'
import {dryRunFlag, etcdTlsFlags, mtuFlag, podCidrFlag, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {PnError} from '../../src/errors.js'
import {MASQUERADE_MODES, type MasqueradeMode} from '../../src/datapath/masquerade.js'
import {initNode, planNodeInit, type NodeInitOptions, type NodeInitResult} from '../../src/node/init.js'

export type NodeInitCmdResult = NodeInitResult | DryRunResult<NodeInitResult>

export default class NodeInit extends BaseCommand<typeof NodeInit, NodeInitCmdResult> {
  static summary = 'Initialise this node: pn_host/pn_net, router IP, pod CIDR route, sysctls, bpffs, node.json.'
  static description = `What cilium-agent does at start. The pod CIDR is --pod-cidr, or allocated for --name from the cluster pool (--pool, PN_POOL; or the pool of --cluster, PN_CLUSTER; default <state-dir>/cluster-pool.json), or the one in node.json on a re-run. The router IP defaults to the first usable address of the pod CIDR. The MTU defaults to the uplink's (50 bytes less with --tunnel vxlan, for the VXLAN header). Re-running with the same inputs changes nothing (changed: false); a different pod CIDR, router IP, name or uplink is refused unless --force. Refused before anything changes (PN_CIDR_CONFLICT): a pod CIDR that overlaps an address or route of the node's devices (pn's own aside), and with --pool a --pod-cidr the pool did not give this node. --name follows the rule of \`pn pool alloc\` (letters, digits, '.', '-', '_').`

  static examples = [
    '<%= config.bin %> <%= command.id %> --name node1 --device eth0 --pod-cidr 10.0.1.0/24 --routing host-routes',
    '<%= config.bin %> <%= command.id %> --name node1 --device eth0 --pool /run/pn/cluster-pool.json --json',
    '<%= config.bin %> <%= command.id %> --name node1 --device eth0 --pod-cidr 10.0.1.0/24 --dry-run',
    '<%= config.bin %> <%= command.id %> --name node1 --device eth0 --pod-cidr 10.0.1.0/24 --masquerade bpf --non-masquerade-cidr 10.0.0.0/16',
    'ip netns exec pn-lab1-node <%= config.bin %> <%= command.id %> --name node1 --device eth0 --pod-cidr 10.0.1.0/24 --state-dir /run/pn/lab1/node1',
  ]

  static flags = {
    name: Flags.string({summary: "Node name (the key in the cluster pool): letters, digits, '.', '-', '_'.", required: true}),
    device: Flags.string({summary: "The node's uplink device.", required: true}),
    'pod-cidr': podCidrFlag(),
    pool: poolFlag(),
    cluster: poolClusterFlag(),
    ...etcdTlsFlags(),
    mtu: mtuFlag(),
    'router-ip': Flags.string({summary: 'Router IP per family (default: first usable address of the pod CIDR).', multiple: true}),
    routing: Flags.string({summary: 'How local pods are reached: bpf redirect or one host route per pod.', options: ['bpf', 'host-routes']}),
    tunnel: Flags.string({summary: 'How pod traffic crosses to other nodes: off (native routing, the default) or vxlan (pn_vxlan, UDP 8472; needs --routing bpf).', options: ['off', 'vxlan']}),
    'bpffs-root': Flags.string({summary: 'bpffs folder for this node\'s pins (default /run/pn/bpffs/<name>).'}),
    force: Flags.boolean({summary: 'Reconfigure a node initialised with a different pod CIDR, router IP, name or uplink.'}),
    masquerade: Flags.string({summary: 'Pod traffic leaving the cluster gets the node IP as source: in BPF (to-netdev), by one iptables MASQUERADE rule, or not (default off; kept on a re-run).', options: [...MASQUERADE_MODES]}),
    'non-masquerade-cidr': Flags.string({summary: 'A destination never masqueraded, besides the pod CIDRs (repeatable; the cluster pool\'s CIDRs are added). Replaces the previous list.', multiple: true}),
    'masquerade-port-range': Flags.string({summary: 'BPF masquerade: SNAT source ports FIRST-LAST (default 61000-65535, outside ip_local_port_range; reserved on the node).'}),
    'nat-tcp-timeout': Flags.integer({summary: 'BPF masquerade: seconds an idle TCP mapping lives (default 21600).'}),
    'nat-udp-timeout': Flags.integer({summary: 'BPF masquerade: seconds an idle UDP or ICMP echo mapping lives (default 60).'}),
    'dry-run': dryRunFlag(),
  }

  async execute(): Promise<NodeInitCmdResult> {
    const f = this.flags
    const pool = f.pool ?? (await poolOfCluster(f.cluster))
    const opts: NodeInitOptions = {
      name: f.name,
      uplink: f.device,
      podCidrs: f['pod-cidr'],
      pool,
      mtu: f.mtu,
      routerIps: f['router-ip'],
      routing: f.routing as 'bpf' | 'host-routes' | undefined,
      tunnel: f.tunnel as 'off' | 'vxlan' | undefined,
      bpffsRoot: f['bpffs-root'],
      force: f.force,
      lock: this.lock,
      etcdTls: this.etcdTls,
      bpfSourceDir: this.entry.bpfDir,
      signal: this.flow.signal,
      masquerade: {
        mode: f.masquerade as MasqueradeMode | undefined,
        nonMasqueradeCidrs: f['non-masquerade-cidr'],
        portRange: f['masquerade-port-range'],
        tcpTimeout: f['nat-tcp-timeout'],
        otherTimeout: f['nat-udp-timeout'],
      },
    }
    if (f['dry-run']) {
      return dryRun(this.runner, this.stateDir, async (d) => {
        if (pool && /^[a-z][a-z0-9+.-]*:\/\//.test(pool)) {
          throw new PnError('PN_INVALID_ARGUMENT', `dry-run node init: the pool at ${pool} would be changed`, {hint: 'pass --pod-cidr for a dry run'})
        }
        return initNode(d.runner, d.stateDir, {...opts, ...(pool ? {pool: await d.scratch(pool)} : {})})
      })
    }
    return this.runSteps(await planNodeInit(this.runner, this.stateDir, opts), `initialise node ${f.name}`)
  }

  protected render(r: NodeInitCmdResult): string {
    if ('dryRun' in r) return renderDryRun(r)
    const n = r.node
    const lines = [
      `node ${n.name}: pod cidr ${n.podCidrs.join(', ')}, router ip ${n.routerIps.join(', ')} on pn_host, mtu ${n.mtu}, routing ${n.routing}, tunnel ${n.tunnel ?? 'off'}`,
      ...r.devices.map((d) => `  ${d.name.padEnd(8)} ifindex ${d.ifindex}  ${d.mac}  mtu ${d.mtu}`),
      `  bpffs root ${n.bpffsRoot}`,
      `  masquerade ${n.masquerade?.mode ?? 'off'}${n.masquerade && n.masquerade.mode !== 'off' ? ` (except ${[...n.podCidrs, ...n.masquerade.nonMasqueradeCidrs].join(', ')}${n.masquerade.mode === 'bpf' ? `; ports ${n.masquerade.portMin}-${n.masquerade.portMax}, timeouts tcp ${n.masquerade.tcpTimeout}s, udp/icmp ${n.masquerade.otherTimeout}s` : ''})` : ''}`,
    ]
    if (r.changed) lines.push('changed:', ...r.actions.map((a) => `  ${a}`))
    else lines.push('unchanged (already initialised)')
    const rc = r.reconciled
    if (rc.reaped.length > 0) {
      lines.push(`reaped ${rc.reaped.length} endpoint(s) whose netns and veth are gone (after a reboot):`)
      for (const e of rc.reaped) lines.push(`  ${e.id}  ${e.hostIfname}  netns ${e.netns}  released ${e.ips.join(', ') || '-'}`)
    }
    lines.push(`endpoints: ${rc.kept} alive, ${rc.reaped.length} reaped${rc.suspect.length ? `, ${rc.suspect.length} kept with a missing part (see warnings)` : ''}`)
    return lines.join('\n')
  }
}
