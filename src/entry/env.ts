/**
 * What the two entries (`pn` in src/cli, `pn-cni` in src/entry/cni-main.ts) take from the
 * environment. This is the only module besides the entries that reads `process.env`-style
 * input: the library below gets every setting as an option, so an agent serving many requests
 * in one process (or a test) can set them per request.
 */
import type {FlowOptions} from '../flow/plan.js'
import path from 'node:path'
import {DEFAULT_STATE_DIR, type LockOptions} from '../state/files.js'

export interface EntryOptions {
  /** PN_STATE_DIR (pn-cni; the CLI maps it onto --state-dir). */
  stateDir?: string
  /** PN_LOCK_TIMEOUT_MS, and the PN_TEST_HOLD_LOCK_MS test hook. */
  lock: LockOptions
  /**
   * The PN_TEST_CHECKPOINT_DELAY_MS test hook: every flow step announces itself on stderr
   * (`pn-test: step TITLE`) and waits this long first, so a test can signal mid-flow.
   */
  flow: Pick<FlowOptions, 'beforeStep'>
  /** The PN_CNI_FAIL_AFTER test hook: ADD fails right after this step. */
  failAfter?: string
  /** PN_BPF_DIR: the bpf/ source folder when pn runs outside its source tree. */
  bpfDir?: string
  /** PN_TRACE_EXEC: log every spawned command. */
  traceExec: boolean
  /** PN_KERNEL: `native` (the default: kernel ops go to the pn-netlink worker) or `tools` (ip and tc processes). */
  kernel: 'native' | 'tools'
  /**
   * PN_CNI_NETLINK_FD: a socket to a pn-netlink that the process which started pn-cni
   * (native/pn-cni.c) already runs (src/exec/helper-process.ts).
   */
  helperFds: {netlink?: number}
  /** PN_ETCD_CA / PN_ETCD_CERT / PN_ETCD_KEY: TLS files for an etcds:// pool (flags override). */
  etcdTls: {ca?: string; cert?: string; key?: string}
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** An inherited fd number above stdio, else undefined. */
function inheritedFd(v: string | undefined): number | undefined {
  return v !== undefined && /^[0-9]{1,4}$/.test(v) && Number(v) > 2 ? Number(v) : undefined
}

function positive(v: string | undefined): number | undefined {
  const n = Number(v)
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : undefined
}

/** PN_KERNEL: `tools` forces the tools backend; anything else (unset, `native`) is native when the worker is built. */
export function kernelOf(v: string | undefined): 'native' | 'tools' {
  return v === 'tools' ? 'tools' : 'native'
}

/** Read the PN_* variables; `stderr` receives the hold-lock hook's announcement. */
export function entryOptions(env: NodeJS.ProcessEnv, stderr: (line: string) => void = () => {}): EntryOptions {
  const holdMs = positive(env.PN_TEST_HOLD_LOCK_MS)
  const stepDelayMs = positive(env.PN_TEST_CHECKPOINT_DELAY_MS)
  return {
    ...(env.PN_STATE_DIR ? {stateDir: env.PN_STATE_DIR} : {}),
    lock: {
      ...(positive(env.PN_LOCK_TIMEOUT_MS) ? {timeoutMs: positive(env.PN_LOCK_TIMEOUT_MS)} : {}),
      ...(holdMs
        ? {
            // A test SIGKILLs the holder mid-transaction; this line tells it the lock is held.
            whileHeld: async (lockFile: string) => {
              stderr(`pn-test: holding lock ${lockFile} for ${holdMs} ms\n`)
              await sleep(holdMs)
            },
          }
        : {}),
    },
    flow: stepDelayMs
      ? {
          beforeStep: async (title: string) => {
            stderr(`pn-test: step ${title}\n`)
            await sleep(stepDelayMs)
          },
        }
      : {},
    ...(env.PN_CNI_FAIL_AFTER ? {failAfter: env.PN_CNI_FAIL_AFTER} : {}),
    ...(env.PN_BPF_DIR ? {bpfDir: env.PN_BPF_DIR} : {}),
    traceExec: Boolean(env.PN_TRACE_EXEC),
    kernel: kernelOf(env.PN_KERNEL),
    helperFds: {netlink: inheritedFd(env.PN_CNI_NETLINK_FD)},
    etcdTls: {
      ...(env.PN_ETCD_CA ? {ca: env.PN_ETCD_CA} : {}),
      ...(env.PN_ETCD_CERT ? {cert: env.PN_ETCD_CERT} : {}),
      ...(env.PN_ETCD_KEY ? {key: env.PN_ETCD_KEY} : {}),
    },
  }
}

/**
 * The state dir a request on stdin names, resolved as runProtocol does: its top-level
 * "stateDir", else PN_STATE_DIR, else the default. Undefined when stdin is not JSON.
 */
export function requestStateDir(stdin: string, env: NodeJS.ProcessEnv | Record<string, string>): string | undefined {
  let conf: unknown
  try {
    conf = JSON.parse(stdin)
  } catch {
    return undefined
  }
  const dir = conf && typeof conf === 'object' ? (conf as Record<string, unknown>).stateDir : undefined
  return path.resolve(typeof dir === 'string' && dir !== '' ? dir : env.PN_STATE_DIR || DEFAULT_STATE_DIR)
}
