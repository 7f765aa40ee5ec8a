import {Flags} from '@oclif/core'
import chalk from 'chalk'
import {BaseCommand} from '../src/cli/base.js'
import {containerIdFlag} from '../src/cli/flags.js'
import {IdentityLabels} from '../src/cluster/identities.js'
import {openClusterStore} from '../src/cluster/store.js'
import {parseDuration} from '../src/ipam/duration.js'
import {monitorNode, type MonitorEvent, type MonitorResult} from '../src/node/monitor.js'

export type MonitorCmdResult = MonitorResult
export type {MonitorEvent} from '../src/node/monitor.js'

const POINT_WIDTH = 13
const PROGRAM_WIDTH = 14

function identityText(id: number, labels?: string[]): string {
  return labels && labels.length > 0 ? `${id} (${labels.join(',')})` : `${id}`
}

/** One aligned line per event, like `cilium monitor`: time, type, point, program, device, endpoint, flow. */
export function formatEvent(ev: MonitorEvent): string {
  const time = ev.time.slice(11, 23)
  const type = ev.type === 'drop' ? chalk.red.bold('DROP ') : chalk.dim('trace')
  const pointText = ev.observationPoint.padEnd(POINT_WIDTH)
  const point = ev.type === 'drop' ? chalk.red(pointText) : ev.observationPoint.startsWith('from') ? chalk.cyan(pointText) : chalk.green(pointText)
  const ep = ev.endpoint ? `ep ${ev.endpoint.endpointId}${ev.endpoint.podName ? ` ${ev.endpoint.podName}` : ''}` : '-'
  const device = ev.target && ev.target !== ev.device ? `${ev.device}→${ev.target}` : ev.device
  let flow = `${ev.srcIp ?? '?'}${ev.srcPort === undefined ? '' : `:${ev.srcPort}`} -> ${ev.dstIp ?? '?'}${ev.dstPort === undefined ? '' : `:${ev.dstPort}`}`
  if (!ev.srcIp) flow = ev.ethertype
  let what = ev.protocol ?? ev.ethertype
  if (ev.icmp) what += ev.icmp.type === 8 ? ` echo-request id ${ev.icmp.id} seq ${ev.icmp.seq}` : ev.icmp.type === 0 ? ` echo-reply id ${ev.icmp.id} seq ${ev.icmp.seq}` : ` type ${ev.icmp.type} code ${ev.icmp.code}`
  if (ev.arp !== undefined) what += ` ${ev.arp}`
  let svc = ev.service ? ` (service ${ev.service.ip}${ev.service.port ? `:${ev.service.port}` : ''})` : ''
  if (ev.nat) svc = ` (${ev.nat.kind === 'snat' ? 'snat from' : 'rev-snat from'} ${ev.nat.ip}${ev.nat.port ? `:${ev.nat.port}` : ''})`
  const ids = ev.identities ? ` identity ${identityText(ev.identities.src, ev.identities.srcLabels)} → ${identityText(ev.identities.dst, ev.identities.dstLabels)}` : ''
  const reason = ev.type === 'drop' ? chalk.red(`  ${ev.reason.name} (${ev.reason.description})`) : ''
  return [time, type, point, ev.program.padEnd(PROGRAM_WIDTH), device.padEnd(31), ep.padEnd(14), `${flow}${svc} ${what} len ${ev.length}${ids}${reason}`].join(' ')
}

export default class Monitor extends BaseCommand<typeof Monitor, MonitorCmdResult> {
  static summary = "Stream the node's datapath events: a trace at each observation point and every drop with its reason."
  static description = `Like \`cilium monitor\`: each packet a pn program sees is reported where it was seen (from-endpoint, to-endpoint, from-network, to-network, from-host, to-host, to-stack), and every drop with its reason from the shared drop-reason table. Tracing costs nothing while no monitor runs: this command opens a gate in the pn_trace_config map and closes it on exit (a watchdog closes it if the monitor is killed). One monitor per node.

With --json, each event is one JSON object on its own line (NDJSON) as it happens; there is no final envelope. An error is still printed as the usual {"status":"error",…} object.`

  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --type drop',
    '<%= config.bin %> <%= command.id %> --container-id pod-a --count 10',
    '<%= config.bin %> <%= command.id %> --from-ip 10.201.1.10 --duration 5s --json',
    '<%= config.bin %> <%= command.id %> --type drop --cluster etcd://10.0.0.5:2379/pn',
  ]

  static flags = {
    type: Flags.string({summary: 'Only this event type (repeat for both).', options: ['trace', 'drop'], multiple: true}),
    endpoint: Flags.integer({summary: 'Only events of this endpoint id (either side; `pn endpoint list`).', min: 1}),
    'container-id': containerIdFlag(false),
    ip: Flags.string({summary: 'Only packets from or to this address.'}),
    'from-ip': Flags.string({summary: 'Only packets from this source address.'}),
    'to-ip': Flags.string({summary: 'Only packets to this destination address.'}),
    count: Flags.integer({summary: 'Stop after this many events (after filtering).', min: 1}),
    duration: Flags.string({summary: 'Stop after this long, e.g. 5s, 2m.'}),
    cluster: Flags.string({summary: 'Cluster store to show the labels of security identities from (policy drops name both sides); reserved identities are named without it.', env: 'PN_CLUSTER'}),
  }

  async execute(): Promise<MonitorCmdResult> {
    const f = this.flags
    const json = this.jsonEnabled()
    const store = f.cluster === undefined ? undefined : openClusterStore(f.cluster)
    const names = new IdentityLabels(store)
    // Identities seen for the first time while monitoring are looked up again (at most every 2 s).
    let refreshed = 0
    const refresh = () => {
      if (!store || Date.now() - refreshed < 2000) return
      refreshed = Date.now()
      names.refresh().catch((err) => process.stderr.write(chalk.dim(`identity labels: ${(err as Error).message}\n`)))
    }
    try {
      await names.refresh()
      refreshed = Date.now()
    } catch (err) {
      process.stderr.write(chalk.dim(`identity labels: ${(err as Error).message}\n`))
    }
    const named = (ev: MonitorEvent): MonitorEvent => {
      if (!ev.identities) return ev
      const srcLabels = names.labels(ev.identities.src)
      const dstLabels = names.labels(ev.identities.dst)
      if ((!srcLabels && ev.identities.src >= 256) || (!dstLabels && ev.identities.dst >= 256)) refresh()
      return {...ev, identities: {...ev.identities, ...(srcLabels ? {srcLabels} : {}), ...(dstLabels ? {dstLabels} : {})}}
    }
    try {
      return await this.monitor(json, named)
    } finally {
      await store?.close()
    }
  }

  private monitor(json: boolean, named: (ev: MonitorEvent) => MonitorEvent): Promise<MonitorCmdResult> {
    const f = this.flags
    return monitorNode(this.runner, this.stateDir, {
      types: f.type as ('trace' | 'drop')[] | undefined,
      endpointId: f.endpoint,
      containerId: f['container-id'],
      ip: f.ip,
      fromIp: f['from-ip'],
      toIp: f['to-ip'],
      count: f.count,
      durationMs: f.duration === undefined ? undefined : parseDuration(f.duration),
      signal: this.flow.signal,
      onReady: (info) => process.stderr.write(chalk.dim(`listening for events on node ${info.node} (Ctrl-C to stop)\n`)),
      onEvent: (raw) => {
        const ev = named(raw)
        process.stdout.write((json ? JSON.stringify(ev) : formatEvent(ev)) + '\n')
      },
    })
  }

  protected render(r: MonitorCmdResult): string {
    return chalk.dim(`${r.events} event(s)${r.lost ? `, ${r.lost} lost` : ''}; stopped by ${r.stoppedBy}; tracing ${r.gateClosed ? 'off again' : 'state unknown'}`)
  }

  /** NDJSON: the events were the output; no success envelope after them (errors keep theirs). */
  public override logJson(json: unknown): void {
    if (json && typeof json === 'object' && (json as {status?: string}).status === 'ok') return
    super.logJson(json)
  }
}
