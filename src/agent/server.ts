/**
 * The node agent's server: one UNIX socket under the node's state dir, one request per
 * connection (./wire.ts). It owns what a long-running process adds to the CNI flows, and
 * nothing of the flows themselves (the entry injects them as `handle`, so this module stays
 * below src/cni in the layers):
 *  - the socket is bound in a private 0700 directory, given its mode (0600, or 0660 with a
 *    group) and renamed into place: it is never reachable with looser permissions, and a dead
 *    agent's leftover socket file is replaced in one step;
 *  - every connection's peer is checked (SO_PEERCRED, ./syscalls.ts): root, the agent's own
 *    user, or a member of `group`; anyone else gets a CNI error (PN_NOT_ROOT), never a request run;
 *  - at most `maxConnections` connections at once, a whole request within `idleTimeoutMs` of
 *    connecting and at most `maxRequestBytes`: past any of them the connection gets a CNI error;
 *  - each request has its own AbortSignal, aborted when its client hangs up (a runtime that
 *    kills the client mid-ADD: the ADD unwinds as the standalone path's does on SIGTERM) or when
 *    the agent is stopped with `abort`;
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
import path from 'node:path'
import {PnError} from '../errors.js'
import {KeyedMutex} from '../exec/keyed-mutex.js'
import {AGENT_OP_VAR} from './client.js'
import {agentSocketPath} from './paths.js'
import {agentSyscalls, type AgentSyscalls, type PeerCredentials} from './syscalls.js'
import type {RequestTiming} from './timing.js'
import {decodeRequest, encodeResponse, FALLBACK_EXIT, WireError, type WireRequest, type WireResponse} from './wire.js'

export interface AgentServerOptions {
  stateDir: string
  /** Inode of the agent's network namespace: requests from another one are not served here. */
  netnsIno: string
  /** Run one CNI call (the entry wires the CNI protocol in); never throws. `timing`: when it was accepted, how long it queued. */
  handle(req: WireRequest, signal: AbortSignal, timing: RequestTiming): Promise<WireResponse>
  /** The CNI error answer for a request refused by the agent itself (overload, bad framing). */
  refuse(req: WireRequest | undefined, err: PnError): WireResponse
  /** Requests running at once (default 16: the work is mostly waiting on ip/tc/bpftool). */
  maxInflight?: number
  /** Requests waiting for a slot or for their attachment before new ones get code 11 (default 512). */
  maxQueued?: number
  /** Longest wait for a slot before code 11 (default 60 s; runtimes allow minutes per call, and a 100-pod burst on a loaded 2-CPU node queued longer than 20 s). */
  queueTimeoutMs?: number
  /** Besides root (and the agent's own user), the group whose members may use the agent: the socket is then 0660 root:group. */
  group?: number
  /** Connections open at once (default 1024, above maxInflight + maxQueued); more get code 11 at once. */
  maxConnections?: number
  /** A connection must deliver its whole request within this time of connecting (default 10 s). */
  idleTimeoutMs?: number
  /** Largest request accepted (default 4 MiB; a netconf with a big prevResult is still far below). */
  maxRequestBytes?: number
  /** How often a running request's client is checked for a hang-up (default 100 ms). */
  hangupCheckMs?: number
  /** The addon's syscalls (default: dist/native/pn-sys.node, loaded on first use). */
  syscalls?: AgentSyscalls
  log?: (msg: string) => void
  /** More of the agent's state for `pn agent status` (the cluster store's, src/cluster/agent.ts). */
  moreStats?: () => Pick<AgentStats, 'cluster'>
}

export interface AgentStats {
  pid: number
  socket: string
  startedAt: string
  connections: number
  inflight: number
  queued: number
  served: number
  refused: number
  fallbacks: number
  /** Requests whose client hung up before the answer (interrupted, or dropped from the queue). */
  hangups: number
  draining: boolean
  rssBytes: number
  /** With --cluster: the store's state (connected|retrying since…), the revision applied (ClusterAgentStatus). */
  cluster?: {store: 'connected' | 'retrying'; since: string; error?: string; appliedRevision: number | null; [more: string]: unknown}
}

export const AGENT_DEFAULTS = {
  maxInflight: 16,
  maxQueued: 512,
  queueTimeoutMs: 60_000,
  maxConnections: 1024,
  idleTimeoutMs: 10_000,
  maxRequestBytes: 4 * 1024 * 1024,
} as const

/** Longest a UNIX socket path can be (sun_path, with its NUL). */
const MAX_SOCKET_PATH = 107

/** The abort reason of a request whose client went away ("interrupted by client hang-up"). */
export const HANGUP = 'client hang-up'

/** Root, the agent's own user, or a member of the allowed group; the refusal otherwise. */
export function authorizePeer(peer: PeerCredentials, opts: {group?: number; selfUid?: number}): PnError | undefined {
  const self = opts.selfUid ?? process.getuid?.() ?? 0
  if (peer.uid === 0 || peer.uid === self) return undefined
  if (opts.group !== undefined && (peer.gid === opts.group || peer.groups.includes(opts.group))) return undefined
  const allowed = opts.group === undefined ? 'root only' : `root or group ${opts.group} only`
  return new PnError('PN_NOT_ROOT', `serve agent request from pid ${peer.pid} (uid ${peer.uid}, gid ${peer.gid}): ${allowed}`, {
    hint: opts.group === undefined ? 'run the CNI plugin as root, or start the agent with --group GROUP' : `run the CNI plugin as root or in group ${opts.group}`,
    details: {pid: peer.pid, uid: peer.uid, gid: peer.gid},
  })
}

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
  /** Set once the agent is stopped with `abort`: the reason every request gets. */
  private stopReason?: PnError
  /** One controller per request read and not yet answered (no AbortSignal.any: nothing outlives the request). */
  private readonly requests = new Set<AbortController>()
  private readonly inflight = new Set<Promise<void>>()
  /** Requests running or queued whose client is watched for a hang-up. */
  private readonly watched = new Map<net.Socket, {hangup: AbortController; what: string}>()
  private watchTimer?: NodeJS.Timeout
  private readonly sys: AgentSyscalls
  private readonly startedAt = new Date()
  private socketIno?: number
  private connections = 0
  private queued = 0
  private served = 0
  private refused = 0
  private fallbacks = 0
  private hangups = 0
  private draining = false
  private readonly maxInflight: number
  private readonly maxConnections: number
  private readonly idleTimeoutMs: number
  private readonly maxRequestBytes: number
  readonly socket: string

  constructor(private readonly opts: AgentServerOptions) {
    this.maxInflight = opts.maxInflight ?? AGENT_DEFAULTS.maxInflight
    this.maxConnections = opts.maxConnections ?? AGENT_DEFAULTS.maxConnections
    this.idleTimeoutMs = opts.idleTimeoutMs ?? AGENT_DEFAULTS.idleTimeoutMs
    this.maxRequestBytes = opts.maxRequestBytes ?? AGENT_DEFAULTS.maxRequestBytes
    this.slots = new Slots(this.maxInflight)
    this.socket = agentSocketPath(opts.stateDir)
    // Loaded before anything listens: no connection is ever accepted unchecked.
    this.sys = opts.syscalls ?? agentSyscalls()
  }

  /**
   * Listen on the socket; PN_AGENT_RUNNING when another agent answers on it. The socket is bound
   * in a fresh 0700 directory beside it (mkdtemp), given its mode and group there, and renamed
   * over `agent.sock`: nobody can connect before the mode is set, and a dead agent's socket file
   * is replaced in one step (a client sees the old one, refused, or the new one).
   */
  async listen(): Promise<void> {
    if (Buffer.byteLength(this.socket) > MAX_SOCKET_PATH) {
      throw new PnError('PN_INVALID_ARGUMENT', `listen on ${this.socket}: longer than ${MAX_SOCKET_PATH} bytes, too long for a UNIX socket`, {
        hint: 'use a shorter --state-dir',
      })
    }
    if (await answers(this.socket)) {
      throw new PnError('PN_AGENT_RUNNING', `start agent: an agent already listens on ${this.socket}`, {
        hint: `stop it first (pn agent stop --state-dir ${this.opts.stateDir})`,
      })
    }
    // `.a` + 6 characters + `/s`: the bound path is no longer than the final one.
    const dir = await fs.mkdtemp(path.join(this.opts.stateDir, '.a'))
    const bound = path.join(dir, 's')
    const server = net.createServer({allowHalfOpen: true}, (conn) => this.accept(conn))
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(bound, () => {
          server.off('error', reject)
          resolve()
        })
      })
      // A request runs as the agent (root) and changes the node: root only, or root and the group.
      if (this.opts.group !== undefined) {
        await fs.chown(bound, process.getuid?.() ?? 0, this.opts.group)
        await fs.chmod(bound, 0o660)
      } else {
        await fs.chmod(bound, 0o600)
      }
      await fs.rename(bound, this.socket)
      this.socketIno = (await fs.stat(this.socket)).ino
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      throw err
    } finally {
      await fs.rm(dir, {recursive: true, force: true})
    }
    this.server = server
  }

  stats(): AgentStats {
    return {
      pid: process.pid,
      socket: this.socket,
      startedAt: this.startedAt.toISOString(),
      connections: this.connections,
      inflight: this.slots.active,
      queued: this.queued,
      served: this.served,
      refused: this.refused,
      fallbacks: this.fallbacks,
      hangups: this.hangups,
      draining: this.draining,
      rssBytes: process.memoryUsage.rss(),
      ...this.opts.moreStats?.(),
    }
  }

  /**
   * Graceful stop: the socket file goes first (new clients fall back to the standalone path),
   * then the listener closes and the requests in flight finish. `abort` also interrupts them
   * (each ADD unwinds at its next step), for a second SIGTERM.
   */
  async close(opts: {abort?: boolean} = {}): Promise<void> {
    this.draining = true
    if (opts.abort) this.abort()
    await this.removeSocket()
    const closed = this.server ? new Promise<void>((resolve) => this.server!.close(() => resolve())) : Promise.resolve()
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
    await closed
    clearInterval(this.watchTimer)
    this.watchTimer = undefined
  }

  /** Abort the requests in flight (they unwind); close() still waits for them. */
  abort(): void {
    this.stopReason ??= new PnError('PN_INTERRUPTED', 'agent stopped')
    for (const c of this.requests) c.abort(this.stopReason)
  }

  /** Remove the socket file if it is still the one this server bound (not a file put there since). */
  private async removeSocket(): Promise<void> {
    if (this.socketIno === undefined) return
    const st = await fs.stat(this.socket).catch(() => undefined)
    if (st?.ino === this.socketIno) await fs.rm(this.socket, {force: true})
    this.socketIno = undefined
  }

  private accept(conn: net.Socket): void {
    const acceptedAt = performance.now()
    this.connections++
    conn.once('close', () => this.connections--)
    conn.on('error', () => undefined)
    const chunks: Buffer[] = []
    let size = 0
    let answered = false
    // Answer once and stop reading the request; bytes still coming are read and dropped, so a
    // client that is still writing finishes and then reads the answer.
    const reply = (r: WireResponse) => {
      if (answered) return
      answered = true
      chunks.length = 0
      if (!conn.destroyed) conn.end(encodeResponse(r))
    }
    const refuseConn = (err: PnError) => {
      this.refused++
      this.opts.log?.(`refused connection: ${err.message}`)
      reply(this.opts.refuse(undefined, err))
    }
    // The whole request within idleTimeoutMs; after an early answer, the rest of it too.
    const deadline = setTimeout(() => {
      if (!answered) refuseConn(new PnError('PN_CNI_IO', `read agent request: not complete ${this.idleTimeoutMs} ms after connecting`, {hint: 'use the pn-cni client (dist/native/pn-cni)'}))
      conn.destroySoon()
      setTimeout(() => conn.destroy(), 1000).unref()
    }, this.idleTimeoutMs)
    conn.once('close', () => clearTimeout(deadline))

    if (this.connections > this.maxConnections) {
      refuseConn(new PnError('PN_AGENT_BUSY', `accept agent connection: ${this.maxConnections} connections already open`, {
        hint: 'the agent is overloaded; the runtime retries on CNI code 11',
      }))
    } else {
      let denied: PnError | undefined
      try {
        denied = authorizePeer(this.sys.peercred(fdOf(conn)), {group: this.opts.group})
      } catch (err) {
        denied = new PnError('PN_NOT_ROOT', `serve agent request: peer credentials unknown (${(err as Error).message})`)
      }
      if (denied) refuseConn(denied)
    }

    conn.on('data', (d: Buffer) => {
      if (answered) return
      size += d.length
      chunks.push(d)
      if (size > this.maxRequestBytes) refuseConn(new PnError('PN_CNI_IO', `read agent request: larger than ${this.maxRequestBytes} bytes`))
    })
    conn.on('end', () => {
      clearTimeout(deadline)
      if (answered) return
      let req: WireRequest
      try {
        req = decodeRequest(Buffer.concat(chunks))
      } catch (err) {
        const msg = err instanceof WireError ? err.message : String(err)
        refuseConn(new PnError('PN_CNI_IO', `read agent request: ${msg}`, {hint: 'use the pn-cni client (dist/native/pn-cni)'}))
        return
      }
      // This request's own interrupt: its client hanging up, or the agent stopped with abort.
      const request = new AbortController()
      if (this.stopReason) request.abort(this.stopReason)
      this.requests.add(request)
      this.watch(conn, request, `${req.env.CNI_COMMAND ?? '-'} ${req.env.CNI_CONTAINERID ?? '-'}:${req.env.CNI_IFNAME ?? '-'}`)
      const p = this.serve(req, request.signal, acceptedAt)
        .then(reply, (err) => reply(this.opts.refuse(req, err instanceof PnError ? err : new PnError('PN_INTERNAL', String(err)))))
        .finally(() => {
          this.watched.delete(conn)
          this.requests.delete(request)
        })
      this.inflight.add(p)
      void p.finally(() => this.inflight.delete(p))
    })
  }

  /** Watch a request's client until it is answered; a hang-up aborts the request. */
  private watch(conn: net.Socket, hangup: AbortController, what: string): void {
    this.watched.set(conn, {hangup, what})
    this.watchTimer ??= setInterval(() => {
      for (const [c, {hangup: h, what: w}] of this.watched) {
        let gone = c.destroyed
        try {
          gone ||= this.sys.peerClosed(fdOf(c))
        } catch {
          gone = true
        }
        if (!gone) continue
        this.watched.delete(c)
        this.hangups++
        this.opts.log?.(`client of ${w} hung up: interrupting it`)
        h.abort(HANGUP)
      }
      if (this.watched.size === 0) {
        clearInterval(this.watchTimer)
        this.watchTimer = undefined
      }
    }, this.opts.hangupCheckMs ?? 100)
  }

  private async serve(req: WireRequest, signal: AbortSignal, acceptedAt: number): Promise<WireResponse> {
    if (this.draining || (req.netnsIno !== '' && req.netnsIno !== this.opts.netnsIno)) {
      this.fallbacks++
      return {exitCode: FALLBACK_EXIT, stdout: '', stderr: ''}
    }
    // `pn agent status`: answered at once, never queued or counted, even under overload.
    if (req.env[AGENT_OP_VAR] === 'stats') return {exitCode: 0, stdout: JSON.stringify(this.stats()) + '\n', stderr: ''}
    // Full when every slot runs and the queue holds maxQueued more.
    if (this.slots.active + this.queued >= this.maxInflight + (this.opts.maxQueued ?? AGENT_DEFAULTS.maxQueued)) {
      return this.busy(req, `${this.slots.active} running and ${this.queued} queued`)
    }
    const timeoutMs = this.opts.queueTimeoutMs ?? AGENT_DEFAULTS.queueTimeoutMs
    const started = Date.now()
    const queuedAt = performance.now()
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
      // Its client went away while it waited: nobody would read the answer, and nothing was done yet.
      if (signal.aborted) return this.opts.refuse(req, new PnError('PN_INTERRUPTED', `queue request in the pn agent: dropped after ${signal.reason instanceof Error ? signal.reason.message : String(signal.reason)}`))
      const out = await this.opts.handle(req, signal, {acceptedAt, queueMs: performance.now() - queuedAt})
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

/** The fd of an accepted connection (libuv's pipe handle); -1 once it is closed. */
function fdOf(conn: net.Socket): number {
  const fd = (conn as unknown as {_handle?: {fd?: number}})._handle?.fd
  return typeof fd === 'number' ? fd : -1
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
