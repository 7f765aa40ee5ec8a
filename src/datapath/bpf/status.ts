/**
 * What is attached where: every tc hook running one of pn's programs in this netns (from
 * `bpftool -j net show`, one process for all devices) joined with program ids/tags and pins
 * (`bpftool -j -f prog show`).
 */
import type {Runner} from '../../exec/runner.js'
import type {DatapathNode} from '../devices.js'
import {PROGRAMS, programPath, type ProgramName} from './bpffs.js'
import {programsLoaded} from './load.js'

export interface AttachmentStatus {
  device: string
  ifindex: number
  direction: 'ingress' | 'egress'
  /** pn's name for the program (from-container …). */
  program: string
  /** What `tc filter show` prints for it (`from_container:[*fsobj]`). */
  tcName: string
  id: number
  tag?: string
  /** False when the attached program is not the one pinned now (left from an earlier load). */
  current: boolean
}

export interface ProgramStatus {
  program: string
  pinned: string
  id?: number
  tag?: string
  runCount?: number
}

export interface BpfStatus {
  bpffsRoot: string
  loaded: boolean
  programs: ProgramStatus[]
  attachments: AttachmentStatus[]
}

interface NetShow {
  tc?: {devname: string; ifindex: number; kind: string; name?: string; id: number}[]
}

interface ProgShow {
  id: number
  name?: string
  tag?: string
  run_cnt?: number
  pinned?: string[]
}

export async function bpfStatus(runner: Runner, node: Pick<DatapathNode, 'bpffsRoot'>): Promise<BpfStatus> {
  const root = node.bpffsRoot
  const [net, progs] = await Promise.all([
    runner.run('bpftool', ['-j', 'net', 'show'], {readOnly: true}),
    runner.run('bpftool', ['-j', '-f', 'prog', 'show'], {readOnly: true}),
  ])
  const netJson = (JSON.parse(net.stdout || '[]') as NetShow[])[0] ?? {}
  const progList = JSON.parse(progs.stdout || '[]') as ProgShow[]
  const byId = new Map(progList.map((p) => [p.id, p]))
  const programs: ProgramStatus[] = (Object.keys(PROGRAMS) as ProgramName[]).map((p) => {
    const pinned = programPath(root, p)
    const info = progList.find((x) => x.pinned?.includes(pinned))
    return {program: PROGRAMS[p], pinned, ...(info ? {id: info.id, tag: info.tag, ...(info.run_cnt === undefined ? {} : {runCount: info.run_cnt})} : {})}
  })
  const pinnedIds = new Set(programs.flatMap((p) => (p.id === undefined ? [] : [p.id])))
  const attachments: AttachmentStatus[] = []
  for (const t of netJson.tc ?? []) {
    const progName = byId.get(t.id)?.name ?? (t.name ?? '').replace(/:\[.*$/, '')
    if (!(progName in PROGRAMS)) continue
    attachments.push({
      device: t.devname,
      ifindex: t.ifindex,
      direction: t.kind.endsWith('egress') ? 'egress' : 'ingress',
      program: PROGRAMS[progName as ProgramName],
      tcName: t.name ?? progName,
      id: t.id,
      ...(byId.get(t.id)?.tag ? {tag: byId.get(t.id)!.tag} : {}),
      current: pinnedIds.has(t.id),
    })
  }
  attachments.sort((a, b) => a.device.localeCompare(b.device) || a.direction.localeCompare(b.direction))
  return {bpffsRoot: root, loaded: await programsLoaded(root), programs, attachments}
}
