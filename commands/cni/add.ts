import {BaseCommand} from '../../src/cli/base.js'
import {attachmentRequest} from '../../src/cli/cni-request.js'
import {cniArgsFlag, cniVersionFlag, containerIdFlag, ifnameFlag, netnsFlag} from '../../src/cli/flags.js'
import {runTasks} from '../../src/cli/tasks.js'
import {cniAdd} from '../../src/cni/add.js'
import {formatResult} from '../../src/cni/result.js'
import type {CniResult} from '../../src/cni/spec.js'

export type CniAddResult = CniResult

export default class CniAdd extends BaseCommand<typeof CniAdd, CniAddResult> {
  static summary = 'Attach a pod by hand: the CNI ADD (ipam → veth → endpoint → bpf → confirm), printing the CNI result.'
  static description = `Runs exactly what a runtime gets from bin/pn-cni with CNI_COMMAND=ADD. Any failure undoes every
step done so far (no IP, veth, endpoint or map entry is left). On a terminal each step is shown as it runs.
An interface of the same name already in the netns is replaced only when it is pn's leftover of this same
attachment; anything else is an error.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --cni-version 0.4.0 --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web" --json',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    netns: netnsFlag(),
    ifname: ifnameFlag(),
    'cni-version': cniVersionFlag(),
    args: cniArgsFlag(),
  }

  async execute(): Promise<CniAddResult> {
    const f = this.flags
    const req = await attachmentRequest('ADD', {stateDir: this.stateDir, runner: this.runner}, f)
    const interactive = Boolean(process.stdout.isTTY) && !this.jsonEnabled()
    return cniAdd(req, interactive ? (plan) => runTasks(plan, {interactive: true, action: `add attachment ${req.containerId}:${req.ifname}`}) : undefined)
  }

  protected render(r: CniAddResult): string {
    return formatResult(r)
  }
}
