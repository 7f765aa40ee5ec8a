/**
 * The node's bpffs root and what pn keeps in it: `progs/` (the five pinned programs), `maps/`
 * (the pn_ maps) and `qdiscs/` (empty marker folders `<dev>@<ifindex>` for clsact qdiscs pn
 * created, so unload removes exactly those). Markers live in the bpffs rather than a state file
 * because they share its lifetime: a fresh bpffs means no pn attachments survived either.
 * Mounting the bpffs itself is src/datapath/bpffs.ts's job (shared with `pn node init`).
 */
import {fsp as fs} from '../../exec/fs.js'
import path from 'node:path'
export {ensureBpffs, isBpffs} from '../bpffs.js'

/** Pinned program names (the C function names) and how pn shows them. */
export const PROGRAMS = {
  from_container: 'from-container',
  from_netdev: 'from-netdev',
  to_netdev: 'to-netdev',
  to_host: 'to-host',
  from_host: 'from-host',
  from_overlay: 'from-overlay',
} as const
export type ProgramName = keyof typeof PROGRAMS

/** Folder name of the compiled-object cache inside a node's state dir. */
export const BPF_CACHE_DIR = 'bpf'

export const progsDir = (root: string) => path.join(root, 'progs')
export const mapsDir = (root: string) => path.join(root, 'maps')
export const qdiscMarkersDir = (root: string) => path.join(root, 'qdiscs')
export const programPath = (root: string, prog: ProgramName) => path.join(progsDir(root), prog)
export const mapPath = (root: string, name: string) => path.join(mapsDir(root), name)

export async function pathExists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false)
}

/** Marker for "pn created the clsact qdisc on this device". */
export function qdiscMarker(root: string, device: string, ifindex: number): string {
  return path.join(qdiscMarkersDir(root), `${device}@${ifindex}`)
}
