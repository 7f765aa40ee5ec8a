import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {addService, SERVICE_TYPES, TRAFFIC_POLICIES, type ApplyResult} from '../../src/service/index.js'
import {renderApply} from './apply.js'

export type ServiceAddResult = ApplyResult & {frontend: string}

export default class ServiceAdd extends BaseCommand<typeof ServiceAdd, ServiceAddResult> {
  static summary = 'Add a service (VIP:PORT[/tcp|udp]) load-balanced in BPF, or replace its backends in place.'
  static description = `Programs the node's service maps in one batch (batch syscalls). Adding to an existing service replaces its backend set atomically (the new set is written beside the old one, then the service switches to it); established connections to backends that stay keep working. Without --backend the service exists with no backends: its packets are dropped and counted as DROP_NO_SERVICE.`

  static examples = [
    '<%= config.bin %> <%= command.id %> 10.96.0.10:80 --backend 10.1.0.5:8080 --backend 10.2.0.7:8080',
    '<%= config.bin %> <%= command.id %> 10.96.0.53:53/udp --backend 10.1.0.9:5353 --json',
    '<%= config.bin %> <%= command.id %> 10.96.0.20:80 --backend 10.1.0.5:8080 --type NodePort --node-port 30080 --external-traffic-policy Local',
  ]

  static args = {
    frontend: Args.string({description: 'VIP:PORT[/tcp|udp] (protocol defaults to tcp).', required: true}),
  }

  static flags = {
    backend: Flags.string({summary: 'A backend IP:PORT (repeat for several).', multiple: true, multipleNonGreedy: true, default: []}),
    type: Flags.string({summary: 'ClusterIP (default) or NodePort: also reachable on every node\'s IP at --node-port.', options: [...SERVICE_TYPES]}),
    'node-port': Flags.integer({summary: 'NodePort: the port on the node IPs (30000-32767; default: allocated, stable across re-applies).'}),
    'external-ip': Flags.string({summary: 'An external IP the service also answers on, at its port (repeat for several).', multiple: true, multipleNonGreedy: true}),
    'external-traffic-policy': Flags.string({summary: 'Cluster (default: any backend, SNAT to the node for remote ones) or Local (only this node\'s backends, client IP kept).', options: [...TRAFFIC_POLICIES]}),
  }

  async execute(): Promise<ServiceAddResult> {
    const f = this.flags
    const external = {type: f.type, nodePort: f['node-port'], externalIPs: f['external-ip'], externalTrafficPolicy: f['external-traffic-policy']}
    return addService(this.runner, this.stateDir, this.args.frontend, f.backend ?? [], {lock: this.lock, external})
  }

  protected render(r: ServiceAddResult): string {
    return renderApply(r)
  }
}
