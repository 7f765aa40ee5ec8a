/**
 * Public face of the BPF datapath: what `pn node init`, `pn bpf …` and `pn cni` call.
 * Compile once per node, load and pin once per node, attach per pod (never compiling).
 * Every function takes plain inputs (a DatapathNode: bpffs root, uplink, router IPs), never
 * the node layer's context.
 */
import type {Runner} from '../../exec/runner.js'
import type {DatapathNode} from '../devices.js'
import {compileDatapath} from './compile.js'
import {attachPod, detachPod, type DatapathEndpoint} from './endpoint.js'
import {loadHost, unloadHost, type BuildOptions} from './load.js'
import {dumpMapEntries, dumpMapView, listPinnedMaps, type DecodedEntry, type MapDump, type MapInfo} from './map-io.js'
import {bpfStatus as status, type BpfStatus} from './status.js'
import type {TcAttachment} from './tc.js'

export type {DatapathEndpoint} from './endpoint.js'
export type {BpfStatus, AttachmentStatus, ProgramStatus} from './status.js'
export type {MapInfo, DecodedEntry, MapDump} from './map-io.js'
export type {BuildOptions} from './load.js'
export {PROGRAMS} from './bpffs.js'
export {MAP_NAMES} from './maps/index.js'

export interface CompileResult {
  objects: Record<string, string>
  cacheDir: string
  cacheHit: boolean
  /** Hash of sources + compile options (the cache folder's name). */
  hash?: string
}

export interface HostLoadResult {
  changed: boolean
  attachments: {device: string; direction: 'ingress' | 'egress'; program: string}[]
  bpffsRoot?: string
  object?: string
  cacheHit?: boolean
  /** True when this call loaded and pinned the programs (false: they were pinned already). */
  loaded?: boolean
  /** Maps the node lacked that this load created. */
  createdMaps?: string[]
  /** Counter maps pinned with an older layout that this load replaced. */
  replacedMaps?: string[]
  warnings?: string[]
}

/** clang every program, link them into one object; cached by source hash under cacheDir. */
export async function compileObjects(runner: Runner, opts: BuildOptions & {force?: boolean}): Promise<CompileResult> {
  return compileDatapath(runner, opts)
}

/** Compile (cached), load + pin once under node.bpffsRoot, attach uplink and pn_host hooks. */
export async function loadHostPrograms(runner: Runner, node: DatapathNode, build: BuildOptions): Promise<HostLoadResult> {
  return loadHost(runner, node, build)
}

/** Detach the host hooks and unpin (pins stay while pods are attached, unless force). */
export async function unloadHostPrograms(
  runner: Runner,
  node: Pick<DatapathNode, 'bpffsRoot' | 'uplink' | 'tunnel'>,
  opts: {force?: boolean} = {},
): Promise<{changed: boolean; detached?: TcAttachment[]; unpinned?: boolean; warnings?: string[]}> {
  return unloadHost(runner, node, opts)
}

/** Write the endpoint's map entries and attach from-container to its lxc ingress. */
export async function attachEndpoint(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, ep: DatapathEndpoint): Promise<{changed: boolean}> {
  return attachPod(runner, node, ep)
}

/** Reverse attachEndpoint; succeeds when already detached or the device is gone. */
export async function detachEndpoint(
  runner: Runner,
  node: Pick<DatapathNode, 'bpffsRoot'>,
  ep: DatapathEndpoint,
): Promise<{changed: boolean; warnings?: string[]}> {
  return detachPod(runner, node, ep)
}

export async function bpfStatus(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>): Promise<BpfStatus> {
  return status(runner, node)
}

export async function listMaps(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>): Promise<MapInfo[]> {
  return listPinnedMaps(runner, node.bpffsRoot)
}

export async function dumpMap(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, name: string): Promise<DecodedEntry[]> {
  return dumpMapEntries(runner, node.bpffsRoot, name)
}

/** `pn bpf map dump`: entries decoded, an event stream described (pn_events). */
export async function dumpMapForUser(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>, name: string): Promise<MapDump> {
  return dumpMapView(runner, node.bpffsRoot, name)
}
