import {BaseCommand} from '../../src/cli/base.js'
import {cniStatus, type StatusResult} from '../../src/cni/status.js'

export type CniStatusResult = StatusResult

export default class CniStatus extends BaseCommand<typeof CniStatus, CniStatusResult> {
  static summary = 'Can this node take a pod? The CNI STATUS: node initialised and a free pod IP.'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<CniStatusResult> {
    return cniStatus({stateDir: this.stateDir, lock: this.lock})
  }

  protected render(r: CniStatusResult): string {
    return [`node ${r.node} (routing ${r.routing}): available`, ...r.ranges.map((x) => `  ${x.cidr}: ${x.free} of ${x.capacity} free`)].join('\n')
  }
}
