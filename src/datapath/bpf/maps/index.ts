/**
 * Every pinned map pn's datapath has, one descriptor each. The bpffs name list, map reads and
 * writes, `pn bpf map dump`, creating maps missing from a running node, and the BTF layout
 * test all read from this list: adding a map is a descriptor module here plus its C header.
 */
import {ct4Map} from './ct4.js'
import {endpointsMap} from './endpoints.js'
import {ipcacheMap} from './ipcache.js'
import type {MapDef, StructLayout} from './layout.js'
import {lb4BackendsMap} from './lb4-backends.js'
import {lb4GateMap, lb4ServicesMap} from './lb4-services.js'
import {lb4StatsMap} from './lb4-stats.js'
import {lxcMap} from './lxc.js'
import {metricsMap} from './metrics.js'
import {nonMasqMap, snat4Map, snat6Map} from './nat.js'
import {nodeConfigMap} from './node-config.js'
import {polct4Map, policyEpMap, policyMap} from './policy.js'
import {eventsMap, traceConfigMap} from './trace.js'

export const MAPS: readonly MapDef[] = [
  endpointsMap, lxcMap, ipcacheMap, metricsMap,
  lb4ServicesMap, lb4BackendsMap, lb4StatsMap, ct4Map,
  traceConfigMap, eventsMap, nodeConfigMap, lb4GateMap,
  policyMap, policyEpMap, polct4Map,
  snat4Map, nonMasqMap, snat6Map,
]

export const MAP_NAMES: readonly string[] = MAPS.map((m) => m.name)

export function mapDef(name: string): MapDef | undefined {
  return MAPS.find((m) => m.name === name)
}

/** Every key and value struct of every map, by C struct name (what the BTF test checks). */
export function structLayouts(): Record<string, StructLayout> {
  const out: Record<string, StructLayout> = {}
  for (const m of MAPS) for (const s of [m.key, m.value, m.record]) if (s && !s.scalar) out[s.name] = s
  return out
}

export * from './layout.js'
export * from './endpoints.js'
export * from './lxc.js'
export * from './ipcache.js'
export * from './metrics.js'
export * from './trace.js'
export * from './lb4-services.js'
export * from './lb4-backends.js'
export * from './lb4-stats.js'
export * from './ct4.js'
export * from './node-config.js'
export * from './policy.js'
export * from './nat.js'
