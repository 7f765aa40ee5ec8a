/**
 * `pn monitor`: stream the node's datapath events, like `cilium monitor`. Opens the gate in
 * pn_trace_config for as long as it runs (and a watchdog closes it if this process is killed),
 * reads pn_events through `bpftool map event_pipe`, and names what the kernel only numbers:
 * ifindexes become devices, IPs and lxc ifindexes become endpoints (container id, pod name).
 * The library never prints: each event goes to `onEvent`.
 */
import path from 'node:path'
import {PnError, isPnError} from '../errors.js'
import {acquireFlock, type HeldLock} from '../exec/flock.js'
import type {Runner} from '../exec/runner.js'
import {parseIp} from '../cidr/cidr.js'
import {
  decodeRecord,
  EventPipeParser,
  openEventPipe,
  requireMonitorMaps,
  setTraceGate,
  spawnGateWatchdog,
  waitReaderReady,
} from '../datapath/bpf/monitor.js'
import {TRACE_CFG_DROP, TRACE_CFG_TRACE, type DatapathEvent} from '../datapath/bpf/maps/trace.js'
import {listLinks} from '../datapath/link.js'
import {listEndpoints, type EndpointRecord} from '../endpoint/store.js'
import {requireNodeContext} from './context.js'

/** The file whose exclusive flock marks "a monitor reads this node's events". */
export function monitorLockPath(stateDir: string): string {
  return path.join(stateDir, 'monitor.lock')
}

export interface MonitorFilter {
  /** Only these event types (default both). */
  types?: ('trace' | 'drop')[]
  /** Endpoint id (pn's small integer) on either side. */
  endpointId?: number
  /** Container id on either side. */
  containerId?: string
  /** Source or destination address. */
  ip?: string
  fromIp?: string
  toIp?: string
}

export interface EndpointRef {
  endpointId: number
  containerId: string
  ifname: string
  podName?: string
  podNamespace?: string
}

/** One event as `pn monitor` shows it (the `--json` line). */
export interface MonitorEvent {
  time: string
  type: 'trace' | 'drop'
  /** Where the packet was seen (trace) or dropped (drop): from-endpoint, to-stack, … */
  observationPoint: string
  program: string
  device: string
  ifindex: number
  direction: string
  /** Trace: the program's outcome (TRACE_*). Drop: the reason (DROP_*). */
  reason: {name: string; code: number; description: string}
  /** The local endpoint this event is about: the sender for from-endpoint, the receiver for to-endpoint, else whichever side is local. */
  endpoint?: EndpointRef
  srcEndpoint?: EndpointRef
  dstEndpoint?: EndpointRef
  /** to-endpoint: the lxc the packet was delivered to. */
  target?: string
  ethertype: string
  protocol?: string
  srcIp?: string
  dstIp?: string
  srcPort?: number
  dstPort?: number
  icmp?: {type: number; code: number; id?: number; seq?: number}
  arp?: 'request' | 'reply' | number
  length: number
  /**
   * Service translation: the VIP (and port) the packet was addressed to before load balancing
   * (lb4_xlate in from-container records it for the event).
   */
  service?: {ip: string; port?: number}
  /** Security identities of source and destination (policy); labels when the caller resolved them. */
  identities?: {src: number; dst: number; srcLabels?: string[]; dstLabels?: string[]}
  /** Masquerade: the source before SNAT (`snat`, to-network) or the destination before the reply was translated back (`rev-snat`, from-network). */
  nat?: {kind: 'snat' | 'rev-snat'; ip: string; port?: number}
}

export interface MonitorOptions extends MonitorFilter {
  /** Stop after this many events (after filtering). */
  count?: number
  /** Stop after this long. */
  durationMs?: number
  /** Stop when aborted (Ctrl-C). */
  signal?: AbortSignal
  onEvent(ev: MonitorEvent): void
  /** Called once the reader is attached and the gate is open. */
  onReady?(info: {node: string; bpffsRoot: string; watchdogPid: number}): void
}

export interface MonitorResult {
  node: string
  events: number
  /** Events the kernel could not hand over (perf buffer full). */
  lost: number
  stoppedBy: 'count' | 'duration' | 'signal' | 'reader-exit'
  /** The gate is closed again (this monitor closed it; the watchdog makes sure). */
  gateClosed: boolean
  warnings: string[]
}

/** Wall-clock time of a CLOCK_MONOTONIC stamp, given the offset between the two clocks. */
export function eventTime(ktimeNs: bigint, wallMinusMonoNs: bigint): string {
  return new Date(Number((ktimeNs + wallMinusMonoNs) / 1_000_000n)).toISOString()
}

/** Current wall-clock minus CLOCK_MONOTONIC (process.hrtime is CLOCK_MONOTONIC on Linux). */
export function clockOffsetNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()
}

/** Kernel names for numbers: ifindex → device, IP/ifindex → endpoint. Refreshed on a miss. */
export interface Resolver {
  device(ifindex: number): string | undefined
  byIp(ip: string): EndpointRecord | undefined
  byIfindex(ifindex: number): EndpointRecord | undefined
}

export function makeResolver(links: {ifindex: number; ifname: string}[], records: EndpointRecord[]): Resolver {
  const dev = new Map(links.map((l) => [l.ifindex, l.ifname]))
  const ip = new Map<string, EndpointRecord>()
  for (const r of records) for (const a of r.ips) ip.set(canonicalIp(a), r)
  const idx = new Map(records.map((r) => [r.hostIfindex, r]))
  return {device: (i) => dev.get(i), byIp: (a) => ip.get(canonicalIp(a)), byIfindex: (i) => idx.get(i)}
}

function canonicalIp(a: string): string {
  try {
    const p = parseIp(a)
    return `${p.family}:${p.value}`
  } catch {
    return a
  }
}

function ref(r: EndpointRecord | undefined): EndpointRef | undefined {
  if (!r) return undefined
  return {
    endpointId: r.endpointId,
    containerId: r.containerId,
    ifname: r.ifname,
    ...(r.podName ? {podName: r.podName} : {}),
    ...(r.podNamespace ? {podNamespace: r.podNamespace} : {}),
  }
}

/** Name a decoded datapath event with the node's devices and endpoints. Pure. */
export function describeEvent(ev: DatapathEvent, res: Resolver, wallMinusMonoNs: bigint): MonitorEvent {
  const src = ev.srcIp ? res.byIp(ev.srcIp) : undefined
  const dst = ev.dstIp ? res.byIp(ev.dstIp) : undefined
  const here = res.byIfindex(ev.ifindex)
  let endpoint: EndpointRecord | undefined
  if (ev.observationPoint === 'from-endpoint') endpoint = here ?? src
  else if (ev.observationPoint === 'to-endpoint') endpoint = dst ?? here
  else endpoint = here ?? dst ?? src
  const out: MonitorEvent = {
    time: eventTime(ev.ktimeNs, wallMinusMonoNs),
    type: ev.type,
    observationPoint: ev.observationPoint,
    program: ev.program,
    device: res.device(ev.ifindex) ?? `ifindex ${ev.ifindex}`,
    ifindex: ev.ifindex,
    direction: ev.direction,
    reason: ev.reason,
    ...(endpoint ? {endpoint: ref(endpoint)} : {}),
    ...(src ? {srcEndpoint: ref(src)} : {}),
    ...(dst ? {dstEndpoint: ref(dst)} : {}),
    ethertype: ev.ethertype,
    length: ev.length,
  }
  if (ev.observationPoint === 'to-endpoint' && ev.type === 'trace') {
    const lxc = ev.protocol === 'arp' ? here : dst
    if (lxc) out.target = lxc.hostIfname
  }
  for (const k of ['protocol', 'srcIp', 'dstIp', 'srcPort', 'dstPort', 'icmp', 'arp', 'service', 'nat', 'identities'] as const) {
    if (ev[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = ev[k]
  }
  return out
}

function sameIp(a: string | undefined, b: string): boolean {
  return a !== undefined && canonicalIp(a) === canonicalIp(b)
}

/** Does an event pass the filters? Pure. */
export function matchesFilter(ev: MonitorEvent, f: MonitorFilter): boolean {
  if (f.types && f.types.length > 0 && !f.types.includes(ev.type)) return false
  const eps = [ev.endpoint, ev.srcEndpoint, ev.dstEndpoint].filter((e): e is EndpointRef => !!e)
  if (f.endpointId !== undefined && !eps.some((e) => e.endpointId === f.endpointId)) return false
  if (f.containerId !== undefined && !eps.some((e) => e.containerId === f.containerId)) return false
  if (f.ip && !sameIp(ev.srcIp, f.ip) && !sameIp(ev.dstIp, f.ip)) return false
  if (f.fromIp && !sameIp(ev.srcIp, f.fromIp)) return false
  if (f.toIp && !sameIp(ev.dstIp, f.toIp)) return false
  return true
}

/** Gate flags for the requested types: `--type drop` asks the kernel for drops only. */
export function gateFlags(types?: ('trace' | 'drop')[]): number {
  if (!types || types.length === 0) return TRACE_CFG_TRACE | TRACE_CFG_DROP
  return (types.includes('trace') ? TRACE_CFG_TRACE : 0) | (types.includes('drop') ? TRACE_CFG_DROP : 0)
}

function validateFilter(f: MonitorFilter): void {
  for (const [flag, v] of [['--ip', f.ip], ['--from-ip', f.fromIp], ['--to-ip', f.toIp]] as const) {
    if (v === undefined) continue
    try {
      parseIp(v)
    } catch {
      throw new PnError('PN_INVALID_IP', `parse ${flag} ${JSON.stringify(v)}: not an IP address`, {hint: 'write it like 10.0.1.5 or fd00::5'})
    }
  }
  if (f.endpointId !== undefined && (!Number.isInteger(f.endpointId) || f.endpointId < 1)) {
    throw new PnError('PN_INVALID_ARGUMENT', `parse --endpoint ${f.endpointId}: not an endpoint id`, {hint: '`pn endpoint list` shows the ids'})
  }
}

async function takeMonitorLock(stateDir: string): Promise<HeldLock> {
  try {
    return await acquireFlock(monitorLockPath(stateDir), 2000)
  } catch (err) {
    if (!isPnError(err, 'PN_LOCK_TIMEOUT')) throw err
    throw new PnError('PN_MONITOR_BUSY', `start monitor on ${stateDir}: another pn monitor is reading this node's events`, {
      hint: 'one monitor per node (a perf event array has one reader); stop the other one, or watch its output',
    })
  }
}

/**
 * Stream events until `count`, `durationMs`, the signal, or the reader ends. The gate is
 * closed on every way out; if this process is killed, the watchdog closes it.
 */
export async function monitorNode(runner: Runner, stateDir: string, opts: MonitorOptions): Promise<MonitorResult> {
  validateFilter(opts)
  const node = await requireNodeContext(stateDir)
  const root = node.bpffsRoot
  // A host-routes node has no pn program in its packet path (ADD attaches none), so there is
  // nothing to read; loading the host programs there only makes `pn status` report drift.
  if (node.routing !== 'bpf') {
    throw new PnError('PN_BPF_NOT_LOADED', `start monitor on node ${node.name}: routing is ${node.routing}, the kernel's stack forwards pod traffic and no pn program emits events`, {
      hint: 'pn monitor reads the bpf datapath: use a node initialised with `--routing bpf` (pn node reset, then pn node init --routing bpf); on this node use tcpdump on the lxc devices',
      details: {routing: node.routing},
    })
  }
  await requireMonitorMaps(root)
  const warnings: string[] = []
  const lock = await takeMonitorLock(stateDir)
  let reader: ReturnType<typeof openEventPipe> | undefined
  let gateOpened = false
  let stoppedBy: MonitorResult['stoppedBy'] = 'reader-exit'
  let events = 0
  let lost = 0
  const stop = new AbortController()
  const onAbort = () => {
    stoppedBy = 'signal'
    stop.abort()
  }
  opts.signal?.addEventListener('abort', onAbort)
  let timer: NodeJS.Timeout | undefined
  try {
    const watchdog = await spawnGateWatchdog(runner, monitorLockPath(stateDir), root)
    reader = openEventPipe(runner, root)
    const ready = await waitReaderReady(reader.pid)
    if (!ready) warnings.push('could not confirm the event reader attached on every CPU; the first events may be missing')
    await setTraceGate(runner, root, gateFlags(opts.types))
    gateOpened = true
    let res = await loadResolver(runner, stateDir)
    let refreshedAt = Date.now()
    const offset = clockOffsetNs()
    opts.onReady?.({node: node.name, bpffsRoot: root, watchdogPid: watchdog.pid})
    if (opts.signal?.aborted) onAbort()
    if (opts.durationMs !== undefined) {
      timer = setTimeout(() => {
        stoppedBy = 'duration'
        stop.abort()
      }, opts.durationMs)
    }
    const parser = new EventPipeParser()
    const stopped = new Promise<'stop'>((resolve) => {
      if (stop.signal.aborted) resolve('stop')
      stop.signal.addEventListener('abort', () => resolve('stop'), {once: true})
    })
    const it = reader.chunks[Symbol.asyncIterator]()
    while (!stop.signal.aborted) {
      const next = await Promise.race([it.next(), stopped])
      if (next === 'stop' || next.done) break
      for (const rec of parser.feed(next.value)) {
        const item = decodeRecord(rec)
        if (!item) continue
        if (item.kind === 'lost') {
          lost += item.count
          continue
        }
        const ev = item.event
        // A device or pod the resolver has not seen: reread the kernel and records (at most once a second).
        const unknown = !res.device(ev.ifindex) || (ev.srcIp && !res.byIp(ev.srcIp) && ev.observationPoint === 'from-endpoint')
        if (unknown && Date.now() - refreshedAt > 1000) {
          res = await loadResolver(runner, stateDir)
          refreshedAt = Date.now()
        }
        const out = describeEvent(ev, res, offset)
        if (!matchesFilter(out, opts)) continue
        events++
        opts.onEvent(out)
        if (opts.count !== undefined && events >= opts.count) {
          stoppedBy = 'count'
          stop.abort()
          break
        }
      }
    }
    // Leave the iterator without waiting on it: on a quiet pipe (no event since the stop) a
    // pending next() never settles and neither would return(); reader.stop() below destroys the
    // stream and ends bpftool, which settles both.
    void it.return?.().catch(() => undefined)
    if (stoppedBy === 'reader-exit' && reader) {
      const {exitCode, stderr} = await reader.exited
      if (exitCode !== 0) {
        throw new PnError('PN_COMMAND_FAILED', `read events from ${root}: bpftool event_pipe exited with ${exitCode}: ${stderr.trim().split('\n').pop() ?? ''}`, {
          hint: 'check `pn bpf map list` shows pn_events; `pn bpf load --host` repairs a node',
          details: {argv: reader.argv, stderr},
        })
      }
    }
  } finally {
    if (timer) clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onAbort)
    // Close the gate while still holding the lock (a monitor that starts next opens it after us).
    if (gateOpened) await setTraceGate(runner, root, 0).catch((e: Error) => warnings.push(`close the trace gate: ${e.message} (the watchdog will)`))
    await reader?.stop()
    await lock.release()
  }
  return {node: node.name, events, lost, stoppedBy, gateClosed: gateOpened, warnings}
}

async function loadResolver(runner: Runner, stateDir: string): Promise<Resolver> {
  const [links, records] = await Promise.all([listLinks(runner), listEndpoints(stateDir)])
  return makeResolver(links, records)
}
