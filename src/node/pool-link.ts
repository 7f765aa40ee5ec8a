/** Seam to the cluster pool (src/ipam/pool.ts): where the node's pod CIDR comes from without --pod-cidr. */
import * as pool from '../ipam/pool.js'

/** `--pool`, else PN_POOL, else `<state-dir>/cluster-pool.json`. */
export function resolvePoolPath(stateDir: string, flag?: string): string {
  return pool.poolPath(stateDir, flag || process.env.PN_POOL)
}

export async function allocatePodCidrs(file: string, node: string): Promise<{changed: boolean; cidrs: string[]}> {
  const r = await pool.allocatePodCidrs(file, node)
  return {changed: r.changed, cidrs: r.cidrs}
}

export async function releasePodCidrs(file: string, node: string): Promise<void> {
  await pool.releasePodCidrs(file, node)
}
