import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {PnError} from '../../src/errors.js'
import {requireEndpoint, requireEndpointById, type EndpointRecord} from '../../src/endpoint/store.js'

export type EndpointShowResult = EndpointRecord

export default class EndpointShow extends BaseCommand<typeof EndpointShow, EndpointShowResult> {
  static summary = 'Show one endpoint record.'
  static examples = [
    '<%= config.bin %> <%= command.id %> 1234',
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --ifname eth0 --json',
  ]

  static args = {id: Args.string({description: 'Endpoint id (the number `pn monitor --endpoint` and `pn status` print).'})}
  static flags = {'container-id': containerIdFlag(false), ifname: ifnameFlag()}

  async execute(): Promise<EndpointShowResult> {
    const id = this.args.id
    const containerId = this.flags['container-id']
    if ((id === undefined) === (containerId === undefined)) {
      throw new PnError('PN_INVALID_ARGUMENT', `show endpoint: give ${id === undefined ? 'an endpoint id or --container-id' : 'an endpoint id or --container-id, not both'}`, {
        hint: 'e.g. `pn endpoint show 1234` or `pn endpoint show --container-id pod1`; `pn endpoint list` shows both',
      })
    }
    if (id !== undefined) {
      if (!/^\d+$/.test(id)) {
        throw new PnError('PN_INVALID_ARGUMENT', `show endpoint ${id}: an endpoint id is a number`, {
          hint: 'name a container by `--container-id`; `pn endpoint list` shows the ids',
        })
      }
      return requireEndpointById(this.stateDir, Number(id))
    }
    return requireEndpoint(this.stateDir, containerId as string, this.flags.ifname)
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
