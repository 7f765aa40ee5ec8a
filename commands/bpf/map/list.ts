import {BaseCommand} from '../../../src/cli/base.js'
import {listMaps, type MapInfo} from '../../../src/datapath/bpf/index.js'
import {requireNodeContext} from '../../../src/node/context.js'

export type BpfMapListResult = MapInfo[]

export default class BpfMapList extends BaseCommand<typeof BpfMapList, BpfMapListResult> {
  static summary = "List the node's pinned pn_ maps with type, sizes and entry counts."
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<BpfMapListResult> {
    return listMaps(this.runner, await requireNodeContext(this.stateDir))
  }

  protected render(r: BpfMapListResult): string {
    const lines = [`${'NAME'.padEnd(18)} ${'TYPE'.padEnd(12)} ${'KEY'.padEnd(4)} ${'VALUE'.padEnd(5)} ${'MAX'.padEnd(7)} ENTRIES`]
    for (const m of r) {
      lines.push(`${m.name.padEnd(18)} ${(m.type ?? '?').padEnd(12)} ${String(m.keySize ?? '').padEnd(4)} ${String(m.valueSize ?? '').padEnd(5)} ${String(m.maxEntries ?? '').padEnd(7)} ${m.entries}`)
    }
    if (r.length === 0) lines.push('(no maps pinned: run `pn bpf load --host`)')
    return lines.join('\n')
  }
}
