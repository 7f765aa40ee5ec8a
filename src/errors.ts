/**
 * pn's one error type. Every failure the library can foresee is a PnError with a stable
 * code (`PN_*`), a lowercase `<action> <object>: <cause>` message and a hint naming what
 * to run next. The CLI maps the code to an exit code (EXIT_CODES) and the CNI layer maps it
 * to a CNI error code; neither ever re-wraps a PnError.
 */

/** Exit codes of the `pn` CLI, by category. Documented in docs/CLI.md. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  exhausted: 5,
  state: 6,
  system: 7,
  busy: 8,
  interrupted: 130,
} as const

export type ExitCategory = keyof typeof EXIT

/** Every stable error code, with its exit category and (for `pn cni`) its CNI error code. */
export const ERROR_CODES = {
  PN_INTERNAL: {exit: 'internal', cni: 999},
  PN_INVALID_ARGUMENT: {exit: 'usage', cni: 7},
  PN_UNKNOWN_COMMAND: {exit: 'usage', cni: 7},
  PN_INVALID_CIDR: {exit: 'usage', cni: 7},
  PN_INVALID_IP: {exit: 'usage', cni: 7},
  PN_INVALID_MASK_SIZE: {exit: 'usage', cni: 7},
  PN_INVALID_DURATION: {exit: 'usage', cni: 7},
  PN_INVALID_CONTAINER_ID: {exit: 'usage', cni: 4},
  PN_INVALID_IFNAME: {exit: 'usage', cni: 4},
  PN_CIDR_OVERLAP: {exit: 'conflict', cni: 7},
  PN_POOL_EXISTS: {exit: 'conflict', cni: 100},
  PN_POOL_NOT_FOUND: {exit: 'notFound', cni: 101},
  PN_POOL_CORRUPT: {exit: 'state', cni: 102},
  PN_POOL_EXHAUSTED: {exit: 'exhausted', cni: 103},
  PN_NODE_UNKNOWN: {exit: 'notFound', cni: 104},
  PN_NODE_NOT_INITIALIZED: {exit: 'notFound', cni: 105},
  PN_NODE_CONFLICT: {exit: 'conflict', cni: 106},
  PN_STATE_CORRUPT: {exit: 'state', cni: 107},
  PN_IPAM_EXHAUSTED: {exit: 'exhausted', cni: 108},
  PN_IPAM_IP_TAKEN: {exit: 'conflict', cni: 109},
  PN_IPAM_IP_OUT_OF_RANGE: {exit: 'usage', cni: 110},
  PN_IPAM_NOT_ALLOCATED: {exit: 'notFound', cni: 111},
  PN_LOCK_TIMEOUT: {exit: 'busy', cni: 11},
  PN_NETNS_NOT_FOUND: {exit: 'notFound', cni: 112},
  PN_NETNS_INVALID: {exit: 'usage', cni: 4},
  PN_LINK_EXISTS: {exit: 'conflict', cni: 113},
  PN_LINK_NOT_FOUND: {exit: 'notFound', cni: 114},
  PN_ENDPOINT_NOT_FOUND: {exit: 'notFound', cni: 115},
  PN_ENDPOINT_EXISTS: {exit: 'conflict', cni: 116},
  PN_BPF_COMPILE_FAILED: {exit: 'system', cni: 117},
  PN_BPF_LOAD_FAILED: {exit: 'system', cni: 118},
  PN_BPF_NOT_LOADED: {exit: 'notFound', cni: 119},
  PN_TOOL_MISSING: {exit: 'system', cni: 120},
  PN_COMMAND_FAILED: {exit: 'system', cni: 121},
  PN_CHECK_FAILED: {exit: 'conflict', cni: 122},
  PN_NOT_ROOT: {exit: 'system', cni: 123},
  PN_ENDPOINT_IDS_EXHAUSTED: {exit: 'exhausted', cni: 124},
  PN_NODE_BUSY: {exit: 'busy', cni: 11},
  PN_MONITOR_BUSY: {exit: 'busy', cni: 11},
  PN_INTERRUPTED: {exit: 'interrupted', cni: 11},
  PN_AGENT_BUSY: {exit: 'busy', cni: 11},
  PN_AGENT_RUNNING: {exit: 'conflict', cni: 128},
  PN_AGENT_NOT_RUNNING: {exit: 'notFound', cni: 129},
  PN_CIDR_CONFLICT: {exit: 'conflict', cni: 130},
  PN_IPAM_IN_USE: {exit: 'conflict', cni: 131},
  PN_BGP_CONFLICT: {exit: 'conflict', cni: 125},
  PN_BGP_FAILED: {exit: 'system', cni: 126},
  PN_POOL_UNREACHABLE: {exit: 'system', cni: 127},
  PN_POOL_LAYOUT: {exit: 'state', cni: 132},
  PN_POOL_TLS: {exit: 'system', cni: 133},
  PN_CLUSTER_NOT_FOUND: {exit: 'notFound', cni: 134},
  PN_CLUSTER_SCHEMA: {exit: 'state', cni: 135},
  PN_CLUSTER_CORRUPT: {exit: 'state', cni: 136},
  PN_CLUSTER_LEASE_LOST: {exit: 'conflict', cni: 137},
  PN_SERVICE_INVALID: {exit: 'usage', cni: 140},
  PN_SERVICE_CONFLICT: {exit: 'conflict', cni: 141},
  PN_SERVICE_LIMIT: {exit: 'exhausted', cni: 142},
  PN_SERVICE_APPLY_FAILED: {exit: 'system', cni: 143},
  PN_POLICY_INVALID: {exit: 'usage', cni: 144},
  PN_POLICY_NOT_FOUND: {exit: 'notFound', cni: 145},
  PN_IDENTITY_NOT_FOUND: {exit: 'notFound', cni: 146},
  PN_IDENTITY_EXHAUSTED: {exit: 'exhausted', cni: 147},
  PN_CNI_INCOMPATIBLE_VERSION: {exit: 'usage', cni: 1},
  PN_CNI_UNSUPPORTED_FIELD: {exit: 'usage', cni: 2},
  PN_CNI_UNKNOWN_CONTAINER: {exit: 'notFound', cni: 3},
  PN_CNI_INVALID_ENV: {exit: 'usage', cni: 4},
  PN_CNI_IO: {exit: 'system', cni: 5},
  PN_CNI_DECODE: {exit: 'usage', cni: 6},
  PN_CNI_INVALID_CONFIG: {exit: 'usage', cni: 7},
  PN_CNI_NOT_AVAILABLE: {exit: 'state', cni: 50},
  PN_CNI_INJECTED_FAILURE: {exit: 'internal', cni: 150},
} as const satisfies Record<string, {exit: ExitCategory; cni: number}>

export type ErrorCode = keyof typeof ERROR_CODES

export interface PnErrorOptions {
  hint?: string
  details?: Record<string, unknown>
  cause?: unknown
}

export class PnError extends Error {
  readonly code: ErrorCode
  readonly hint?: string
  readonly details?: Record<string, unknown>

  constructor(code: ErrorCode, message: string, opts: PnErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'PnError'
    this.code = code
    this.hint = opts.hint
    this.details = opts.details
  }

  get exitCode(): number {
    return EXIT[ERROR_CODES[this.code].exit]
  }

  get cniCode(): number {
    return ERROR_CODES[this.code].cni
  }

  toJSON(): {code: ErrorCode; message: string; hint?: string; details?: Record<string, unknown>} {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint ? {hint: this.hint} : {}),
      ...(this.details ? {details: this.details} : {}),
    }
  }
}

/** Wrap an unknown throwable once; a PnError passes through untouched. */
export function toPnError(err: unknown, action = 'run pn'): PnError {
  if (err instanceof PnError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new PnError('PN_INTERNAL', `${action}: ${message}`, {
    hint: 'this is a bug in pn or an unexpected system state; rerun with --verbose and report it',
    cause: err,
  })
}

export function isPnError(err: unknown, code?: ErrorCode): err is PnError {
  return err instanceof PnError && (code === undefined || err.code === code)
}

/** Edit distance (insert, delete, substitute): how close a mistyped word is, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]
}
