/**
 * A failed kernel operation: which op (and its index in the applied list), the errno, and the
 * kernel's extended ack when it sent one. It is a PnError whose code comes from `pnCode`, the
 * one place that maps an errno to pn's codes, so a flow never matches an error text: it reads
 * `code` (or `errno` and `index` when it must tell two causes apart).
 */
import {PnError, type ErrorCode} from '../errors.js'
import {describeOp, deviceOf, type KernelOp} from './ops.js'

/** Symbolic errno names (as Node spells them: `EEXIST`), the ones pn tells apart. */
export type Errno = 'EEXIST' | 'ENODEV' | 'ENOENT' | 'EPERM' | 'EACCES' | 'EINVAL' | 'EBUSY' | 'ENETUNREACH' | 'ESRCH' | 'EOPNOTSUPP' | 'ENOSPC' | 'E2BIG' | 'EAFNOSUPPORT' | 'EADDRNOTAVAIL'

/** strerror(3) of each name: the cause of a message when the kernel gave no extended ack. */
export const STRERROR: Record<Errno, string> = {
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOENT: 'No such file or directory',
  EPERM: 'Operation not permitted',
  EACCES: 'Permission denied',
  EINVAL: 'Invalid argument',
  EBUSY: 'Device or resource busy',
  ENETUNREACH: 'Network is unreachable',
  ESRCH: 'No such process',
  EOPNOTSUPP: 'Operation not supported',
  ENOSPC: 'No space left on device',
  E2BIG: 'Argument list too long',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  EADDRNOTAVAIL: 'Cannot assign requested address',
}

/** Ops on pinned BPF objects (a program, a map): an absent pin means the datapath is not loaded. */
const PINNED: ReadonlySet<KernelOp['kind']> = new Set(['prog.get', 'map.update', 'map.delete', 'map.lookup', 'map.dump', 'map.info'])

/** The one mapping from a failed op to pn's error codes. */
export function pnCode(op: KernelOp, errno: Errno | undefined): ErrorCode {
  switch (errno) {
    case 'ENODEV':
      return 'PN_LINK_NOT_FOUND'
    case 'EACCES':
      // The verifier refusing a program is EACCES too: that is the load's failure, not a missing privilege.
      if (op.kind === 'obj.load') break
      return 'PN_NOT_ROOT'
    case 'EPERM':
      return 'PN_NOT_ROOT'
    case 'ENOENT':
      // An object load or map create fails for its own reasons (a missing file is the load's failure).
      if (op.kind === 'obj.load' || op.kind === 'map.create') break
      // The pin of a program or map is gone; a tc.attach names a pin too (the device is ENODEV).
      if (PINNED.has(op.kind) || op.kind === 'tc.attach') return 'PN_BPF_NOT_LOADED'
      // A sysctl of a device that is gone, or a link op on an absent link.
      if (op.kind === 'sysctl.set' || (deviceOf(op) !== undefined && !op.kind.startsWith('tc.') && !op.kind.startsWith('qdisc.'))) return 'PN_LINK_NOT_FOUND'
      break
    case 'EEXIST':
      if (op.kind === 'link.add') return 'PN_LINK_EXISTS'
      break
  }
  // The kernel refused the program on the hook (verifier, type) or the write into a map (full, bad size).
  if (op.kind === 'tc.attach' || op.kind === 'map.update' || op.kind === 'map.delete' || op.kind === 'obj.load' || op.kind === 'map.create') return 'PN_BPF_LOAD_FAILED'
  return 'PN_COMMAND_FAILED'
}

export interface KernelErrorInit {
  op: KernelOp
  /** Index of `op` in the list given to `apply`. */
  index: number
  errno?: Errno
  /** The kernel's extended ack (`Nexthop has invalid gateway`), when it sent one. */
  extack?: string
  netns?: string
  /** The cause in the backend's words when there is neither extack nor errno. */
  reason?: string
  /** What the backend ran (argv lines, for `details`; never matched on). */
  detail?: Record<string, unknown>
  cause?: unknown
}

export class KernelError extends PnError {
  readonly op: KernelOp
  readonly index: number
  readonly errno?: Errno
  readonly extack?: string
  readonly netns?: string
  /** The cause part of the message (the extack, strerror, or the backend's words). */
  readonly why: string

  constructor(init: KernelErrorInit) {
    const why = init.extack ?? (init.errno ? STRERROR[init.errno] : (init.reason ?? 'failed'))
    const code = pnCode(init.op, init.errno)
    super(code, `${describeOp(init.op)}${init.netns ? ` in ${init.netns}` : ''}: ${why}`, {
      hint: code === 'PN_NOT_ROOT' ? 'run pn as root (CAP_NET_ADMIN)' : code === 'PN_BPF_NOT_LOADED' ? 'load the datapath first: `pn bpf load --host` (or `pn node init` in bpf mode); `pn bpf status` shows what is pinned' : undefined,
      details: {op: init.op, index: init.index, errno: init.errno, extack: init.extack, ...(init.netns ? {netns: init.netns} : {}), ...init.detail},
      cause: init.cause,
    })
    this.name = 'KernelError'
    this.op = init.op
    this.index = init.index
    this.errno = init.errno
    this.extack = init.extack
    this.netns = init.netns
    this.why = why
  }
}

/** Node's errno name of a failed file operation (a sysctl write), when pn tells it apart. */
export function errnoOf(err: unknown): Errno | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code !== undefined && code in STRERROR ? (code as Errno) : undefined
}
