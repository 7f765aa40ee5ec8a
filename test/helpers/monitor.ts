/**
 * `pn monitor --json` as a running child in a node's namespace, for integration tests: its
 * NDJSON events collected as they come, `ready` once it listens, and the observation points one
 * ICMP packet went through.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {PN_BIN} from './cli.js'

export interface Ev {
  type: string
  observationPoint: string
  program: string
  device: string
  target?: string
  srcIp?: string
  dstIp?: string
  protocol?: string
  icmp?: {type: number; id?: number; seq?: number}
  reason: {name: string}
  endpoint?: {endpointId: number; containerId: string}
}

export interface RunningMonitor {
  child: ChildProcess
  events: Ev[]
  stderr: () => string
  ready: Promise<void>
  exited: Promise<number | null>
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export function startMonitor(node: {ns: string; stateDir: string}, args: string[] = []): RunningMonitor {
  const child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, PN_BIN, 'monitor', '--json', '--state-dir', node.stateDir, ...args], {
    env: {...process.env, NO_COLOR: '1'},
  })
  const events: Ev[] = []
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    const lines = out.split('\n')
    out = lines.pop()!
    for (const l of lines) if (l.trim()) events.push(JSON.parse(l) as Ev)
  })
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString()
      if (err.includes('listening for events')) resolve()
    })
    child.once('exit', () => reject(new Error(`monitor exited before it was ready: ${err} ${out}`)))
  })
  ready.catch(() => undefined)
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {child, events, stderr: () => err, ready, exited}
}

export async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** The observation points one ICMP packet (by type/id/seq) went through, in order. */
export function path1(events: Ev[], icmpType: number, id: number, seq = 1): string[] {
  return events
    .filter((e) => e.type === 'trace' && e.protocol === 'icmp' && e.icmp?.type === icmpType && e.icmp.id === id && e.icmp.seq === seq)
    .map((e) => `${e.observationPoint}@${e.program}`)
}
