/**
 * The tools backend: kernel ops rendered to `ip`, `tc` and `bpftool` command lines run through
 * the Runner, so `--dry-run` and `--verbose` print exactly what runs and golden tests see the
 * argv. Consecutive changes (links, addresses, routes, neighbours) in one netns go to one
 * `ip -batch -` process; consecutive tc changes (qdisc.add, tc.attach, tc.detach) to one
 * `tc -batch -` (one alone is its own `tc` command); consecutive map writes to one
 * `bpftool -j batch file -`. Queries (link.get/list, addr.list, route.list, tc.list, prog.get,
 * map.lookup/dump), link.del, qdisc.del and a delete that may find nothing are one command each;
 * sysctls are written through /proc/sys in process (or by one `sysctl -w` inside another netns).
 * The kernel worker behind a WorkerRunner answers the same argv.
 * The agent's runner gets the native backend instead (native.ts; kernelFor below).
 *
 * Which op failed. `ip -batch` stops at the first failing line, so after a failed batch every op
 * before it took effect and none after it did. The backend finds it by asking the kernel, in
 * JSON (`ip -j link|addr|route|neigh show`): the first op whose effect is absent is the failing
 * one. The probe also gives the errno where state shows it: a link.add whose name is taken by a
 * link that is not ours (ours has the MAC the op set) is EEXIST, so is a route add whose prefix
 * is there through another device; an op on an absent device is ENODEV. What state cannot show:
 * a plain add of something already there (EEXIST), or a delete of something already gone (ESRCH,
 * EADDRNOTAVAIL), looks applied; so when the tool reports that errno the failing op is the last
 * such op before the first absent effect. This is exact for what pn batches today: ops on a link
 * the same batch creates, or on pn_host. A tc batch is located the same way (`tc -j qdisc|filter
 * show`, and `bpftool -j prog show pinned` for which program a filter runs). A bpftool batch needs
 * no probe: with `-j` it answers one JSON entry per line it ran, the failing one carrying
 * `{"error": …}`.
 *
 * Where iproute2 gives no JSON: its errors. Even with `-j` an error is a line of text on stderr
 * ("RTNETLINK answers: <strerror>", "Error: <extended ack>.", "Cannot find device"). `toolError`
 * below is the one reader of that text in pn; it yields an errno and the extack, never an index.
 * bpftool's errors are JSON (`{"error": "<what>: <strerror>"}`); `bpftoolError` reads them.
 */
import {PnError} from '../errors.js'
import {WorkerRunner} from '../exec/netlink-worker.js'
import type {RunResult, Runner} from '../exec/runner.js'
import {checkAbort, type ApplyOptions, type KernelBackend} from './backend.js'
import {clocked} from './clock.js'
import {KernelError, STRERROR, errnoOf, type Errno} from './errors.js'
import {MapBackend} from './maps.js'
import {NativeBackend} from './native.js'
import {describeOp, ROUTE_PROTOCOLS, sysctlPath, type AddrLink, type KernelOp, type KernelResult, type LinkInfo, type MapEntry, type OpKind, type RouteEntry, type TcFilter} from './ops.js'

/** Ops that go into one `ip -batch -` with their neighbours. */
const BATCHED: ReadonlySet<OpKind> = new Set(['link.add', 'link.set', 'addr.add', 'addr.del', 'route.add', 'route.del', 'neigh.add'])

/** tc changes that go into one `tc -batch -` with their neighbours. */
const TC_BATCHED: ReadonlySet<OpKind> = new Set(['qdisc.add', 'tc.attach', 'tc.detach'])

/** Map writes that go into one `bpftool -j batch file -` (a missingOk delete too: its entry says what it found). */
const MAP_BATCHED: ReadonlySet<OpKind> = new Set(['map.update', 'map.delete'])

const missingOk = (op: KernelOp): boolean => 'missingOk' in op && op.missingOk === true

/** An op that goes into an `ip` batch (a `missingOk` delete runs alone: its failure is its own result). */
function batched(op: KernelOp): boolean {
  return BATCHED.has(op.kind) && !missingOk(op)
}

function tcBatched(op: KernelOp): boolean {
  return TC_BATCHED.has(op.kind) && !missingOk(op)
}

/** The `tc` command (as a `tc -batch` line, or split into argv) of a tc change. */
export function renderTcLine(op: KernelOp): string {
  switch (op.kind) {
    case 'qdisc.add':
      return `qdisc add dev ${op.dev} clsact`
    case 'qdisc.del':
      return `qdisc del dev ${op.dev} clsact`
    case 'tc.attach':
      return `filter replace dev ${op.dev} ${op.direction} pref ${op.pref} handle ${op.handle} bpf da object-pinned ${op.pinned}`
    case 'tc.detach':
      return `filter del dev ${op.dev} ${op.direction} pref ${op.pref} handle ${op.handle} bpf`
    default:
      throw new Error(`${op.kind} is not a tc line`)
  }
}

/** bpftool's words for bytes: `hex 0a 00 01 05`. */
function hexWords(b: Buffer): string {
  return 'hex ' + b.toString('hex').replace(/(..)(?=.)/g, '$1 ')
}

/** The `bpftool batch` line of a map write. */
export function renderMapLine(op: KernelOp): string {
  switch (op.kind) {
    case 'map.update':
      return `map update pinned ${op.map} key ${hexWords(op.key)} value ${hexWords(op.value)}`
    case 'map.delete':
      return `map delete pinned ${op.map} key ${hexWords(op.key)}`
    default:
      throw new Error(`${op.kind} is not a bpftool batch line`)
  }
}

/** The `ip -batch` line of a change. */
export function renderLine(op: KernelOp): string {
  switch (op.kind) {
    case 'link.add': {
      // learning is off with `external` already; `nolearning` says so on the command line too.
      if (op.type === 'vxlan') return `link add name ${op.name}${opt('address', op.address)}${opt('mtu', op.mtu)} type vxlan external dstport ${op.dstport} nolearning`
      const p = op.peer
      return (
        `link add name ${op.name}${opt('address', op.address)}${opt('mtu', op.mtu)}${opt('txqueuelen', op.txqueuelen)} type ${op.type} ` +
        `peer name ${p.name}${opt('address', p.address)}${opt('mtu', p.mtu)}${opt('netns', p.netns)}`
      )
    }
    case 'link.set':
      return `link set dev ${op.name}${opt('mtu', op.mtu)}${op.up === undefined ? '' : op.up ? ' up' : ' down'}`
    case 'addr.add':
      return `addr ${op.replace ? 'replace' : 'add'} ${op.address} dev ${op.dev}${opt('scope', op.scope)}${op.nodad ? ' nodad' : ''}`
    case 'addr.del':
      return `addr del ${op.address} dev ${op.dev}`
    case 'route.add':
      return `route ${op.replace ? 'replace' : 'add'} ${op.dst === '0.0.0.0/0' ? 'default' : op.dst}${opt('via', op.via)} dev ${op.dev}${opt('scope', op.scope)}${opt('src', op.src)}${opt('mtu', op.mtu)}${opt('proto', op.proto === undefined ? undefined : ROUTE_PROTOCOLS[op.proto])}`
    case 'route.del':
      return `route del ${op.dst} dev ${op.dev}`
    case 'neigh.add':
      return `neigh ${op.replace ? 'replace' : 'add'}${op.proxy ? ' proxy' : ''} ${op.dst}${opt('lladdr', op.lladdr)} dev ${op.dev}${op.permanent ? ' nud permanent' : ''}`
    default:
      throw new Error(`${op.kind} is not a batch line`)
  }
}

/** The argv (after the program) of an op that runs as its own command. */
export function renderArgv(op: KernelOp): {file: string; args: string[]} {
  switch (op.kind) {
    case 'link.get':
      return {file: 'ip', args: ['-j', '-d', 'link', 'show', 'dev', op.name]}
    case 'link.list':
      return {file: 'ip', args: ['-j', '-d', 'link', 'show']}
    case 'addr.list':
      return {file: 'ip', args: ['-j', 'addr', 'show', ...(op.dev ? ['dev', op.dev] : [])]}
    case 'route.list':
      return {file: 'ip', args: [`-${op.family}`, '-j', 'route', 'show', ...(op.table ? ['table', op.table] : []), ...(op.exact ? ['exact', op.exact] : [])]}
    case 'link.del':
      return {file: 'ip', args: ['link', 'del', 'dev', op.name]}
    case 'route.del':
      return {file: 'ip', args: ['route', 'del', op.dst, 'dev', op.dev]}
    case 'sysctl.set':
      return {file: 'sysctl', args: ['-q', '-w', `${op.key}=${op.value}`]}
    case 'qdisc.add':
    case 'qdisc.del':
    case 'tc.attach':
    case 'tc.detach':
      return {file: 'tc', args: renderTcLine(op).split(' ')}
    case 'tc.list':
      return {file: 'tc', args: ['-j', 'filter', 'show', 'dev', op.dev, op.direction]}
    case 'prog.get':
      return {file: 'bpftool', args: ['-j', 'prog', 'show', 'pinned', op.pinned]}
    case 'map.lookup':
      return {file: 'bpftool', args: ['-j', 'map', 'lookup', 'pinned', op.map, 'key', ...hexWords(op.key).split(' ')]}
    case 'map.dump':
      return {file: 'bpftool', args: ['-j', 'map', 'dump', 'pinned', op.map]}
    case 'map.update':
    case 'map.delete':
      return {file: 'bpftool', args: ['-j', 'batch', 'file', '-']}
    case 'map.info':
      return {file: 'bpftool', args: ['-j', 'map', 'show', 'pinned', op.map]}
    case 'map.create':
      return {
        file: 'bpftool',
        args: ['map', 'create', op.map, 'type', op.type, 'key', String(op.keySize), 'value', String(op.valueSize), 'entries', String(op.maxEntries), 'name', op.name,
          ...(op.flags ? ['flags', String(op.flags)] : [])],
      }
    case 'obj.load':
      return {
        file: 'bpftool',
        args: ['prog', 'loadall', op.object, op.pinDir, 'type', op.progType, ...(op.maps ?? []).flatMap((m) => ['map', 'name', m.name, 'pinned', m.pinned]),
          ...(op.pinMaps ? ['pinmaps', op.pinMaps] : [])],
      }
    default:
      return {file: 'ip', args: ['-batch', '-']}
  }
}

function opt(word: string, v: string | number | undefined): string {
  return v === undefined ? '' : ` ${word} ${v}`
}

/**
 * The errno behind an extended ack of the tc subsystem, which `tc` prints without the errno.
 * "Exclusivity flag on": a second clsact (EEXIST). Missing filter chain, parent qdisc, qdisc or
 * filter: ENOENT. "Invalid handle" is what a `qdisc del … clsact` gets once the clsact is gone:
 * the device's default ingress slot has handle 0, not clsact's (the kernel says EINVAL; for pn's
 * one qdisc it means "not there").
 */
const TC_EXTACK: [RegExp, Errno][] = [
  [/^Exclusivity flag on/, 'EEXIST'],
  [/^Cannot find specified filter chain|^Parent Qdisc doesn't exists?|^Cannot find specified qdisc|^Filter with specified priority\/protocol not found|^Invalid handle/, 'ENOENT'],
]

const errnoOfStrerror = (text: string): Errno | undefined => (Object.keys(STRERROR) as Errno[]).find((e) => STRERROR[e] === text.trim())

/**
 * iproute2's error text → errno and extack. The only place pn reads a tool's error text: iproute2
 * prints no JSON for errors. "RTNETLINK answers: X" carries strerror(errno); "Error: X." is the
 * kernel's extended ack (then iproute2 prints no errno; tc's known ones are mapped above);
 * "Cannot find device" / "does not exist" is iproute2 failing to resolve a name before it sends
 * anything (ENODEV); "Couldn't retrieve pinned program 'P': X" is tc failing to open a pin.
 */
export function toolError(stderr: string): {errno?: Errno; extack?: string; text: string} {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Command failed'))
  const text = lines.slice(-3).join('; ')
  let errno: Errno | undefined
  let extack: string | undefined
  for (const l of lines) {
    const rt = /^RTNETLINK answers: (.+)$/.exec(l)
    if (rt) errno = errnoOfStrerror(rt[1]) ?? errno
    const ea = /^Error: (.+?)\.?$/.exec(l)
    if (ea) {
      extack = ea[1]
      errno = TC_EXTACK.find(([re]) => re.test(ea[1]))?.[1] ?? errno
    }
    if (/^Cannot find device|^Device ".*" does not exist/.test(l)) errno = 'ENODEV'
    const pin = /^Couldn't retrieve pinned program '.*': (.+)$/.exec(l)
    if (pin) errno = errnoOfStrerror(pin[1]) ?? errno
  }
  return {errno, extack, text}
}

/** A bpftool -j answer's error, `{"error": "<what>: <strerror>"}` → errno (when pn tells it apart) and the text. */
export function bpftoolError(message: string): {errno?: Errno; text: string} {
  const m = /: ([^:]+)$/.exec(message)
  return {errno: m ? errnoOfStrerror(m[1]) : undefined, text: message}
}

/** The errno name of an error bpftool printed for a value it could not read ("Unknown error 524": the kernel's ENOTSUPP). */
function errnoName(message: string): string {
  if (/Unknown error 524$/.test(message)) return 'ENOTSUPP'
  return bpftoolError(message).errno ?? message
}

/** bpftool's `["0x0a", "0x00", …]`. */
function bytesOf(words: string[]): Buffer {
  return Buffer.from(words.map((w) => parseInt(w, 16)))
}

interface BpftoolEntry {
  key: string[]
  value?: string[] | {error: string}
  values?: {cpu: number; value: string[]}[]
}

/** One entry of `bpftool -j map dump|lookup` as bytes. */
function mapEntryOf(e: BpftoolEntry): MapEntry {
  const key = bytesOf(e.key)
  if (e.values) return {key, values: e.values.map((v) => bytesOf(v.value))}
  if (Array.isArray(e.value)) return {key, value: bytesOf(e.value)}
  return {key, unreadable: errnoName(e.value?.error ?? 'no value')}
}

interface TcFilterJson {
  pref?: number
  kind?: string
  options?: {handle?: string; prog?: {id?: number; name?: string; tag?: string}}
}

/**
 * `tc -j filter show` as filters. tc prints one entry per pref without options (the chain's head)
 * and one per filter with them; a pref with only a head still counts, so a hook is never taken
 * for empty.
 */
export function tcFilters(json: TcFilterJson[]): TcFilter[] {
  const out: TcFilter[] = []
  const withOptions = new Set(json.filter((f) => f.options).map((f) => `${f.pref}/${f.kind}`))
  for (const f of json) {
    if (!f.options && withOptions.has(`${f.pref}/${f.kind}`)) continue
    if (!f.options && out.some((o) => o.pref === f.pref && o.kind === f.kind)) continue
    const h = f.options?.handle
    const p = f.options?.prog
    out.push({
      pref: f.pref ?? 0,
      kind: f.kind ?? '',
      ...(h === undefined ? {} : {handle: parseInt(h, 16)}),
      ...(p?.id === undefined ? {} : {prog: {id: p.id, ...(p.name ? {name: p.name} : {}), ...(p.tag ? {tag: p.tag} : {})}}),
    })
  }
  return out
}

export function parseJson<T>(text: string, action: string): T {
  try {
    return JSON.parse(text || 'null') as T
  } catch (err) {
    throw new PnError('PN_COMMAND_FAILED', `${action}: unexpected output (${(err as Error).message})`)
  }
}


export class ToolsBackend implements KernelBackend {
  constructor(private readonly runner: Runner) {}

  apply(ops: readonly KernelOp[], opts: ApplyOptions = {}): Promise<KernelResult[]> {
    return clocked(() => this.applyOps(ops, opts))
  }

  private async applyOps(ops: readonly KernelOp[], opts: ApplyOptions): Promise<KernelResult[]> {
    const out: KernelResult[] = []
    for (let i = 0; i < ops.length; ) {
      checkAbort(opts.signal, ops[i])
      let j = i + 1
      const kind = ops[i].kind
      if (batched(ops[i])) {
        while (j < ops.length && batched(ops[j])) j++
        await this.batch(ops, i, j, opts.netns)
      } else if (tcBatched(ops[i])) {
        while (j < ops.length && tcBatched(ops[j])) j++
        await this.tcBatch(ops, i, j, opts.netns)
      } else if (MAP_BATCHED.has(kind)) {
        while (j < ops.length && MAP_BATCHED.has(ops[j].kind)) j++
        out.push(...(await this.mapBatch(ops, i, j, opts.netns)))
        i = j
        continue
      } else if (kind === 'sysctl.set') {
        while (j < ops.length && ops[j].kind === 'sysctl.set') j++
        await this.sysctls(ops, i, j, opts.netns)
      } else {
        out.push(await this.single(ops[i], i, opts.netns))
        i = j
        continue
      }
      for (let k = i; k < j; k++) out.push((ops[k].kind === 'tc.detach' ? {kind: 'tc.detach', deleted: true} : {kind: ops[k].kind}) as KernelResult)
      i = j
    }
    return out
  }

  private async single(op: KernelOp, index: number, netns: string | undefined): Promise<KernelResult> {
    const {file, args} = renderArgv(op)
    switch (op.kind) {
      case 'link.get': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        if (r.exitCode === 0) return {kind: 'link.get', link: parseJson<LinkInfo[]>(r.stdout, describeOp(op))?.[0]}
        const e = toolError(r.stderr)
        if (e.errno === 'ENODEV') return {kind: 'link.get', link: undefined}
        throw failed(op, index, netns, r, e)
      }
      case 'link.list': {
        const r = await this.runner.run(file, args, {netns, readOnly: true})
        return {kind: 'link.list', links: parseJson<LinkInfo[]>(r.stdout || '[]', describeOp(op)) ?? []}
      }
      case 'addr.list': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        if (r.exitCode === 0) return {kind: 'addr.list', links: parseJson<AddrLink[]>(r.stdout, describeOp(op)) ?? []}
        const e = toolError(r.stderr)
        if (e.errno === 'ENODEV' && op.dev) return {kind: 'addr.list', links: []}
        throw failed(op, index, netns, r, e)
      }
      case 'route.list': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        if (r.exitCode === 0) return {kind: 'route.list', routes: parseJson<RouteEntry[]>(r.stdout, describeOp(op)) ?? []}
        throw failed(op, index, netns, r, toolError(r.stderr))
      }
      case 'link.del': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: 'link.del', deleted: true}
        const e = toolError(r.stderr)
        if (e.errno === 'ENODEV' && op.missingOk) return {kind: 'link.del', deleted: false}
        throw failed(op, index, netns, r, e)
      }
      case 'route.del': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: 'route.del'}
        // The kernel answers ESRCH for a route that is not there.
        const e = toolError(r.stderr)
        if (e.errno === 'ESRCH' && op.missingOk) return {kind: 'route.del'}
        throw failed(op, index, netns, r, e)
      }
      case 'qdisc.del':
      case 'tc.detach': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: op.kind, deleted: true}
        const e = toolError(r.stderr)
        // An absent device, qdisc or filter: nothing to delete.
        if ((e.errno === 'ENOENT' || e.errno === 'ENODEV') && op.missingOk) return {kind: op.kind, deleted: false}
        throw failed(op, index, netns, r, e)
      }
      case 'qdisc.add':
      case 'tc.attach': {
        // Alone (its neighbours are not tc changes): its own `tc` command, its failure its own.
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: op.kind}
        throw failed(op, index, netns, r, toolError(r.stderr))
      }
      case 'tc.list': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        if (r.exitCode === 0) return {kind: 'tc.list', filters: tcFilters(parseJson<TcFilterJson[]>(r.stdout, describeOp(op)) ?? [])}
        const e = toolError(r.stderr)
        if (e.errno === 'ENODEV') return {kind: 'tc.list', filters: []}
        throw failed(op, index, netns, r, e)
      }
      case 'prog.get': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        const j = parseJson<{id?: number; name?: string; tag?: string; error?: string} | null>(r.stdout, describeOp(op))
        if (r.exitCode === 0) return {kind: 'prog.get', prog: j?.id === undefined ? undefined : {id: j.id, ...(j.name ? {name: j.name} : {}), ...(j.tag ? {tag: j.tag} : {})}}
        const e = bpftoolFailure(r, j)
        if (e.errno === 'ENOENT') return {kind: 'prog.get', prog: undefined}
        throw failed(op, index, netns, r, e)
      }
      case 'map.info': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        const j = parseJson<{id?: number; type?: string; bytes_key?: number; bytes_value?: number; max_entries?: number; error?: string} | null>(r.stdout, describeOp(op))
        if (r.exitCode === 0 && j?.id !== undefined) {
          return {kind: 'map.info', info: {id: j.id, type: j.type ?? 'unknown', keySize: j.bytes_key ?? 0, valueSize: j.bytes_value ?? 0, maxEntries: j.max_entries ?? 0}}
        }
        const e = bpftoolFailure(r, j)
        if (e.errno === 'ENOENT') return {kind: 'map.info', info: undefined}
        throw failed(op, index, netns, r, e)
      }
      case 'map.create': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: 'map.create'}
        throw failed(op, index, netns, r, loaderError(r.stderr))
      }
      case 'obj.load': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true})
        if (r.exitCode === 0) return {kind: 'obj.load'}
        // libbpf's line is the cause (its errno, EACCES from the verifier above all, says less).
        throw new KernelError({op, index, netns, reason: loaderError(r.stderr).text, detail: {argv: r.argv, log: r.stderr.slice(-8000)}})
      }
      case 'map.lookup': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        const j = parseJson<(BpftoolEntry & {error?: string}) | null>(r.stdout, describeOp(op))
        if (j && !j.error) {
          const e = mapEntryOf(j)
          return {kind: 'map.lookup', ...(e.values ? {values: e.values} : {value: e.value})}
        }
        // An absent key: `null` and no error (exit code 254, -ENOENT).
        if (j === null && r.exitCode !== 255) return {kind: 'map.lookup', value: undefined}
        throw failed(op, index, netns, r, bpftoolFailure(r, j))
      }
      case 'map.dump': {
        const r = await this.runner.run(file, args, {netns, allowFailure: true, readOnly: true})
        // An empty map is `[]` (older bpftool: nothing at all).
        const j = parseJson<BpftoolEntry[] | {error?: string} | null>(r.stdout, describeOp(op))
        if (r.exitCode === 0 && (j === null || Array.isArray(j))) return {kind: 'map.dump', entries: (j ?? []).map(mapEntryOf)}
        throw failed(op, index, netns, r, bpftoolFailure(r, Array.isArray(j) ? null : j))
      }
      default:
        throw new Error(`${op.kind}: not a single command`)
    }
  }

  /** Consecutive tc changes: one alone is its own command; more go to one `tc -batch -`. */
  private async tcBatch(ops: readonly KernelOp[], from: number, to: number, netns: string | undefined): Promise<void> {
    if (to - from === 1) {
      await this.single(ops[from], from, netns)
      return
    }
    const lines = ops.slice(from, to).map(renderTcLine)
    const r = await this.runner.run('tc', ['-batch', '-'], {netns, input: lines.join('\n') + '\n', allowFailure: true})
    if (r.exitCode === 0) return
    const e = toolError(r.stderr)
    const found = await locate(this.runner, ops.slice(from, to), netns, e.errno)
    throw failed(ops[from + found.index], from + found.index, netns, r, {...e, errno: found.errno ?? e.errno})
  }

  /**
   * Consecutive map writes in one `bpftool -j batch file -`. Its JSON answer has one entry per
   * line it ran; the last has `{"error": …}` when the batch stopped. A missingOk delete that
   * found nothing is `{deleted: false}`, and the batch goes on after it.
   */
  private async mapBatch(ops: readonly KernelOp[], from: number, to: number, netns: string | undefined): Promise<KernelResult[]> {
    const out: KernelResult[] = []
    const done = (k: number) => out.push((ops[k].kind === 'map.delete' ? {kind: 'map.delete', deleted: true} : {kind: ops[k].kind}) as KernelResult)
    for (let start = from; start < to; ) {
      const lines = ops.slice(start, to).map(renderMapLine)
      const r = await this.runner.run('bpftool', ['-j', 'batch', 'file', '-'], {netns, input: lines.join('\n') + '\n', allowFailure: true})
      if (r.exitCode === 0) {
        for (let k = start; k < to; k++) done(k)
        return out
      }
      const answer = parseJsonOr<{output?: {error?: string} | null}[] | {error?: string}>(r.stdout)
      const at = Array.isArray(answer) ? answer.findIndex((a) => a.output?.error !== undefined) : -1
      // Without a per-line answer (bpftool stopped before the first line), blame the first line of this run.
      const k = start + Math.max(0, at)
      const e = Array.isArray(answer) && at >= 0 ? bpftoolError(answer[at].output!.error!) : bpftoolFailure(r, Array.isArray(answer) ? undefined : answer)
      for (let m = start; m < k; m++) done(m)
      const op = ops[k]
      // ENOENT of the delete itself (not of opening the pin): the key is not there.
      if (op.kind === 'map.delete' && op.missingOk && e.errno === 'ENOENT' && at >= 0 && /^delete failed/.test(e.text)) {
        out.push({kind: 'map.delete', deleted: false})
        start = k + 1
        continue
      }
      throw failed(op, k, netns, r, e)
    }
    return out
  }

  private async batch(ops: readonly KernelOp[], from: number, to: number, netns: string | undefined): Promise<void> {
    const lines = ops.slice(from, to).map(renderLine)
    const r = await this.runner.run('ip', ['-batch', '-'], {netns, input: lines.join('\n') + '\n', allowFailure: true})
    if (r.exitCode === 0) return
    const e = toolError(r.stderr)
    const found = await locate(this.runner, ops.slice(from, to), netns, e.errno)
    throw failed(ops[from + found.index], from + found.index, netns, r, {...e, errno: found.errno ?? e.errno})
  }

  private async sysctls(ops: readonly KernelOp[], from: number, to: number, netns: string | undefined): Promise<void> {
    const set = ops.slice(from, to) as Extract<KernelOp, {kind: 'sysctl.set'}>[]
    if (!netns) {
      // This process's netns (the node's): through /proc/sys, no `sysctl` process per pod.
      for (const [k, op] of set.entries()) {
        await this.runner.writeFile(sysctlPath(op.key), op.value + '\n').catch((err: unknown) => {
          throw new KernelError({op, index: from + k, errno: errnoOf(err), reason: (err as Error).message, cause: err})
        })
      }
      return
    }
    const r = await this.runner.run('sysctl', ['-q', '-w', ...set.map((op) => `${op.key}=${op.value}`)], {netns, allowFailure: true})
    if (r.exitCode === 0) return
    // Which key: read them back (`sysctl -e` prints `key = value`, leaves out absent keys).
    const back = await this.runner.run('sysctl', ['-e', ...set.map((op) => op.key)], {netns, allowFailure: true, readOnly: true})
    const values = new Map(back.stdout.split('\n').flatMap((l) => {
      const m = /^(\S+)\s*=\s*(.*)$/.exec(l.trim())
      return m ? [[m[1], m[2].trim()] as const] : []
    }))
    const k = Math.max(0, set.findIndex((op) => values.get(op.key) !== op.value))
    throw failed(set[k], from + k, netns, r, {...toolError(r.stderr), errno: values.has(set[k].key) ? undefined : 'ENOENT'})
  }
}

function failed(op: KernelOp, index: number, netns: string | undefined, r: RunResult, e: {errno?: Errno; extack?: string; text?: string}): KernelError {
  return new KernelError({
    op, index, netns, errno: e.errno, extack: e.extack, reason: e.text || `exit code ${r.exitCode}`,
    detail: {argv: r.argv, stderr: r.stderr, ...(r.argv.includes('bpftool') && r.stdout ? {stdout: r.stdout.slice(0, 4096)} : {})},
  })
}

/** JSON or undefined (a tool that died before it printed its answer). */
function parseJsonOr<T>(text: string): T | undefined {
  try {
    return JSON.parse(text || 'null') as T
  } catch {
    return undefined
  }
}

/** The error of a failed bpftool -j command: its JSON `error`, else whatever it printed on stderr. */
/**
 * bpftool's object load and map create report in libbpf's words on stderr (text, not JSON): the
 * cause is the first `libbpf: … failed|error` line, else bpftool's own last line; its errno where
 * the text names one (`-EEXIST`, `File exists`).
 */
function loaderError(stderr: string): {errno?: Errno; text: string} {
  const lines = stderr.trim().split('\n').filter((l) => l && !/^Warning|^If it used to work/.test(l))
  const text = lines.find((l) => /^libbpf: .*(failed|error)/i.test(l)) ?? lines.at(-1) ?? 'failed'
  const named = (Object.keys(STRERROR) as Errno[]).find((e) => stderr.includes(`-${e}`) || stderr.includes(STRERROR[e]))
  return {errno: named, text: text.replace(/^Error: /, '')}
}

function bpftoolFailure(r: RunResult, j: {error?: string} | null | undefined): {errno?: Errno; text: string} {
  if (j?.error) return bpftoolError(j.error)
  return {text: r.stderr.trim() || `exit code ${r.exitCode}`}
}

type Verdict = {applied: true} | {applied: false; errno?: Errno}

/** Reads the kernel's state in JSON, each query once, to tell which ops of a failed batch took effect. */
class Probe {
  private readonly cache = new Map<string, Promise<unknown>>()

  constructor(
    private readonly runner: Runner,
    private readonly netns: string | undefined,
  ) {}

  /** `file args` in JSON; a failed query is `undefined` (an absent device for tc). */
  private ask<T>(file: string, args: string[], netns = this.netns): Promise<T | undefined> {
    const key = `${netns ?? ''}\0${file} ${args.join(' ')}`
    if (!this.cache.has(key)) {
      this.cache.set(key, this.runner.run(file, args, {netns, allowFailure: true, readOnly: true}).then((r) => (r.exitCode === 0 ? (parseJson<T>(r.stdout, `${file} ${args.join(' ')}`) ?? undefined) : undefined)))
    }
    return this.cache.get(key) as Promise<T | undefined>
  }

  private async query<T>(args: string[], netns = this.netns): Promise<T> {
    return (await this.ask<T>('ip', args, netns)) ?? ([] as T)
  }

  /** The tc filters of a hook; undefined when the device is absent. */
  private async filters(dev: string, direction: string): Promise<TcFilter[] | undefined> {
    const j = await this.ask<TcFilterJson[]>('tc', ['-j', 'filter', 'show', 'dev', dev, direction])
    return j === undefined ? undefined : tcFilters(j)
  }

  private async link(name: string, netns = this.netns): Promise<LinkInfo | undefined> {
    return (await this.query<LinkInfo[]>(['-j', '-d', 'link', 'show'], netns)).find((l) => l.ifname === name)
  }

  async verdict(op: KernelOp): Promise<Verdict> {
    const absent = {applied: false as const}
    switch (op.kind) {
      case 'link.add': {
        const host = await this.link(op.name)
        if (host) return op.address === undefined || host.address === op.address ? {applied: true} : {applied: false, errno: 'EEXIST'}
        if (op.type === 'vxlan') return absent
        const peer = op.peer.netns === undefined ? await this.link(op.peer.name) : await this.link(op.peer.name, op.peer.netns)
        return peer ? {applied: false, errno: 'EEXIST'} : absent
      }
      case 'link.set': {
        const l = await this.link(op.name)
        if (!l) return {applied: false, errno: 'ENODEV'}
        const ok = (op.up === undefined || (l.flags ?? []).includes('UP') === op.up) && (op.mtu === undefined || l.mtu === op.mtu)
        return ok ? {applied: true} : absent
      }
      case 'addr.add':
      case 'addr.del': {
        if (!(await this.link(op.dev))) return {applied: false, errno: 'ENODEV'}
        const [local, plen] = op.address.split('/')
        const addrs = await this.query<{addr_info?: {local?: string; prefixlen?: number}[]}[]>(['-j', 'addr', 'show', 'dev', op.dev])
        const there = addrs.some((a) => (a.addr_info ?? []).some((x) => x.local === local && String(x.prefixlen) === plen))
        return there === (op.kind === 'addr.add') ? {applied: true} : absent
      }
      case 'route.del': {
        if (!(await this.link(op.dev))) return {applied: false, errno: 'ENODEV'}
        const routes = await this.query<{dev?: string}[]>([op.dst.includes(':') ? '-6' : '-4', '-j', 'route', 'show', 'exact', op.dst])
        return routes.some((x) => x.dev === op.dev) ? absent : {applied: true}
      }
      case 'route.add': {
        if (!(await this.link(op.dev))) return {applied: false, errno: 'ENODEV'}
        // The main table's routes to exactly this prefix, on any device: `route add` of a prefix
        // that is there through another device fails with EEXIST, `route replace` takes it over.
        const six = op.dst.includes(':')
        const routes = await this.query<{dst?: string; dev?: string; gateway?: string}[]>([six ? '-6' : '-4', '-j', 'route', 'show', 'exact', op.dst])
        if (routes.some((x) => x.dev === op.dev && (op.via === undefined || x.gateway === op.via))) return {applied: true}
        return routes.length > 0 && !op.replace ? {applied: false, errno: 'EEXIST'} : absent
      }
      case 'neigh.add': {
        if (!(await this.link(op.dev))) return {applied: false, errno: 'ENODEV'}
        const fam = op.dst.includes(':') ? '-6' : '-4'
        const entries = await this.query<{dst?: string; lladdr?: string}[]>(op.proxy ? [fam, '-j', 'neigh', 'show', 'proxy', 'dev', op.dev] : [fam, '-j', 'neigh', 'show', 'dev', op.dev])
        return entries.some((x) => x.dst === op.dst && (op.lladdr === undefined || x.lladdr === op.lladdr)) ? {applied: true} : absent
      }
      case 'qdisc.add':
      case 'qdisc.del': {
        const qdiscs = await this.ask<{kind?: string}[]>('tc', ['-j', 'qdisc', 'show', 'dev', op.dev])
        if (qdiscs === undefined) return {applied: false, errno: 'ENODEV'}
        return qdiscs.some((q) => q.kind === 'clsact') === (op.kind === 'qdisc.add') ? {applied: true} : absent
      }
      case 'tc.attach':
      case 'tc.detach': {
        const filters = await this.filters(op.dev, op.direction)
        if (filters === undefined) return {applied: false, errno: 'ENODEV'}
        const at = filters.find((f) => f.pref === op.pref && f.handle === op.handle && f.kind === 'bpf')
        if (op.kind === 'tc.detach') return at ? absent : {applied: true}
        // Attached means the pinned program, not just a filter there (a replace of an older one).
        const prog = await this.ask<{id?: number}>('bpftool', ['-j', 'prog', 'show', 'pinned', op.pinned])
        if (prog?.id === undefined) return {applied: false, errno: 'ENOENT'}
        return at?.prog?.id === prog.id ? {applied: true} : absent
      }
      default:
        return absent
    }
  }
}

/** The index (in `ops`) of a failed batch's failing op, and its errno where state shows it. */
async function locate(runner: Runner, ops: readonly KernelOp[], netns: string | undefined, toolErrno: Errno | undefined): Promise<{index: number; errno?: Errno}> {
  const probe = new Probe(runner, netns)
  for (const [i, op] of ops.entries()) {
    const v = await probe.verdict(op)
    if (v.applied) continue
    // The tool's errno says the failing op's effect was there already (an add of something
    // present, a delete of something absent) but this op's effect is not: the failing op is an
    // earlier such op, which state cannot tell from one that took effect.
    if (!v.errno && toolErrno) for (let k = i - 1; k >= 0; k--) if (failsWhenDone(ops[k], toolErrno)) return {index: k, errno: toolErrno}
    return {index: i, errno: v.errno}
  }
  // Every effect is there: an op whose effect was there already.
  for (let k = ops.length - 1; k >= 0; k--) if (toolErrno && failsWhenDone(ops[k], toolErrno)) return {index: k, errno: toolErrno}
  return {index: ops.length - 1, errno: toolErrno}
}

/** An op the kernel refuses with `errno` when its effect is already there (a plain add, a delete). */
function failsWhenDone(op: KernelOp, errno: Errno): boolean {
  if (errno === 'EEXIST') return ((op.kind === 'addr.add' || op.kind === 'route.add' || op.kind === 'neigh.add') && !op.replace) || op.kind === 'qdisc.add'
  if (errno === 'ESRCH') return op.kind === 'route.del'
  if (errno === 'EADDRNOTAVAIL') return op.kind === 'addr.del'
  if (errno === 'ENOENT') return op.kind === 'tc.detach'
  return false
}

const BACKENDS = new WeakMap<Runner, KernelBackend>()

/**
 * The backend for a runner: the native backend (one kernel-worker request per apply) when the
 * runner carries the agent's worker, the tools backend over it otherwise — the CLI's runner,
 * --verbose's and --dry-run's, and the entries' when PN_KERNEL=tools (they make no WorkerRunner).
 */
export function kernelFor(runner: Runner): KernelBackend {
  let b = BACKENDS.get(runner)
  if (!b) {
    b = runner instanceof WorkerRunner
      ? new NativeBackend(runner.workers, new MapBackend(), {
        log: runner.log,
        ...(runner.earlyLinkDelete ? {earlyLinkDelete: {onLateFailure: (op: KernelOp, why: string) => runner.earlyLinkDelete?.onLateFailure?.(describeOp(op), why)}} : {}),
        loader: new ToolsBackend(runner.inner),
      })
      : new ToolsBackend(runner)
    BACKENDS.set(runner, b)
  }
  return b
}

