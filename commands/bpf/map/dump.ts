import {Args} from '@oclif/core'
import {BaseCommand} from '../../../src/cli/base.js'
import {table} from '../../../src/cli/table.js'
import {dumpMapForUser, type MapDump} from '../../../src/datapath/bpf/index.js'
import {requireNodeContext} from '../../../src/node/context.js'

export type BpfMapDumpResult = MapDump

export default class BpfMapDump extends BaseCommand<typeof BpfMapDump, BpfMapDumpResult> {
  static summary = 'Dump a pinned pn_ map with decoded keys and values (IPs, MACs, ifindexes, drop reasons).'
  static examples = [
    '<%= config.bin %> <%= command.id %> pn_endpoints',
    '<%= config.bin %> <%= command.id %> pn_metrics --json',
  ]

  static args = {
    name: Args.string({description: 'Map name (pn_endpoints, pn_lxc, pn_ipcache, pn_metrics, …; `pn bpf map list` shows them).', required: true}),
  }

  async execute(): Promise<BpfMapDumpResult> {
    const node = await requireNodeContext(this.stateDir)
    return dumpMapForUser(this.runner, node, this.args.name)
  }

  protected render(r: BpfMapDumpResult): string {
    const fmt = (o: Record<string, unknown>) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join(' ')
    if (r.map === 'pn_metrics') {
      const rows = [...r.entries].sort((a, b) => String(a.key.point).localeCompare(String(b.key.point)))
      const cells = rows.map((e) => [e.key.point, e.key.direction, e.key.reason, e.value.packets, e.value.bytes].map((c) => String(c)))
      return table(['POINT', 'DIR', 'REASON', 'PACKETS', 'BYTES'], cells, {right: [3, 4]})
    }
    if (r.note) return [...r.entries.map((e) => `${fmt(e.key)} -> ${fmt(e.value)}`), r.note].join('\n')
    if (r.entries.length === 0) return `${r.map}: empty`
    return r.entries.map((e) => `${fmt(e.key)} -> ${fmt(e.value)}`).join('\n')
  }
}
