import {BaseCommand} from '../../src/cli/base.js'
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
    lines.push('', `${'DEVICE'.padEnd(16)} ${'HOOK'.padEnd(8)} ${'PROGRAM'.padEnd(15)} ${'ID'.padEnd(6)} TAG`)
    for (const a of r.attachments) {
      lines.push(`${a.device.padEnd(16)} ${a.direction.padEnd(8)} ${a.program.padEnd(15)} ${String(a.id).padEnd(6)} ${a.tag ?? ''}${a.current ? '' : '  (stale)'}`)
    }
    if (r.attachments.length === 0) lines.push('(no attachments)')
    return lines.join('\n')
  }
}
