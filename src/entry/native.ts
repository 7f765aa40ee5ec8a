/**
 * The native helpers of this build (dist/src/entry → dist/native), compiled from native/*.c by
 * `npm run build`. Kept apart from the entries so pn-cni can name them without loading the agent.
 */
import {existsSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const NATIVE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native')

/** The kernel worker: kernel ops over rtnetlink (src/kernel/native.ts, src/exec/netlink-worker.ts). */
export const NETLINK_BINARY = path.join(NATIVE_DIR, 'pn-netlink')

/** The helper's path when it was built, else undefined (callers then spawn the tools as before). */
export function builtHelper(binary: string): string | undefined {
  return existsSync(binary) ? binary : undefined
}
