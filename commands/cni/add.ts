import {BaseCommand} from '../../src/cli/base.js'
import {attachmentRequest} from '../../src/cli/cni-request.js'
import {dryRun, renderDryRun, type DryRunResult} from '../../src/cli/dry-run.js'
import {cniArgsFlag, cniVersionFlag, containerIdFlag, dryRunFlag, ifnameFlag, netnsFlag} from '../../src/cli/flags.js'
import {runTasks} from '../../src/cli/tasks.js'
import {cniAdd} from '../../src/cni/add.js'
import {formatResult} from '../../src/cni/result.js'
import type {CniResult} from '../../src/cni/spec.js'

export type CniAddResult = CniResult | DryRunResult<CniResult>

export default class CniAdd extends BaseCommand<typeof CniAdd, CniAddResult> {
  static summary = 'Attach a pod by hand: the CNI ADD (ipam → veth → endpoint → bpf → confirm), printing the CNI result.'
  static description = `Runs exactly what a runtime gets from bin/pn-cni with CNI_COMMAND=ADD. Any failure undoes every step done so far (no IP, veth, endpoint or map entry is left). On a terminal each step is shown as it runs. An interface of the same name already in the netns is replaced only when it is pn's leftover of this same attachment; anything else is an error.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --cni-version 0.4.0 --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web" --json',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --dry-run',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    netns: netnsFlag(),
    ifname: ifnameFlag(),
    'cni-version': cniVersionFlag(),
    args: cniArgsFlag(),
    'dry-run': dryRunFlag(),
  }

  async execute(): Promise<CniAddResult> {
    const f = this.flags
    if (f['dry-run']) {
      return dryRun(this.runner, this.stateDir, async (d) => cniAdd(await attachmentRequest('ADD', {...this.cni, ...d}, f)))
    }
    const req = await attachmentRequest('ADD', this.cni, f)
    const interactive = Boolean(process.stdout.isTTY) && !this.jsonEnabled()
    return cniAdd(req, (plan, action, flow) => runTasks(plan, action, {interactive, ...flow}))
  }

  protected render(r: CniAddResult): string {
    if ('dryRun' in r) return renderDryRun(r)
    return formatResult(r)
  }
}
