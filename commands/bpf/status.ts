import {BaseCommand} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
import {bpfStatus, type BpfStatus} from '../../src/datapath/bpf/index.js'
import {requireNodeContext} from '../../src/node/context.js'

export type BpfStatusResult = BpfStatus

export default class BpfStatusCmd extends BaseCommand<typeof BpfStatusCmd, BpfStatusResult> {
  static summary = "Show where pn's programs are attached (device, hook, program, id, tag) and what is pinned."
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<BpfStatusResult> {
    return bpfStatus(this.runner, await requireNodeContext(this.stateDir))
  }

  protected render(r: BpfStatusResult): string {
    const lines = [`bpffs root ${r.bpffsRoot}: ${r.loaded ? 'programs pinned' : 'programs NOT loaded'}`]
    for (const p of r.programs) lines.push(`  ${p.program.padEnd(15)} ${p.id === undefined ? '-' : `id ${p.id} tag ${p.tag}`}`)
    const rows = r.attachments.map((a) => [a.device, a.direction, a.program, a.id, `${a.tag ?? ''}${a.current ? '' : '  (stale)'}`])
    lines.push('', table(['DEVICE', 'HOOK', 'PROGRAM', 'ID', 'TAG'], rows))
    if (r.attachments.length === 0) lines.push('(no attachments)')
    return lines.join('\n')
  }
}
