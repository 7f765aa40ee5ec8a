/**
 * The node's bpffs. `ip netns exec` mounts a fresh /sys, hiding /sys/fs/bpf, so pn keeps its
 * pins on a bpffs mounted at /run/pn/bpffs (visible inside `ip netns exec` when mounted before
 * it runs) with one folder per node.
 */
import {fsp as fs} from '../exec/fs.js'
import path from 'node:path'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'

export const BPFFS_MOUNT = '/run/pn/bpffs'
export const BPF_FS_MAGIC = 0xcafe4a11

export function defaultBpffsRoot(nodeName: string): string {
  return path.join(BPFFS_MOUNT, nodeName)
}

export async function isBpffs(dir: string): Promise<boolean> {
  try {
    return (await fs.statfs(dir)).type === BPF_FS_MAGIC
  } catch {
    return false
  }
}

/** True when this process runs in another mount namespace than its parent (e.g. under `ip netns exec`). */
export async function inPrivateMountNs(): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([fs.readlink('/proc/self/ns/mnt'), fs.readlink(`/proc/${process.ppid}/ns/mnt`)])
    return self !== parent
  } catch {
    return false
  }
}

export interface BpffsResult {
  mounted: boolean
  created: boolean
  warnings: string[]
}

/** Make sure `root` sits on a bpffs (mounting one at /run/pn/bpffs if needed) and exists. */
export async function ensureBpffs(runner: Runner, root: string): Promise<BpffsResult> {
  const warnings: string[] = []
  let mounted = false
  const underDefault = root === BPFFS_MOUNT || root.startsWith(BPFFS_MOUNT + '/')
  if (underDefault && !(await isBpffs(BPFFS_MOUNT))) {
    await runner.makeDir(BPFFS_MOUNT)
    await runner.run('mount', ['-t', 'bpf', 'bpf', BPFFS_MOUNT])
    mounted = true
    if (await inPrivateMountNs()) {
      warnings.push(
        `mounted a bpffs at ${BPFFS_MOUNT} inside a private mount namespace (ip netns exec?): it vanishes when pn exits; ` +
          `mount it once outside first: mkdir -p ${BPFFS_MOUNT} && mount -t bpf bpf ${BPFFS_MOUNT}`,
      )
    }
  }
  if (!underDefault && !(await isBpffs(path.dirname(root))) && !(await isBpffs(root))) {
    throw new PnError('PN_INVALID_ARGUMENT', `use bpffs root ${root}: not on a bpf filesystem`, {
      hint: `mount one first (mount -t bpf bpf DIR) or use the default under ${BPFFS_MOUNT}`,
    })
  }
  const created = await runner.makeDir(root)
  return {mounted, created, warnings}
}

/** Remove the node's pins (programs and maps) and its folder; true if anything was there. */
export async function removeBpffsRoot(runner: Runner, root: string): Promise<boolean> {
  if (!(await isBpffs(root))) return false
  await runner.remove(root)
  return true
}
