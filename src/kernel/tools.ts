/**
 * The tools backend: kernel ops rendered to `ip` command lines run through the Runner, so
 * `--dry-run` and `--verbose` print exactly what runs and golden tests see the argv. Consecutive
 * changes (links, addresses, routes, neighbours) in one netns go to one `ip -batch -` process;
 * queries (link.get/list, addr.list, route.list), link.del and a route.del that may find nothing
 * are one command each; sysctls are written through /proc/sys in process (or by
 * one `sysctl -w` inside another netns). The agent's runner gets the native backend instead
 * (native.ts; kernelFor below).
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
 * the same batch creates, or on pn_host.
 *
 * Where iproute2 gives no JSON: its errors. Even with `-j` an error is a line of text on stderr
 * ("RTNETLINK answers: <strerror>", "Error: <extended ack>.", "Cannot find device"). `toolError`
 * below is the one reader of that text in pn; it yields an errno and the extack, never an index.
 */
import {PnError} from '../errors.js'
import {WorkerRunner} from '../exec/netlink-worker.js'
import type {RunResult, Runner} from '../exec/runner.js'
import type {ApplyOptions, KernelBackend} from './backend.js'
import {KernelError, STRERROR, errnoOf, type Errno} from './errors.js'
import {NativeBackend} from './native.js'
import {describeOp, sysctlPath, type AddrLink, type KernelOp, type KernelResult, type LinkInfo, type OpKind, type RouteEntry} from './ops.js'

/** Ops that go into one `ip -batch -` with their neighbours. */
const BATCHED: ReadonlySet<OpKind> = new Set(['link.add', 'link.set', 'addr.add', 'addr.del', 'route.add', 'route.del', 'neigh.add'])

/** An op that goes into a batch (a `missingOk` delete runs alone: its failure is its own result). */
function batched(op: KernelOp): boolean {
  return BATCHED.has(op.kind) && !('missingOk' in op && op.missingOk)
}

/** The `ip -batch` line of a change. */
export function renderLine(op: KernelOp): string {
  switch (op.kind) {
    case 'link.add': {
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
      return `route ${op.replace ? 'replace' : 'add'} ${op.dst === '0.0.0.0/0' ? 'default' : op.dst}${opt('via', op.via)} dev ${op.dev}${opt('scope', op.scope)}${opt('src', op.src)}${opt('mtu', op.mtu)}`
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
    default:
      return {file: 'ip', args: ['-batch', '-']}
  }
}

function opt(word: string, v: string | number | undefined): string {
  return v === undefined ? '' : ` ${word} ${v}`
}

/**
 * iproute2's error text → errno and extack. The only place pn reads a tool's error text: iproute2
 * prints no JSON for errors. "RTNETLINK answers: X" carries strerror(errno); "Error: X." is the
 * kernel's extended ack (then iproute2 prints no errno); "Cannot find device" / "does not exist"
 * is iproute2 failing to resolve a name before it sends anything (ENODEV).
 */
export function toolError(stderr: string): {errno?: Errno; extack?: string; text: string} {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Command failed'))
  const text = lines.slice(-3).join('; ')
  let errno: Errno | undefined
  let extack: string | undefined
  for (const l of lines) {
    const rt = /^RTNETLINK answers: (.+)$/.exec(l)
    if (rt) errno = (Object.keys(STRERROR) as Errno[]).find((e) => STRERROR[e] === rt[1].trim()) ?? errno
    const ea = /^Error: (.+?)\.?$/.exec(l)
    if (ea) extack = ea[1]
    if (/^Cannot find device|^Device ".*" does not exist/.test(l)) errno = 'ENODEV'
  }
  return {errno, extack, text}
}

export function parseJson<T>(text: string, action: string): T {
  try {
    return JSON.parse(text || 'null') as T
  } catch (err) {
    throw new PnError('PN_COMMAND_FAILED', `${action}: unexpected output (${(err as Error).message})`)
  }
}

function checkAbort(signal: AbortSignal | undefined, op: KernelOp): void {
  if (!signal?.aborted) return
  const by = typeof signal.reason === 'string' ? signal.reason : signal.reason instanceof Error ? signal.reason.message : 'abort'
  throw new PnError('PN_INTERRUPTED', `${describeOp(op)}: interrupted by ${by}`, {
    hint: 'everything this run had done was undone; run the command again',
    details: {signal: by},
  })
}

export class ToolsBackend implements KernelBackend {
  constructor(private readonly runner: Runner) {}

  async apply(ops: readonly KernelOp[], opts: ApplyOptions = {}): Promise<KernelResult[]> {
    const out: KernelResult[] = []
    for (let i = 0; i < ops.length; ) {
      checkAbort(opts.signal, ops[i])
      let j = i + 1
      const kind = ops[i].kind
      if (batched(ops[i])) {
        while (j < ops.length && batched(ops[j])) j++
        await this.batch(ops, i, j, opts.netns)
      } else if (kind === 'sysctl.set') {
        while (j < ops.length && ops[j].kind === 'sysctl.set') j++
        await this.sysctls(ops, i, j, opts.netns)
      } else {
        out.push(await this.single(ops[i], i, opts.netns))
        i = j
        continue
      }
      for (let k = i; k < j; k++) out.push({kind: ops[k].kind} as KernelResult)
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
      default:
        throw new Error(`${op.kind}: not a single command`)
    }
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
  return new KernelError({op, index, netns, errno: e.errno, extack: e.extack, reason: e.text || `exit code ${r.exitCode}`, detail: {argv: r.argv, stderr: r.stderr}})
}

type Verdict = {applied: true} | {applied: false; errno?: Errno}

/** Reads the kernel's state in JSON, each query once, to tell which ops of a failed batch took effect. */
class Probe {
  private readonly cache = new Map<string, Promise<unknown>>()

  constructor(
    private readonly runner: Runner,
    private readonly netns: string | undefined,
  ) {}

  private query<T>(args: string[], netns = this.netns): Promise<T> {
    const key = `${netns ?? ''}\0${args.join(' ')}`
    if (!this.cache.has(key)) {
      this.cache.set(key, this.runner.run('ip', args, {netns, allowFailure: true, readOnly: true}).then((r) => (r.exitCode === 0 ? (parseJson<T>(r.stdout, `ip ${args.join(' ')}`) ?? []) : [])))
    }
    return this.cache.get(key) as Promise<T>
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
  if (errno === 'EEXIST') return (op.kind === 'addr.add' || op.kind === 'route.add' || op.kind === 'neigh.add') && !op.replace
  if (errno === 'ESRCH') return op.kind === 'route.del'
  if (errno === 'EADDRNOTAVAIL') return op.kind === 'addr.del'
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
      ? new NativeBackend(runner.worker, new ToolsBackend(runner.inner), {log: runner.log})
      : new ToolsBackend(runner)
    BACKENDS.set(runner, b)
  }
  return b
}

