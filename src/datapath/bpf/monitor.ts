/**
 * The datapath half of `pn monitor`: the gate in pn_trace_config, a watchdog that closes it if
 * the monitor dies, and the event stream read through `bpftool map event_pipe` (the only
 * reader of a perf event array bpftool has, hence pn_events is one). Decoding is pure and
 * lives in maps/trace.ts; resolving ifindexes and endpoints is the node layer's job.
 *
 * One reader per node: a perf event array slot holds one perf buffer per CPU, so a second
 * `event_pipe` on the same map silently takes the events away from the first. The monitor
 * holds an exclusive flock for as long as it reads; the watchdog waits for that same lock.
 */
import {promises as fs} from 'node:fs'
import {PnError} from '../../errors.js'
import type {Runner, StreamedChild} from '../../exec/runner.js'
import {applyOne} from '../../kernel/backend.js'
import {kernelFor} from '../../kernel/tools.js'
import {mapPath, pathExists} from './bpffs.js'
import {possibleCpus} from './map-io.js'
import {decodeTraceEvent, encodeTraceConfig, encodeTraceConfigKey, TRACE_EVENT, type DatapathEvent} from './maps/trace.js'
import {hexWords} from './maps/layout.js'

export const EVENTS_MAP = 'pn_events'
export const TRACE_CONFIG_MAP = 'pn_trace_config'

/** The maps a monitor needs; a node loaded by a pn without them must be reloaded. */
export async function requireMonitorMaps(root: string): Promise<void> {
  for (const m of [EVENTS_MAP, TRACE_CONFIG_MAP]) {
    if (await pathExists(mapPath(root, m))) continue
    throw new PnError('PN_BPF_NOT_LOADED', `monitor datapath: map ${m} is not pinned under ${root}`, {
      hint: 'load the datapath (`pn node init` in bpf mode, or `pn bpf load --host`); a node loaded by an older pn needs `pn bpf unload --host --force` and a new load to get programs that emit events',
    })
  }
}

/** `bpftool map update` argv that sets the gate (flags 0 closes it). */
export function traceGateArgs(root: string, flags: number): string[] {
  return ['map', 'update', 'pinned', mapPath(root, TRACE_CONFIG_MAP), 'key', ...hexWords(encodeTraceConfigKey()), 'value', ...hexWords(encodeTraceConfig(flags))]
}

export async function setTraceGate(runner: Runner, root: string, flags: number): Promise<void> {
  await applyOne(kernelFor(runner), {kind: 'map.update', map: mapPath(root, TRACE_CONFIG_MAP), key: encodeTraceConfigKey(), value: encodeTraceConfig(flags)})
}

/**
 * argv of the watchdog: `flock -x LOCK bpftool map update … value 0`. flock(1) blocks until the
 * monitor's lock is gone — released on a clean exit, dropped by the kernel when the monitor is
 * killed (its lock helper sees EOF) — then closes the gate and exits. No polling, no shell.
 */
export function watchdogArgv(lockPath: string, root: string): string[] {
  return ['-x', lockPath, 'bpftool', ...traceGateArgs(root, 0)]
}

export async function spawnGateWatchdog(runner: Runner, lockPath: string, root: string): Promise<{pid: number; argv: string[]}> {
  return runner.spawnDetached('flock', watchdogArgv(lockPath, root))
}

/** One record of `bpftool -j map event_pipe`: a sample's bytes, or a count of lost samples. */
export type PipeRecord = {kind: 'sample'; cpu: number; data: Buffer} | {kind: 'lost'; cpu: number; count: number}

/**
 * Splits `bpftool map event_pipe` output into records as bytes arrive. Plain output, not `-j`:
 * bpftool flushes stdout after every poll batch in plain mode, while its JSON writer sits in a
 * 4 KiB stdio buffer (events would arrive in bursts, or only at exit). A sample is
 *   == @<sec>.<nsec> CPU: <cpu> index: <idx> =====
 *   <hex bytes, 16 per line>
 * and a lost batch is `lost <n> events`. Perf pads a sample's tail, so a record is complete as
 * soon as `recordSize` bytes are in (the padding lines are skipped). Pure: feed chunks, get the
 * records completed so far.
 */
export class EventPipeParser {
  private partial = ''
  private cur: {cpu: number; bytes: number[]} | undefined

  constructor(private readonly recordSize = TRACE_EVENT.size) {}

  feed(chunk: string): PipeRecord[] {
    const out: PipeRecord[] = []
    const lines = (this.partial + chunk).split('\n')
    this.partial = lines.pop() ?? ''
    for (const raw of lines) {
      const line = raw.trim()
      const head = /^== @\S+ CPU: (\d+) index: \d+ =+$/.exec(line)
      if (head) {
        this.cur = {cpu: Number(head[1]), bytes: []}
        continue
      }
      const lost = /^lost (\d+) events?$/.exec(line)
      if (lost) {
        out.push({kind: 'lost', cpu: -1, count: Number(lost[1])})
        continue
      }
      if (!this.cur || !/^[0-9a-f]{2}( +[0-9a-f]{2})*$/i.test(line)) continue
      for (const b of line.split(/ +/)) this.cur.bytes.push(parseInt(b, 16))
      if (this.cur.bytes.length >= this.recordSize) {
        out.push({kind: 'sample', cpu: this.cur.cpu, data: Buffer.from(this.cur.bytes)})
        this.cur = undefined
      }
    }
    return out
  }
}

/** A decoded datapath event, or a note that the kernel dropped some (perf buffer full). */
export type StreamItem = {kind: 'event'; event: DatapathEvent} | {kind: 'lost'; count: number}

/** Decode a pipe record (records shorter than the struct are ignored: not ours). */
export function decodeRecord(rec: PipeRecord): StreamItem | undefined {
  if (rec.kind === 'lost') return {kind: 'lost', count: rec.count}
  if (rec.data.length < TRACE_EVENT.size) return undefined
  return {kind: 'event', event: decodeTraceEvent(rec.data)}
}

/** Start `bpftool map event_pipe` on the node's pn_events; it dies with this process. */
export function openEventPipe(runner: Runner, root: string): StreamedChild {
  return runner.stream('bpftool', ['map', 'event_pipe', 'pinned', mapPath(root, EVENTS_MAP)], {diesWithParent: true})
}

/**
 * Wait until the reader has a perf event open on every CPU (bpftool opens them all, then puts
 * them in the map and starts polling), so events sent after this are seen. Best effort: gives
 * up after `timeoutMs` (the monitor still works, only the first events may be missed).
 */
export async function waitReaderReady(pid: number | undefined, timeoutMs = 3000): Promise<boolean> {
  if (!pid) return false
  const want = await possibleCpus()
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => undefined)
    if (!fds) return false
    let perf = 0
    for (const fd of fds) if ((await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')).includes('perf_event')) perf++
    if (perf >= want) {
      // The map slots are written right after the last open: give bpftool a moment for them.
      await new Promise((r) => setTimeout(r, 100))
      return true
    }
    await new Promise((r) => setTimeout(r, 25))
  }
  return false
}
