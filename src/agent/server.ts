/**
 * The node agent's server: one UNIX socket under the node's state dir, one request per
 * connection (./wire.ts). It owns what a long-running process adds to the CNI flows, and
 * nothing of the flows themselves (the entry injects them as `handle`, so this module stays
 * below src/cni in the layers):
 *  - requests for the same attachment (CNI_CONTAINERID + CNI_IFNAME) run one after another, in
 *    arrival order; different pods run in parallel, up to `maxInflight` at once;
 *  - overload is an answer, never a hang: past `maxQueued` waiting requests, or after
 *    `queueTimeoutMs` in the queue, a request gets PN_AGENT_BUSY (CNI code 11, try again later);
 *  - a request from another network namespace, or one arriving while the agent drains, is
 *    answered FALLBACK_EXIT: the client then runs the standalone path itself;
 *  - close() stops accepting (the socket file goes first, so new clients fall back at once)
 *    and resolves when the requests in flight have finished.
 */
import {promises as fs} from 'node:fs'
import net from 'node:net'
import {PnError} from '../errors.js'
import {KeyedMutex} from '../exec/lockd.js'
import {AGENT_OP_VAR} from './client.js'
import {agentSocketPath} from './paths.js'
import {decodeRequest, encodeResponse, FALLBACK_EXIT, WireError, type WireRequest, type WireResponse} from './wire.js'

export interface AgentServerOptions {
  stateDir: string
  /** Inode of the agent's network namespace: requests from another one are not served here. */
  netnsIno: string
  /** Run one CNI call (the entry wires the CNI protocol in); never throws. */
  handle(req: WireRequest, signal: AbortSignal): Promise<WireResponse>
  /** The CNI error answer for a request refused by the agent itself (overload, bad framing). */
  refuse(req: WireRequest | undefined, err: PnError): WireResponse
  /** Requests running at once (default 16: the work is mostly waiting on ip/tc/bpftool). */
  maxInflight?: number
  /** Requests waiting for a slot or for their attachment before new ones get code 11 (default 512). */
  maxQueued?: number
  /** Longest wait for a slot before code 11 (default 60 s; runtimes allow minutes per call, and a 100-pod burst on a loaded 2-CPU node queued longer than 20 s). */
  queueTimeoutMs?: number
  log?: (msg: string) => void
}

export interface AgentStats {
  pid: number
  socket: string
  startedAt: string
  inflight: number
  queued: number
  served: number
  refused: number
  fallbacks: number
  draining: boolean
  rssBytes: number
}

/** Largest request accepted (a netconf with a big prevResult is still far below). */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024

/** A counting semaphore with FIFO waiters and a bounded wait. */
class Slots {
  private waiters: (() => void)[] = []
  active = 0
  constructor(private readonly max: number) {}

  async take(timeoutMs: number): Promise<boolean> {
    if (this.active < this.max) {
      this.active++
      return true
    }
    return new Promise<boolean>((resolve) => {
      const grant = () => {
        clearTimeout(timer)
        this.active++
        resolve(true)
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== grant)
        resolve(false)
      }, timeoutMs)
      this.waiters.push(grant)
    })
  }

  give(): void {
    this.active--
    this.waiters.shift()?.()
  }
}

export class AgentServer {
  private server?: net.Server
  private readonly attachments = new KeyedMutex()
  private readonly slots: Slots
  private readonly controller = new AbortController()
  private readonly inflight = new Set<Promise<void>>()
  private readonly startedAt = new Date()
  private queued = 0
  private served = 0
  private refused = 0
  private fallbacks = 0
  private draining = false
  private readonly maxInflight: number
  readonly socket: string

  constructor(private readonly opts: AgentServerOptions) {
    this.maxInflight = opts.maxInflight ?? 16
    this.slots = new Slots(this.maxInflight)
    this.socket = agentSocketPath(opts.stateDir)
  }

  /** Listen on the socket; PN_AGENT_RUNNING when another agent answers on it. */
  async listen(): Promise<void> {
    if (await answers(this.socket)) {
      throw new PnError('PN_AGENT_RUNNING', `start agent: an agent already listens on ${this.socket}`, {
        hint: `stop it first (pn agent stop --state-dir ${this.opts.stateDir})`,
      })
    }
    // A socket file nobody answers on is a crashed agent's leftover.
    await fs.rm(this.socket, {force: true})
    const server = net.createServer({allowHalfOpen: true}, (conn) => this.accept(conn))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.socket, () => {
        server.off('error', reject)
        resolve()
      })
    })
    // Root only: a request runs as the agent (root) and changes the node.
    await fs.chmod(this.socket, 0o600)
    this.server = server
  }

  stats(): AgentStats {
    return {
      pid: process.pid,
      socket: this.socket,
      startedAt: this.startedAt.toISOString(),
      inflight: this.slots.active,
      queued: this.queued,
      served: this.served,
      refused: this.refused,
      fallbacks: this.fallbacks,
      draining: this.draining,
      rssBytes: process.memoryUsage.rss(),
    }
  }

  /**
   * Graceful stop: the socket file goes first (new clients fall back to the standalone path),
   * then the listener closes and the requests in flight finish. `abort` also interrupts them
   * (each ADD unwinds at its next step), for a second SIGTERM.
   */
  async close(opts: {abort?: boolean} = {}): Promise<void> {
    this.draining = true
    if (opts.abort) this.controller.abort(new PnError('PN_INTERRUPTED', 'agent stopped'))
    await fs.rm(this.socket, {force: true})
    const closed = this.server ? new Promise<void>((resolve) => this.server!.close(() => resolve())) : Promise.resolve()
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
    await closed
  }

  /** Abort the requests in flight (they unwind); close() still waits for them. */
  abort(): void {
    this.controller.abort(new PnError('PN_INTERRUPTED', 'agent stopped'))
  }

  private accept(conn: net.Socket): void {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    conn.on('error', () => undefined)
    const reply = (r: WireResponse) => {
      if (done) return
      done = true
      conn.end(encodeResponse(r))
    }
    conn.on('data', (d: Buffer) => {
      size += d.length
      chunks.push(d)
      if (size > MAX_REQUEST_BYTES) {
        this.refused++
        reply(this.opts.refuse(undefined, new PnError('PN_CNI_IO', `read agent request: larger than ${MAX_REQUEST_BYTES} bytes`)))
        conn.destroySoon()
      }
    })
    conn.on('end', () => {
      if (done) return
      let req: WireRequest
      try {
        req = decodeRequest(Buffer.concat(chunks))
      } catch (err) {
        this.refused++
        const msg = err instanceof WireError ? err.message : String(err)
        reply(this.opts.refuse(undefined, new PnError('PN_CNI_IO', `read agent request: ${msg}`, {hint: 'use the pn-cni client (dist/native/pn-cni)'})))
        return
      }
      const p = this.serve(req).then(reply, (err) => reply(this.opts.refuse(req, err instanceof PnError ? err : new PnError('PN_INTERNAL', String(err)))))
      this.inflight.add(p)
      void p.finally(() => this.inflight.delete(p))
    })
  }

  private async serve(req: WireRequest): Promise<WireResponse> {
    if (this.draining || (req.netnsIno !== '' && req.netnsIno !== this.opts.netnsIno)) {
      this.fallbacks++
      return {exitCode: FALLBACK_EXIT, stdout: '', stderr: ''}
    }
    // `pn agent status`: answered at once, never queued or counted, even under overload.
    if (req.env[AGENT_OP_VAR] === 'stats') return {exitCode: 0, stdout: JSON.stringify(this.stats()) + '\n', stderr: ''}
    // Full when every slot runs and the queue holds maxQueued more.
    if (this.slots.active + this.queued >= this.maxInflight + (this.opts.maxQueued ?? 512)) {
      return this.busy(req, `${this.slots.active} running and ${this.queued} queued`)
    }
    const timeoutMs = this.opts.queueTimeoutMs ?? 60_000
    const started = Date.now()
    this.queued++
    let releaseAttachment: (() => void) | undefined
    let slot = false
    try {
      const {CNI_CONTAINERID: cid, CNI_IFNAME: ifname} = req.env
      if (cid && ifname) {
        const waiting = this.attachments.lock(`${cid}:${ifname}`)
        let timer: NodeJS.Timeout | undefined
        const expired = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)))
        const got = await Promise.race([waiting, expired])
        clearTimeout(timer)
        if (!got) {
          // Never hold the attachment once this request has been answered.
          void waiting.then((release) => release())
          return this.busy(req, `an earlier request for ${cid}:${ifname} still runs after ${timeoutMs} ms`)
        }
        releaseAttachment = got
      }
      slot = await this.slots.take(Math.max(0, timeoutMs - (Date.now() - started)))
      if (!slot) return this.busy(req, `no free slot after ${timeoutMs} ms`)
      this.queued--
      const out = await this.opts.handle(req, this.controller.signal)
      this.served++
      return out
    } finally {
      if (!slot) this.queued--
      else this.slots.give()
      releaseAttachment?.()
    }
  }

  private busy(req: WireRequest, why: string): WireResponse {
    this.refused++
    this.opts.log?.(`refused ${req.env.CNI_COMMAND ?? '-'} ${req.env.CNI_CONTAINERID ?? '-'}:${req.env.CNI_IFNAME ?? '-'}: ${why}`)
    return this.opts.refuse(req, new PnError('PN_AGENT_BUSY', `queue request in the pn agent: ${why}`, {
      hint: 'the agent is overloaded; the runtime retries on CNI code 11',
    }))
  }
}

/** True when something accepts connections on the socket. */
export function answers(socket: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket)
    const done = (v: boolean) => {
      clearTimeout(t)
      c.destroy()
      resolve(v)
    }
    const t = setTimeout(() => done(false), timeoutMs)
    c.once('connect', () => done(true))
    c.once('error', () => done(false))
  })
}
