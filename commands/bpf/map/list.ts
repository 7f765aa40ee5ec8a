import {BaseCommand} from '../../../src/cli/base.js'
import {table} from '../../../src/cli/table.js'
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
    const rows = r.map((m) => [m.name, m.type ?? '?', m.keySize, m.valueSize, m.maxEntries, m.entries])
    const text = table(['NAME', 'TYPE', 'KEY', 'VALUE', 'MAX', 'ENTRIES'], rows, {right: [2, 3, 4, 5]})
    return r.length === 0 ? `${text}\n(no maps pinned: run \`pn bpf load --host\`)` : text
  }
}
