/**
 * `pn service`: ClusterIP-style services load-balanced in BPF (pn's kube-proxy replacement).
 * The table is per node, as in Cilium where every agent programs every service: a cluster stays
 * in sync by applying the same file on every node (docs/SERVICES.md).
 *
 *   addService     one frontend and its backends (replaces the backend set in place)
 *   deleteService  one frontend (or every protocol on a VIP:port)
 *   applyServices  a whole desired table: adds, updates and removes in one batch
 *   listServices   the table with per-service counters from the datapath
 */
import {promises as fs} from 'node:fs'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {requireNodeContext} from '../node/context.js'
import {changeServices, lbMapsIdentity, readServiceTable, type ApplyOptions, type ApplyResult} from './apply.js'
import {PROTOCOLS, frontendKey, parseFrontend, parseService, parseServiceList, type ExternalOptions, type Protocol} from './model.js'
import {readExternalIndex} from './nodeport.js'
import {backendsOf, ipStr, protoOf, serviceKey} from './table.js'

export type {ApplyResult, ApplyOptions} from './apply.js'
export type {ServiceDiff, ServiceChange} from './plan.js'
export {parseFrontend, parseBackend, parseService, parseServiceList} from './model.js'
export type {ServiceSpec, Frontend, Backend, Protocol, ExternalOptions} from './model.js'
export {SERVICE_TYPES, TRAFFIC_POLICIES} from './model.js'

/** Add a service, or replace an existing one's backends in place. */
export async function addService(runner: Runner, stateDir: string, frontend: string, backends: string[], opts: ApplyOptions & {external?: ExternalOptions} = {}): Promise<ApplyResult & {frontend: string}> {
  const service = parseService(frontend, backends, opts.external)
  const r = await changeServices(stateDir, {kind: 'upsert', service}, opts)
  return {frontend: frontendKey(service.frontend), ...r}
}

/** Delete a service; without a protocol, every protocol on that VIP:port. Absent: changed false. */
export async function deleteService(runner: Runner, stateDir: string, frontend: string, opts: ApplyOptions = {}): Promise<ApplyResult & {frontends: string[]}> {
  const explicit = frontend.includes('/')
  const f = parseFrontend(frontend)
  const frontends = explicit ? [frontendKey(f)] : PROTOCOLS.map((p: Protocol) => frontendKey({...f, proto: p}))
  // Every candidate goes: the change skips those that are not there (warning only when none is).
  const r = await changeServices(stateDir, {kind: 'delete', frontends}, opts)
  const present = r.diff.removed.map((c) => c.frontend)
  return {frontends: present, ...r}
}

/** Make the node's table exactly the list in `file` (or `text`, when the file is `-`). */
export async function applyServices(
  runner: Runner,
  stateDir: string,
  input: {file: string; text?: string},
  opts: ApplyOptions = {},
): Promise<ApplyResult & {source: string}> {
  let text = input.text
  if (text === undefined) {
    text = await fs.readFile(input.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new PnError('PN_SERVICE_INVALID', `read services ${input.file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, {hint: 'pass a JSON file, or - to read it from stdin'})
    })
  }
  const services = parseServiceList(text, input.file === '-' ? 'from stdin' : input.file)
  return {source: input.file, ...(await changeServices(stateDir, {kind: 'replace', services}, opts))}
}

export interface ServiceStats {
  packets: number
  bytes: number
  connections: number
  replies: number
}

export interface ServiceEntry {
  frontend: string
  /** NodePort / external IPs of this service (the apply file's fields), when it has any. */
  type?: 'NodePort'
  nodePort?: number
  externalIPs?: string[]
  externalTrafficPolicy?: 'Local'
  /** A frontend a service's NodePort or external IP opened on this node: that service's frontend (apply skips such entries). */
  via?: string
  vip: string
  port: number
  proto: Protocol
  revNatIndex: number
  backends: {address: string; backendId: number}[]
  stats: ServiceStats
}

export interface ServiceListResult {
  services: ServiceEntry[]
  /** False when the maps were re-created since the table was written (run apply again). */
  inSync: boolean
}

/** The node's services with the datapath's per-service counters (one map dump). */
export async function listServices(runner: Runner, stateDir: string): Promise<ServiceListResult> {
  const node = await requireNodeContext(stateDir)
  const table = await readServiceTable(stateDir)
  const identity = await lbMapsIdentity(node.bpffsRoot)
  const stats = new Map<number, ServiceStats>()
  if (identity) {
    // Loaded here only: add/del/apply do not need bpftool's map decoding.
    const {dumpMapEntries} = await import('../datapath/bpf/map-io.js')
    for (const e of await dumpMapEntries(runner, node.bpffsRoot, 'pn_lb4_stats')) stats.set(Number(e.key.revNatIndex), e.value as unknown as ServiceStats)
  }
  const ext = await readExternalIndex(stateDir)
  const via = new Map<string, string>()
  for (const [k, v] of Object.entries(ext)) for (const d of v.derived) via.set(d, k)
  const external = (key: string) => {
    const e = ext[key]
    if (via.has(key)) return {via: via.get(key)}
    if (!e) return {}
    return {
      ...(e.nodePort !== undefined ? {type: 'NodePort' as const, nodePort: e.nodePort} : {}),
      ...(e.externalIPs ? {externalIPs: e.externalIPs} : {}),
      ...(e.externalTrafficPolicy ? {externalTrafficPolicy: e.externalTrafficPolicy} : {}),
    }
  }
  const zero = {packets: 0, bytes: 0, connections: 0, replies: 0}
  const services = [...table.services.values()]
    .map((s) => {
      const names = backendsOf(table, s)
      return {
        frontend: serviceKey(s),
        ...external(serviceKey(s)),
        vip: ipStr(s.vip),
        port: s.port,
        proto: protoOf(s.proto),
        revNatIndex: s.revNat,
        backends: names.map((address, i) => ({address, backendId: s.ids[i]})),
        stats: stats.get(s.revNat) ?? zero,
      }
    })
    .sort((a, b) => a.frontend.localeCompare(b.frontend, 'en', {numeric: true}))
  return {services, inSync: table.services.size === 0 || table.maps?.identity === identity}
}
