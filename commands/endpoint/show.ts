import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {requireEndpoint, type EndpointRecord} from '../../src/endpoint/store.js'

export type EndpointShowResult = EndpointRecord

export default class EndpointShow extends BaseCommand<typeof EndpointShow, EndpointShowResult> {
  static summary = 'Show one endpoint record.'
  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --ifname eth0 --json',
  ]

  static flags = {'container-id': containerIdFlag(), ifname: ifnameFlag()}

  async execute(): Promise<EndpointShowResult> {
    return requireEndpoint(this.stateDir, this.flags['container-id'] as string, this.flags.ifname)
  }

  protected render(e: EndpointShowResult): string {
    return [
      `endpoint ${e.id} (id ${e.endpointId})${e.podName ? `  pod ${e.podNamespace ?? 'default'}/${e.podName}` : ''}`,
      `  netns   ${e.netns}`,
      `  host    ${e.hostIfname} ifindex ${e.hostIfindex} ${e.hostMac}`,
      `  pod     ${e.podIfname} ifindex ${e.podIfindex} ${e.podMac}`,
      `  ips     ${e.ips.join(', ') || '-'} (router ${e.routerIps.join(', ') || '-'}), mtu ${e.mtu}`,
      `  bpf     ${e.bpfAttached ? 'attached' : 'not attached'}`,
      `  created ${e.createdAt}`,
    ].join('\n')
  }
}
