import chalk from 'chalk'
import {BaseCommand} from '../src/cli/base.js'
import {nodeStatus, type NodeStatus, type StatusItem, type StatusState} from '../src/node/status.js'

export type StatusResult = NodeStatus

const paint: Record<StatusState, (s: string) => string> = {ok: chalk.green, drifted: chalk.yellow, missing: chalk.red}
const tag = (s: StatusState) => paint[s](s === 'ok' ? 'ok' : s.toUpperCase())

function describe(i: StatusItem): string {
  const d = i.details
  if (i.kind === 'endpoint') {
    return [`endpoint ${i.name}`, String(d.containerId), d.pod ? `pod ${d.pod}` : '', (d.ips as string[]).join(','), String(d.lxc)].filter(Boolean).join('  ')
  }
  if (i.kind === 'unrecorded-device') return `${i.name} (no endpoint record)`
  if (i.kind.startsWith('stale-') || i.kind.startsWith('orphan-') || i.kind.startsWith('record-without')) return `${i.name} (${i.kind})`
  if (i.kind === 'host-routing') {
    const fb = (d.fallbacks as string[]).length ? (d.fallbacks as string[]).join(', ') : 'none'
    return `${i.name} (ifindex ${d.uplinkIfindex}): redirected ${d.redirected} + ${d.redirectedNeigh} via neighbour resolution; to the stack: ${fb}`
  }
  if (i.kind === 'endpoint-policy') return `${i.name} (endpoint ${d.endpointId}): ingress ${d.ingress}, egress ${d.egress}, ${d.rules} rule(s)`
  if (i.kind === 'masquerade') {
    return d.mode === 'bpf'
      ? `${i.name}: snat to ${d.snatIp} ports ${d.ports}, ${d.flows} flow(s), ${d.noMapping} dropped for want of a port`
      : `${i.name}: chain PN-MASQUERADE`
  }
  const addrs = Array.isArray(d.addresses) && d.addresses.length ? `  ${d.addresses.join(', ')}` : ''
  return `${i.name}${i.kind === 'uplink' ? ' (uplink)' : ''}${addrs}`
}

export default class Status extends BaseCommand<typeof Status, StatusResult> {
  static summary = "Show the node as a tree: devices, endpoints and the programs on each hook, with drift from pn's state coloured."
  static description = `ok: the kernel matches pn's state. DRIFTED: present but not as pn left it (a stale program, a device without an endpoint record). MISSING: pn's state names something the kernel lacks (a record whose lxc is gone, a hook without its program). The consistency section checks every pn_endpoints, pn_ipcache and pn_lxc entry, lxc device, host route, endpoint record and IPAM allocation against each other, both ways. Repair with \`pn node init\`, \`pn bpf load\`, or remove leftovers with \`pn cni gc\` (which also repairs what the consistency section lists).`

  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<StatusResult> {
    return nodeStatus(this.runner, this.stateDir)
  }

  protected render(r: StatusResult): string {
    const n = r.node
    const lines = [
      `${chalk.bold(`node ${n.name}`)}  uplink ${n.uplink}  pod cidr ${n.podCidrs.join(', ')}  router ${n.routerIps.join(', ')}  routing ${n.routing}  tunnel ${n.tunnel}  masquerade ${n.masquerade}  ${tag(r.state)}`,
    ]
    if (n.routing === 'bpf') lines.push(`│ bpf ${n.bpffsRoot}: ${r.programsLoaded ? 'programs pinned' : paint.missing('programs NOT loaded')}`)
    r.sections.forEach((s, si) => {
      const lastS = si === r.sections.length - 1
      lines.push(`${lastS ? '└─' : '├─'} ${chalk.bold(s.name)} ${tag(s.state)}${s.items.length === 0 ? chalk.dim('  (none)') : ''}`)
      const pre = lastS ? '   ' : '│  '
      s.items.forEach((i, ii) => {
        const lastI = ii === s.items.length - 1
        lines.push(`${pre}${lastI ? '└─' : '├─'} ${describe(i)}  ${tag(i.state)}`)
        const pre2 = pre + (lastI ? '   ' : '│  ')
        for (const h of i.hooks) {
          const prog = h.attached ?? '-'
          const want = h.expected && h.expected !== h.attached ? chalk.dim(` (expected ${h.expected})`) : ''
          lines.push(`${pre2}${h.direction.padEnd(8)} ${prog}${h.id === undefined ? '' : chalk.dim(` id ${h.id}`)}${want}  ${tag(h.state)}`)
        }
        for (const p of i.problems) lines.push(`${pre2}${paint[i.state === 'ok' ? 'drifted' : i.state](`! ${p}`)}`)
      })
    })
    return lines.join('\n')
  }
}
