/**
 * The seam between flows and the kernel: a backend applies a list of typed ops (ops.ts) in
 * order, in one netns, and returns one result per op, or throws a KernelError (errors.ts)
 * naming the failing op's index. Ops before that index were applied; the caller undoes what
 * it must (an undo stack, or deleting the link it was creating).
 *
 * Backends: ToolsBackend (tools.ts: `ip` through the Runner, what --dry-run and --verbose print);
 * NativeBackend (native.ts: one request per apply to the pn-netlink kernel worker, structured
 * results). kernelFor (tools.ts) picks one for a runner.
 */
import {PnError} from '../errors.js'
import {describeOp, type KernelOp, type KernelResult, type OpOf, type OpKind, type ResultOf} from './ops.js'

export interface ApplyOptions {
  /** Run inside this network namespace (a path: /run/netns/x, /proc/PID/ns/net). */
  netns?: string
  /** Checked before each command: an aborted request starts nothing more. */
  signal?: AbortSignal
}

export interface KernelBackend {
  apply(ops: readonly KernelOp[], opts?: ApplyOptions): Promise<KernelResult[]>
}

/** One op, with its result typed by its kind. */
export async function applyOne<K extends OpKind>(backend: KernelBackend, op: OpOf<K>, opts?: ApplyOptions): Promise<ResultOf<K>> {
  const [r] = await backend.apply([op], opts)
  return r as ResultOf<K>
}

/** A backend that only records the ops it is given (golden tests of a flow's op sequence). */
export class RecordingBackend implements KernelBackend {
  readonly applied: {ops: KernelOp[]; netns?: string}[] = []

  /** `answer` gives a query's result (link.get / link.list); changes answer with their kind. */
  constructor(private readonly answer?: (op: KernelOp, netns?: string) => KernelResult | undefined) {}

  async apply(ops: readonly KernelOp[], opts: ApplyOptions = {}): Promise<KernelResult[]> {
    this.applied.push({ops: [...ops], ...(opts.netns ? {netns: opts.netns} : {})})
    return ops.map((op) => this.answer?.(op, opts.netns) ?? defaultResult(op))
  }
}

function defaultResult(op: KernelOp): KernelResult {
  switch (op.kind) {
    case 'link.get':
      return {kind: 'link.get', link: undefined}
    case 'link.list':
      return {kind: 'link.list', links: []}
    case 'link.del':
      return {kind: 'link.del', deleted: true}
    default:
      return {kind: op.kind} as KernelResult
  }
}

/** Before each op of an apply: an aborted request starts nothing more (PN_INTERRUPTED names the op it stopped at). */
export function checkAbort(signal: AbortSignal | undefined, op: KernelOp): void {
  if (!signal?.aborted) return
  const by = typeof signal.reason === 'string' ? signal.reason : signal.reason instanceof Error ? signal.reason.message : 'abort'
  throw new PnError('PN_INTERRUPTED', `${describeOp(op)}: interrupted by ${by}`, {
    hint: 'everything this run had done was undone; run the command again',
    details: {signal: by},
  })
}
