/**
 * One validated CNI request, the same object whether it came from a runtime (env + stdin) or
 * from `pn cni add|del|check` (flags). The flows in add/del/check/gc/status take only this.
 */
import type {Runner} from '../exec/runner.js'
import type {FlowOptions} from '../flow/plan.js'
import type {LockOptions} from '../state/files.js'
import type {CniArgs} from './env.js'
import type {NetConf} from './netconf.js'
import type {CniCommand} from './spec.js'

/** Steps of ADD, in order; also the values PN_CNI_FAIL_AFTER accepts. */
export const ADD_STEPS = ['ipam', 'veth', 'endpoint', 'bpf', 'confirm'] as const
export type AddStep = (typeof ADD_STEPS)[number]

export interface CniRequest {
  command: CniCommand
  conf: NetConf
  containerId: string
  ifname: string
  /** Empty on DEL when the runtime has no netns any more. */
  netns?: string
  args: CniArgs
  stateDir: string
  runner: Runner
  /** Diagnostics (stderr or the netconf's logFile); never stdout. */
  log: (msg: string) => void
  /** Fault injection for tests: throw right after this ADD step succeeded. */
  failAfter?: string
  /** This request's interrupt (SIGINT/SIGTERM at the entry, or an agent's per-request abort). */
  signal?: AbortSignal
  /** Lock timeout and hooks for the state files this request changes. */
  lock?: LockOptions
  /** Test hooks of the flow (e.g. slow steps down to deliver a signal mid-flow). */
  flow?: Pick<FlowOptions, 'beforeStep'>
}

/** A request without attachment (STATUS, GC). */
export type NodeRequest = Omit<CniRequest, 'containerId' | 'ifname' | 'netns'>
