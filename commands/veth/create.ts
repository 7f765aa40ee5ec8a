import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {dryRun, renderDryRun, type DryRunResult} from '../../src/cli/dry-run.js'
import {containerIdFlag, dryRunFlag, ifnameFlag, mtuFlag, netnsFlag} from '../../src/cli/flags.js'
import {createVeth, type CreateVethOptions, type CreateVethResult} from '../../src/node/veth.js'

export type VethCreateResult = CreateVethResult | DryRunResult<CreateVethResult>

export default class VethCreate extends BaseCommand<typeof VethCreate, VethCreateResult> {
  static summary = 'Create a pod veth pair: lxc<hash> on the host, the pod interface in its netns.'
  static description = `The host side is named lxc + 12 hex chars of sha256(<container-id>:<ifname>), so it can be found again without state. The pod side is created directly in the pod netns under its final name. With --ip the pod gets IP/32 (IPv6 /128), a route to the router IP (scope link) and a default route via the router IP carrying the route MTU, read from node.json (or --router-ip when standalone). In host-routes mode a podIP/32 route to the lxc device is added on the host. An endpoint record is written. Any failure removes what was made.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --ip 10.0.1.23',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --ip 10.0.1.23 --pod-name web --pod-namespace default --json',
    '<%= config.bin %> <%= command.id %> --container-id c1 --netns /proc/4242/ns/net --router-ip 10.0.1.1 --ip 10.0.1.9 --mtu 1450',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --ip 10.0.1.23 --dry-run',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    netns: netnsFlag(),
    ifname: ifnameFlag(),
    mtu: mtuFlag(),
    ip: Flags.string({summary: 'Pod IP (one per family), usually from `pn ipam alloc`.', multiple: true}),
    'router-ip': Flags.string({summary: 'Router IP per family (default: from node.json).', multiple: true}),
    'pod-name': Flags.string({summary: 'Kubernetes pod name (K8S_POD_NAME), stored in the endpoint.'}),
    'pod-namespace': Flags.string({summary: 'Kubernetes pod namespace (K8S_POD_NAMESPACE), stored in the endpoint.'}),
    'dry-run': dryRunFlag(),
  }

  async execute(): Promise<VethCreateResult> {
    const f = this.flags
    const opts: CreateVethOptions = {
      containerId: f['container-id'] as string, // required: oclif enforces it; the shared builder's type loses that
      ifname: f.ifname,
      netns: f.netns as string,
      ips: f.ip,
      mtu: f.mtu,
      routerIps: f['router-ip'],
      podName: f['pod-name'],
      podNamespace: f['pod-namespace'],
    }
    if (f['dry-run']) return dryRun(this.runner, this.stateDir, (d) => createVeth(d.runner, d.stateDir, opts))
    return createVeth(this.runner, this.stateDir, opts, this.flow)
  }

  protected render(r: VethCreateResult): string {
    if ('dryRun' in r) return renderDryRun(r)
    const lines = [
      `created ${r.hostIfname} (ifindex ${r.hostIfindex}, ${r.hostMac}) <-> ${r.podIfname} (ifindex ${r.podIfindex}, ${r.podMac}) in ${r.netns}`,
      `endpoint id ${r.endpointId}, mtu ${r.mtu}`,
    ]
    for (const a of r.addresses) lines.push(`pod address ${a}`)
    for (const rt of r.routes) {
      lines.push(`pod route   ${rt.dst}${rt.gw ? ` via ${rt.gw}` : ''} dev ${r.podIfname}${rt.scope ? ` scope ${rt.scope}` : ''}${rt.mtu ? ` mtu ${rt.mtu}` : ''}`)
    }
    for (const h of r.hostRoutes) lines.push(`host route  ${h} dev ${r.hostIfname}`)
    return lines.join('\n')
  }
}
