import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {containerIdFlag, ifnameFlag} from '../../src/cli/flags.js'
import {deleteVeth} from '../../src/node/veth.js'
import {deleteEndpoint} from '../../src/endpoint/store.js'

export interface EndpointDeleteResult {
  changed: boolean
  id: string
  recordDeleted: boolean
  linkDeleted: boolean
}

export default class EndpointDelete extends BaseCommand<typeof EndpointDelete, EndpointDeleteResult> {
  static summary = 'Delete an endpoint record (with --purge also its veth pair).'
  static examples = [
    '<%= config.bin %> <%= command.id %> --container-id pod1',
    '<%= config.bin %> <%= command.id %> --container-id pod1 --purge --json',
  ]

  static flags = {
    'container-id': containerIdFlag(),
    ifname: ifnameFlag(),
    purge: Flags.boolean({summary: 'Also delete the veth pair (as `pn veth delete`).'}),
  }

  async execute(): Promise<EndpointDeleteResult> {
    const containerId = this.flags['container-id'] as string
    const ifname = this.flags.ifname
    const id = `${containerId}:${ifname}`
    if (this.flags.purge) {
      const r = await deleteVeth(this.runner, this.stateDir, {containerId, ifname})
      return {changed: r.changed, id, recordDeleted: r.endpointDeleted, linkDeleted: r.linkDeleted}
    }
    const r = await deleteEndpoint(this.stateDir, containerId, ifname)
    if (r.record) {
      // Only the record goes: what the kernel holds for it stays until a purge or `pn cni gc`.
      this.warnings.push(`the veth ${r.record.hostIfname}${r.record.bpfAttached ? ', its BPF filter and map entries' : ''} stay; \`pn status\` reports them and \`pn cni gc\` removes them (or delete with --purge)`)
    }
    return {changed: r.deleted, id, recordDeleted: r.deleted, linkDeleted: false}
  }

  protected render(r: EndpointDeleteResult): string {
    if (!r.changed) return `${r.id}: nothing to delete`
    return `deleted endpoint ${r.id}${r.linkDeleted ? ' and its veth pair' : ''}`
  }
}
