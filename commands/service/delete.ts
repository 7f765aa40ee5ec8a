import {Args} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {deleteService, type ApplyResult} from '../../src/service/index.js'
import {renderApply} from './apply.js'

export type ServiceDelResult = ApplyResult & {frontends: string[]}

export default class ServiceDel extends BaseCommand<typeof ServiceDel, ServiceDelResult> {
  static summary = 'Delete a service; its VIP stops being translated (a missing service is not an error).'
  static examples = [
    '<%= config.bin %> <%= command.id %> 10.96.0.10:80/tcp',
    '<%= config.bin %> <%= command.id %> 10.96.0.10:80 --json',
  ]

  static args = {
    frontend: Args.string({description: 'VIP:PORT[/tcp|udp]; without a protocol every protocol on VIP:PORT goes.', required: true}),
  }

  async execute(): Promise<ServiceDelResult> {
    return deleteService(this.runner, this.stateDir, this.args.frontend, {lock: this.lock})
  }

  protected render(r: ServiceDelResult): string {
    return renderApply(r)
  }
}
