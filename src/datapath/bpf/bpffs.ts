/**
 * The node's bpffs root and what pn keeps in it: `progs/` (the five pinned programs), `maps/`
 * (the pn_ maps) and `qdiscs/` (empty marker folders `<dev>@<ifindex>` for clsact qdiscs pn
 * created, so unload removes exactly those). Markers live in the bpffs rather than a state file
 * because they share its lifetime: a fresh bpffs means no pn attachments survived either.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'

export const BPF_FS_MAGIC = 0xcafe4a11

/** Pinned program names (the C function names) and how pn shows them. */
export const PROGRAMS = {
  from_container: 'from-container',
  from_netdev: 'from-netdev',
  to_netdev: 'to-netdev',
  to_host: 'to-host',
  from_host: 'from-host',
} as const
export type ProgramName = keyof typeof PROGRAMS

export const MAP_NAMES = ['pn_endpoints', 'pn_lxc', 'pn_ipcache', 'pn_metrics'] as const
export type MapName = (typeof MAP_NAMES)[number]

export const progsDir = (root: string) => path.join(root, 'progs')
export const mapsDir = (root: string) => path.join(root, 'maps')
export const qdiscMarkersDir = (root: string) => path.join(root, 'qdiscs')
export const programPath = (root: string, prog: ProgramName) => path.join(progsDir(root), prog)
export const mapPath = (root: string, name: string) => path.join(mapsDir(root), name)

export async function pathExists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false)
}

async function isBpffs(p: string): Promise<boolean> {
  try {
    return (await fs.statfs(p)).type === BPF_FS_MAGIC
  } catch {
    return false
  }
}

/**
 * Make sure `root` is a folder on a bpffs. When the nearest existing ancestor is not on one, a
 * bpffs is mounted on root's parent (e.g. /run/pn/bpffs for /run/pn/bpffs/node1). /sys/fs/bpf
 * is no use for lab nodes: `ip netns exec` remounts /sys and hides it.
 */
export async function ensureBpffs(runner: Runner, root: string): Promise<{mounted?: string; warnings: string[]}> {
  const warnings: string[] = []
  let probe = root
  while (!(await pathExists(probe)) && path.dirname(probe) !== probe) probe = path.dirname(probe)
  if (await isBpffs(probe)) {
    await fs.mkdir(root, {recursive: true})
    return {warnings}
  }
  const mountpoint = path.dirname(root)
  await fs.mkdir(mountpoint, {recursive: true})
  await runner.run('mount', ['-t', 'bpf', 'bpffs', mountpoint])
  if (!(await isBpffs(mountpoint))) {
    throw new PnError('PN_BPF_LOAD_FAILED', `mount bpffs ${mountpoint}: not a bpffs after mounting`, {
      hint: `mount it yourself: mount -t bpf bpffs ${mountpoint}`,
    })
  }
  const [self, init] = await Promise.all([fs.readlink('/proc/self/ns/mnt').catch(() => ''), fs.readlink('/proc/1/ns/mnt').catch(() => '')])
  if (self && init && self !== init) {
    warnings.push(`mounted a bpffs on ${mountpoint} inside a private mount namespace (ip netns exec?); it vanishes with this process — mount it from the root mount namespace instead`)
  }
  await fs.mkdir(root, {recursive: true})
  return {mounted: mountpoint, warnings}
}

/** Marker for "pn created the clsact qdisc on this device". */
export function qdiscMarker(root: string, device: string, ifindex: number): string {
  return path.join(qdiscMarkersDir(root), `${device}@${ifindex}`)
}
