import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {deleteService, type ApplyResult} from '../../src/service/index.js'
import {renderApply} from './apply.js'

export type ServiceDeleteResult = ApplyResult & {frontends: string[]}
/** The result's old name (the command was `pn service del`, still an alias). */
export type ServiceDelResult = ServiceDeleteResult

export default class ServiceDelete extends BaseCommand<typeof ServiceDelete, ServiceDeleteResult> {
  static summary = 'Delete a service; its VIP stops being translated (a missing service is not an error).'
  static aliases = ['service:del']
  static examples = [
    '<%= config.bin %> <%= command.id %> 10.96.0.10:80/tcp',
    '<%= config.bin %> <%= command.id %> 10.96.0.10:80 --json',
  ]

  static args = {
    frontend: Args.string({description: 'VIP:PORT[/tcp|udp]; without a protocol every protocol on VIP:PORT goes.', required: true}),
  }

  async execute(): Promise<ServiceDeleteResult> {
    return deleteService(this.runner, this.stateDir, this.args.frontend, {lock: this.lock})
  }

  protected render(r: ServiceDeleteResult): string {
    return renderApply(r)
  }
}
