import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {attachmentRequest} from '../../src/cli/cni-request.js'
import {cniVersionFlag, containerIdFlag, ifnameFlag, netnsFlag} from '../../src/cli/flags.js'
import {cniCheck, type CheckResult} from '../../src/cni/check.js'
import {prevResultFromEndpoint, readPrevResultFile} from '../../src/cni/manual.js'

export type CniCheckResult = CheckResult

export default class CniCheck extends BaseCommand<typeof CniCheck, CniCheckResult> {
  static summary = 'Check a pod attachment by hand: the CNI CHECK against the ADD result.'
  static description = `Compares the pod interface (MAC, addresses), its routes, the host veth, the IP reservation, the endpoint record and (routing bpf) the attached program with the ADD result: --prev-result FILE, or the result rebuilt from the endpoint record. Every problem is listed.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --netns /run/netns/pod1 --prev-result add-result.json --json',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    netns: netnsFlag(),
    ifname: ifnameFlag(),
    'cni-version': cniVersionFlag('cniVersion of the request (0.4.0 or later).'),
    'prev-result': Flags.string({summary: 'File holding the ADD result to check against (default: rebuilt from the endpoint record).'}),
  }

  async execute(): Promise<CniCheckResult> {
    const f = this.flags
    const containerId = f['container-id'] as string
    let prevResult: Record<string, unknown>
    if (f['prev-result']) {
      prevResult = readPrevResultFile(f['prev-result'])
    } else {
      prevResult = await prevResultFromEndpoint(this.stateDir, containerId, f.ifname, f['cni-version'])
    }
    const req = await attachmentRequest('CHECK', this.cni, f, {prevResult})
    return cniCheck(req)
  }

  protected render(r: CniCheckResult): string {
    return `ok: ${r.checked.join(', ')}`
  }
}
