/**
 * Seam to the cluster pool (src/ipam/pool.ts, the IPAM work). Loaded lazily so node init with
 * an explicit --pod-cidr never needs it (and the lab works while the pool is being built).
 */
import path from 'node:path'
import {PnError} from '../errors.js'

interface PoolModule {
  allocatePodCidrs(file: string, node: string): Promise<{changed: boolean; node: string; cidrs: string[]}>
  releasePodCidrs(file: string, node: string): Promise<unknown>
  poolPath?(stateDir: string, flag?: string): string
}

async function loadPool(): Promise<PoolModule> {
  const spec = '../ipam/pool.js'
  try {
    return (await import(spec)) as PoolModule
  } catch (err) {
    throw new PnError('PN_POOL_NOT_FOUND', `load cluster pool support: ${(err as Error).message}`, {
      hint: 'pass --pod-cidr CIDR instead of a pool',
    })
  }
}

export function resolvePoolPath(stateDir: string, flag?: string): string {
  return path.resolve(flag || process.env.PN_POOL || path.join(stateDir, 'cluster-pool.json'))
}

export async function allocatePodCidrs(file: string, node: string): Promise<{changed: boolean; cidrs: string[]}> {
  const r = await (await loadPool()).allocatePodCidrs(file, node)
  return {changed: r.changed, cidrs: r.cidrs}
}

export async function releasePodCidrs(file: string, node: string): Promise<void> {
  await (await loadPool()).releasePodCidrs(file, node)
}
