/**
 * The native backend: an apply's ops go to the kernel worker (native/pn-netlink.c, through
 * src/exec/netlink-worker.ts) as ONE request per netns, and come back as structured results or
 * one failure {index, errno, extack}. Nothing here renders a tool's command line or reads a
 * tool's output; errno → pn code stays `pnCode` (errors.ts).
 *
 * The wire (the C file's header has the whole protocol): one line per op, `<kind>( key=value)*`;
 * numbers in decimal, flags as `=1`, strings in lowercase hex (so a name or path can hold no
 * space, newline or NUL that would change the line's meaning). The answer is JSON in pn's own
 * schema (LinkInfo, AddrLink, RouteEntry, TcFilter of ops.ts).
 *
 * Ops the worker does not do (map entries, pinned programs) go to an injected backend, in order;
 * an apply that mixes them is several requests. An apply over the protocol's limits (65536 ops,
 * 16 MiB of op lines) is split into several requests, in order: as with any failure, the ops
 * before the failing index took effect.
 */
import {existsSync} from 'node:fs'
import os from 'node:os'
import {PnError} from '../errors.js'
import type {NetlinkWorker, WorkerAnswer} from '../exec/netlink-worker.js'
import {WORKER_LIMITS} from '../exec/netlink-worker.js'
import {checkAbort, type ApplyOptions, type KernelBackend} from './backend.js'
import {clocked} from './clock.js'
import {KernelError, STRERROR, type Errno} from './errors.js'
import {describeOp, ROUTE_PROTOCOLS, type KernelOp, type KernelResult, type OpKind} from './ops.js'

/** The kinds the worker applies; the rest go to the injected backend. */
export const WORKER_KINDS: ReadonlySet<OpKind> = new Set<OpKind>([
  'link.add', 'link.set', 'link.del', 'link.get', 'link.list', 'addr.add', 'addr.del', 'addr.list', 'route.add', 'route.del',
  'route.list', 'neigh.add', 'sysctl.set', 'qdisc.add', 'qdisc.del', 'tc.attach', 'tc.detach', 'tc.list',
])

/** Per-field limits the worker holds (bytes of a string, largest number). */
export const FIELD_LIMITS = {name: 15, mac: 17, ip: 63, path: 4095, sysctlKey: 255, sysctlValue: 4095, u32: 0xffffffff, pref: 0xffff} as const

type Field = [key: string, value: string | number | boolean | undefined, max: number]

function bad(op: KernelOp, why: string): PnError {
  return new PnError('PN_INVALID_ARGUMENT', `${describeOp(op)}: ${why}`, {details: {op}})
}

/** One op as its line (without the newline). Throws PN_INVALID_ARGUMENT for a value the kernel could never take. */
export function encodeOp(op: KernelOp): string {
  const {name, mac, ip, path, u32, pref, sysctlKey, sysctlValue} = FIELD_LIMITS
  let fields: Field[]
  switch (op.kind) {
    case 'link.add':
      if (op.type === 'vxlan') {
        fields = [['name', op.name, name], ['mac', op.address, mac], ['mtu', op.mtu, u32], ['vxlan_port', op.dstport, 0xffff]]
        break
      }
      fields = [['name', op.name, name], ['mac', op.address, mac], ['mtu', op.mtu, u32], ['txqlen', op.txqueuelen, u32], ['peer', op.peer.name, name],
        ['peer_mac', op.peer.address, mac], ['peer_mtu', op.peer.mtu, u32], ['peer_netns', op.peer.netns, path]]
      break
    case 'link.set':
      fields = [['name', op.name, name], ['up', op.up, 1], ['mtu', op.mtu, u32]]
      break
    case 'link.del':
      fields = [['name', op.name, name], ['missing_ok', op.missingOk, 1]]
      break
    case 'link.get':
      fields = [['name', op.name, name]]
      break
    case 'link.list':
      fields = []
      break
    case 'addr.add':
      fields = [['dev', op.dev, name], ['addr', op.address, ip], ['scope_link', op.scope === 'link', 1], ['nodad', op.nodad, 1], ['replace', op.replace, 1]]
      break
    case 'addr.del':
      fields = [['dev', op.dev, name], ['addr', op.address, ip]]
      break
    case 'addr.list':
      fields = [['dev', op.dev, name]]
      break
    case 'route.add':
      fields = [['dst', op.dst, ip], ['dev', op.dev, name], ['via', op.via, ip], ['scope_link', op.scope === 'link', 1], ['src', op.src, ip], ['mtu', op.mtu, u32], ['replace', op.replace, 1],
        ['proto', op.proto === undefined ? undefined : ROUTE_PROTOCOLS[op.proto], 255]]
      break
    case 'route.del':
      fields = [['dst', op.dst, ip], ['dev', op.dev, name], ['missing_ok', op.missingOk, 1]]
      break
    case 'route.list':
      fields = [['family', op.family, 6], ['table_all', op.table === 'all', 1], ['exact', op.exact, ip]]
      break
    case 'neigh.add':
      fields = [['dev', op.dev, name], ['dst', op.dst, ip], ['proxy', op.proxy, 1], ['lladdr', op.lladdr, mac], ['permanent', op.permanent, 1], ['replace', op.replace, 1]]
      break
    case 'sysctl.set':
      fields = [['key', op.key, sysctlKey], ['value', op.value, sysctlValue]]
      break
    case 'qdisc.add':
      fields = [['dev', op.dev, name]]
      break
    case 'qdisc.del':
      fields = [['dev', op.dev, name], ['missing_ok', op.missingOk, 1]]
      break
    case 'tc.attach':
      fields = [['dev', op.dev, name], ['egress', op.direction === 'egress', 1], ['pref', op.pref, pref], ['handle', op.handle, u32], ['pinned', op.pinned, path]]
      break
    case 'tc.detach':
      fields = [['dev', op.dev, name], ['egress', op.direction === 'egress', 1], ['pref', op.pref, pref], ['handle', op.handle, u32], ['missing_ok', op.missingOk, 1]]
      break
    case 'tc.list':
      fields = [['dev', op.dev, name], ['egress', op.direction === 'egress', 1]]
      break
    default:
      throw new Error(`${op.kind}: not an op of the kernel worker`)
  }
  let line: string = op.kind
  for (const [key, value, max] of fields) {
    if (value === undefined || value === false) continue
    if (value === true) line += ` ${key}=1`
    else if (typeof value === 'number') {
      if (!Number.isSafeInteger(value) || value < 0 || value > max) throw bad(op, `${key} ${value} is not a whole number in 0..${max}`)
      line += ` ${key}=${value}`
    } else {
      const bytes = Buffer.from(value, 'utf8')
      if (bytes.length === 0 || bytes.length > max || bytes.includes(0)) throw bad(op, `${key} "${value}" is empty, longer than ${max} bytes or holds a NUL`)
      line += ` ${key}=${bytes.toString('hex')}`
    }
  }
  return line
}

/** An errno number as Node names it (`EEXIST`), and as pn's Errno when pn tells it apart. */
export function errnoName(n: number): {name?: string; errno?: Errno} {
  const name = Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0]
  return {name, errno: name !== undefined && name in STRERROR ? (name as Errno) : undefined}
}

/** The worker's failure, as the answer has it. */
export interface WorkerFailure {
  index: number
  errno?: number
  extack?: string
  reason?: string
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x)

/**
 * An answer's JSON → one result per applied op (kind added from the op) and the failure, if any.
 * Checks the shape the backend relies on; a wrong shape is a broken worker (throws).
 */
export function decodeAnswer(text: string, ops: readonly KernelOp[]): {results: KernelResult[]; failure?: WorkerFailure} {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new Error(`an answer that is not JSON (${(err as Error).message})`)
  }
  if (!isObj(json) || !Array.isArray(json.results)) throw new Error('an answer without results')
  const failure = json.error
  if (failure !== undefined) {
    if (!isObj(failure) || !Number.isInteger(failure.index) || failure.index !== json.results.length || (failure.index as number) >= ops.length) throw new Error('an answer whose error index is not the first op without a result')
    if (failure.errno !== undefined && !(Number.isInteger(failure.errno) && (failure.errno as number) > 0)) throw new Error('an answer with a malformed errno')
    for (const k of ['extack', 'reason'] as const) if (failure[k] !== undefined && typeof failure[k] !== 'string') throw new Error(`an answer with a malformed ${k}`)
  } else if (json.results.length !== ops.length) throw new Error(`${json.results.length} results for ${ops.length} ops`)
  const results = json.results.map((r, i) => {
    const op = ops[i]
    if (!isObj(r)) throw new Error(`result ${i} is not an object`)
    const want = RESULT_FIELD[op.kind]
    if (want) {
      const [field, type] = want
      const v = r[field]
      const ok = type === 'array' ? Array.isArray(v) : type === 'boolean' ? typeof v === 'boolean' : v === undefined || isObj(v)
      if (!ok) throw new Error(`result ${i} (${op.kind}) has no ${field}`)
    }
    return {...r, kind: op.kind} as KernelResult
  })
  return {results, failure: failure as WorkerFailure | undefined}
}

/** The field each query's result carries, and its type. */
const RESULT_FIELD: Partial<Record<OpKind, [string, 'array' | 'boolean' | 'object?']>> = {
  'link.get': ['link', 'object?'],
  'link.list': ['links', 'array'],
  'link.del': ['deleted', 'boolean'],
  'addr.list': ['links', 'array'],
  'route.list': ['routes', 'array'],
  'qdisc.del': ['deleted', 'boolean'],
  'tc.detach': ['deleted', 'boolean'],
  'tc.list': ['filters', 'array'],
}

/** What NativeBackend needs of the worker (a stand-in in unit tests). */
export type WorkerLink = Pick<NetlinkWorker, 'request' | 'broken'>

export interface NativeOptions {
  /** Sees each op the worker applies (`netlink: …` lines with PN_TRACE_EXEC). */
  log?: (line: string) => void
  /**
   * Answer a lone `link.del` in this process's netns once the link is gone (the agent): whether
   * `dev` is there (default: its /proc/sys/net/ipv4/conf folder), how often to look (default 1 ms),
   * and who hears of a failure the worker reports after that answer.
   */
  earlyLinkDelete?: {present?: (dev: string) => boolean | undefined; pollMs?: number; onLateFailure?: (op: KernelOp, why: string) => void}
  /**
   * Where `obj.load` and `map.create` go: loading an object is libbpf's ELF loader, which
   * bpftool is, so kernelFor hands them to the tools backend (once per node, never on a pod's
   * path); the worker and the addon stay free of an ELF loader.
   */
  loader?: KernelBackend
}

/** The kinds the loader (NativeOptions.loader) applies. */
const LOADER_KINDS: ReadonlySet<OpKind> = new Set<OpKind>(['obj.load', 'map.create'])

/** True/false when the device's IPv4 configuration folder says so (this process's netns); undefined when it cannot tell. */
export function procLinkPresent(dev: string): boolean | undefined {
  if (!dev || dev === '.' || dev === '..' || dev.includes('/')) return undefined
  return existsSync(`/proc/sys/net/ipv4/conf/${dev}`)
}

/**
 * Several workers (the agent's): a request goes to the one with the fewest requests in flight,
 * the first when all are idle. One worker does one request at a time, and a veth deletion keeps
 * it for the kernel's RCU barrier (below); deletions on several workers share their grace periods.
 *
 * Why a deletion may be answered early: RTM_DELLINK unregisters the device (both veth ends leave
 * their namespaces, the name is free, its qdisc and filters are gone, no packet reaches it) within
 * about a millisecond; the kernel then waits for every pending RCU callback (`rcu_barrier()` in
 * netdev_run_todo, inside the sender's sendmsg) before the ack: ≈ 15 ms here, the larger part of a
 * DEL. Nothing pn does next needs the memory freed, only the device gone, so with
 * `earlyLinkDelete` a lone deletion in this process's own netns is answered once the device's
 * `/proc/sys/net/ipv4/conf/<dev>` (removed when it is unregistered) is gone, looked for every
 * millisecond while the worker's answer is outstanding. The worker's answer is the answer when it
 * comes first (a failure, a device that was never there); a failure after the early answer goes
 * to `onLateFailure`.
 */
export class NativeBackend implements KernelBackend {
  private readonly workers: WorkerLink[]
  private readonly inflight: number[]

  /** `other`: the backend of the ops the worker does not do (map entries, pinned programs). */
  constructor(
    workers: WorkerLink | readonly WorkerLink[],
    private readonly other: KernelBackend,
    private readonly opts: NativeOptions = {},
  ) {
    this.workers = Array.isArray(workers) ? [...(workers as readonly WorkerLink[])] : [workers as WorkerLink]
    if (this.workers.length === 0) throw new Error('NativeBackend: no worker')
    this.inflight = this.workers.map(() => 0)
  }

  /** Requests in flight per worker (tests). */
  get load(): readonly number[] {
    return this.inflight
  }

  apply(ops: readonly KernelOp[], opts: ApplyOptions = {}): Promise<KernelResult[]> {
    return clocked(() => this.applyOps(ops, opts))
  }

  private async applyOps(ops: readonly KernelOp[], opts: ApplyOptions): Promise<KernelResult[]> {
    const out: KernelResult[] = []
    for (let i = 0; i < ops.length; ) {
      checkAbort(opts.signal, ops[i])
      if (!WORKER_KINDS.has(ops[i].kind)) {
        // Not the worker's: the run up to the next op that is (or that goes elsewhere) to the map
        // backend, or an object load and map create to the loader; their indexes shifted.
        const loads = LOADER_KINDS.has(ops[i].kind)
        let j = i + 1
        while (j < ops.length && !WORKER_KINDS.has(ops[j].kind) && LOADER_KINDS.has(ops[j].kind) === loads) j++
        out.push(...(await this.shifted(loads ? this.loader() : this.other, ops.slice(i, j), i, opts)))
        i = j
        continue
      }
      // One request: the worker's ops from i, within the protocol's limits.
      const lines: string[] = []
      let bytes = 0
      let j = i
      for (; j < ops.length && WORKER_KINDS.has(ops[j].kind) && lines.length < WORKER_LIMITS.ops; j++) {
        const line = encodeOp(ops[j]) + '\n'
        if (bytes + line.length > WORKER_LIMITS.bodyBytes) break
        lines.push(line)
        bytes += line.length
      }
      out.push(...(await this.request(ops.slice(i, j), i, lines, opts.netns)))
      i = j
    }
    return out
  }

  /** The backend of object loads and map creation (the tools backend: bpftool is libbpf's loader). */
  private loader(): KernelBackend {
    if (!this.opts.loader) throw new PnError('PN_INVALID_ARGUMENT', 'load an object through the native backend: it has no loader', {hint: 'pass NativeOptions.loader (kernelFor does)'})
    return this.opts.loader
  }

  private async shifted(backend: KernelBackend, ops: KernelOp[], offset: number, opts: ApplyOptions): Promise<KernelResult[]> {
    try {
      return await backend.apply(ops, opts)
    } catch (err) {
      // The other backend counted from the slice it was given; the caller counts from its list.
      if (err instanceof KernelError && offset > 0) {
        Object.defineProperty(err, 'index', {value: err.index + offset})
        const details = (err as {details?: Record<string, unknown>}).details
        if (details) details.index = err.index
      }
      throw err
    }
  }

  /** The least busy worker; `run` holds it while the request is in flight. */
  private async dispatch<T>(run: (w: WorkerLink) => Promise<T>): Promise<T> {
    let i = 0
    for (let j = 1; j < this.workers.length; j++) if (this.inflight[j] < this.inflight[i]) i = j
    this.inflight[i]++
    try {
      return await run(this.workers[i])
    } finally {
      this.inflight[i]--
    }
  }

  private async request(ops: KernelOp[], offset: number, lines: string[], netns: string | undefined): Promise<KernelResult[]> {
    for (const op of ops) this.opts.log?.(`${describeOp(op)}${netns ? ` in ${netns}` : ''}`)
    const body = Buffer.from(lines.join(''), 'latin1')
    const early = this.opts.earlyLinkDelete
    const op0 = ops[0]
    if (early && netns === undefined && ops.length === 1 && op0.kind === 'link.del' && (early.present ?? procLinkPresent)(op0.name) === true) {
      return this.deleteEarly(op0, offset, body, early)
    }
    return this.dispatch((w) => this.answered(w, ops, offset, netns, w.request(netns, lines.length, body)))
  }

  /** A lone link.del: the worker's answer, or success once the device is gone if that comes first. */
  private deleteEarly(op: Extract<KernelOp, {kind: 'link.del'}>, offset: number, body: Buffer, early: NonNullable<NativeOptions['earlyLinkDelete']>): Promise<KernelResult[]> {
    const present = early.present ?? procLinkPresent
    // An adopted worker (standalone pn-cni) waits synchronously: it stops waiting once the device is gone.
    const worker = this.dispatch((w) => this.answered(w, [op], offset, undefined, w.request(undefined, 1, body, () => present(op.name) === false)))
    return new Promise<KernelResult[]>((resolve, reject) => {
      let done = false
      const finish = (fn: () => void) => {
        if (done) return
        done = true
        clearInterval(timer)
        fn()
      }
      const timer = setInterval(() => {
        if (present(op.name) === false) finish(() => resolve([{kind: 'link.del', deleted: true}]))
      }, early.pollMs ?? 1)
      worker.then(
        (r) => finish(() => resolve(r)),
        (err: Error) => {
          if (done) early.onLateFailure?.(op, err.message)
          finish(() => reject(err))
        },
      )
    })
  }

  private async answered(worker: WorkerLink, ops: KernelOp[], offset: number, netns: string | undefined, pending: Promise<WorkerAnswer>): Promise<KernelResult[]> {
    const answer: WorkerAnswer = await pending
    if (answer.code === -2) {
      throw new PnError('PN_COMMAND_FAILED', `${describeOp(ops[0])}${ops.length > 1 ? ` (and ${ops.length - 1} more)` : ''}: the kernel worker refused the request: ${answer.body.toString('utf8')}`, {
        hint: 'this is a bug in pn (it sent an op the worker does not take); PN_KERNEL=tools runs the same ops through ip and tc',
      })
    }
    let decoded: ReturnType<typeof decodeAnswer>
    try {
      decoded = decodeAnswer(answer.body.toString('utf8'), ops)
    } catch (err) {
      worker.broken((err as Error).message)
      throw new PnError('PN_COMMAND_FAILED', `${describeOp(ops[0])}: the kernel worker broke its protocol: ${(err as Error).message}`, {hint: 'the agent restarts the worker on its next request'})
    }
    const f = decoded.failure
    if (!f) return decoded.results
    const {name, errno} = f.errno === undefined ? {} : errnoName(f.errno)
    throw new KernelError({
      op: ops[f.index],
      index: offset + f.index,
      errno,
      extack: f.extack,
      netns,
      reason: f.reason ?? (f.errno !== undefined ? `${name ?? 'errno'} (${f.errno})` : undefined),
      detail: {backend: 'native', ...(f.errno !== undefined ? {errnoNumber: f.errno} : {}), ...(f.reason ? {reason: f.reason} : {})},
    })
  }
}

