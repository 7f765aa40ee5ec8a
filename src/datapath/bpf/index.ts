/**
 * Public face of the BPF datapath (owned by the BPF work; signatures are the contract that
 * `pn node init`, `pn bpf …` and `pn cni` code against). Placeholder bodies until implemented.
 */
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import type {NodeContext} from '../../node/context.js'

export interface CompileResult {
  objects: Record<string, string>
  cacheDir: string
  cacheHit: boolean
}

export interface HostLoadResult {
  changed: boolean
  attachments: {device: string; direction: 'ingress' | 'egress'; program: string}[]
}

/** The subset of an endpoint record the datapath needs. */
export interface DatapathEndpoint {
  containerId: string
  ifname: string
  endpointId: number
  ips: string[]
  hostIfname: string
  hostIfindex: number
  hostMac: string
  podMac: string
}

const notYet = (what: string) =>
  new PnError('PN_INTERNAL', `${what}: not implemented yet`, {hint: 'the BPF datapath is still being built'})

export async function compileObjects(_runner: Runner, _opts: {cacheDir: string; force?: boolean}): Promise<CompileResult> {
  throw notYet('compile bpf')
}

export async function loadHostPrograms(_runner: Runner, _node: NodeContext, _stateDir: string): Promise<HostLoadResult> {
  throw notYet('load host programs')
}

export async function unloadHostPrograms(_runner: Runner, _node: NodeContext, _stateDir: string): Promise<{changed: boolean}> {
  throw notYet('unload host programs')
}

export async function attachEndpoint(_runner: Runner, _node: NodeContext, _ep: DatapathEndpoint): Promise<{changed: boolean}> {
  throw notYet('attach endpoint')
}

export async function detachEndpoint(_runner: Runner, _node: NodeContext, _ep: DatapathEndpoint): Promise<{changed: boolean}> {
  throw notYet('detach endpoint')
}
