/**
 * Endpoint records: one JSON file per (container id, ifname) under `<state-dir>/endpoints/`,
 * tying the container to its netns, IPs, veth names/MACs/ifindexes and a small endpoint id
 * (the key later BPF maps use). Written atomically; ids handed out under a lock.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PnError} from '../errors.js'
import {readJsonFile, withLock, writeFileAtomic, type JsonFileSpec} from '../state/files.js'
import {validateContainerId, validateIfname} from '../datapath/validate.js'
import type {VethResult} from '../datapath/veth.js'

export interface EndpointRecord {
  /** `<containerId>:<ifname>` (Cilium's CNI attachment id). */
  id: string
  containerId: string
  ifname: string
  netns: string
  ips: string[]
  routerIps: string[]
  hostIfname: string
  hostMac: string
  hostIfindex: number
  podIfname: string
  podMac: string
  podIfindex: number
  mtu: number
  /** Small unique integer 1..65535 (Cilium's endpoint id / lxc_id). */
  endpointId: number
  podName?: string
  podNamespace?: string
  podUid?: string
  bpfAttached?: boolean
  createdAt: string
}

export const MAX_ENDPOINT_ID = 65535

/** Pod metadata a runtime may pass (CNI_ARGS K8S_POD_*), stored on the record. */
export interface PodMeta {
  podName?: string
  podNamespace?: string
  podUid?: string
}

/** The record for a freshly made veth: one place that maps connector output to endpoint fields. */
export function endpointRecordFor(
  veth: VethResult,
  fields: {containerId: string; ifname: string; endpointId: number; routerIps: string[]; bpfAttached?: boolean} & PodMeta,
): EndpointRecord {
  return {
    id: endpointKey(fields.containerId, fields.ifname),
    containerId: fields.containerId,
    ifname: fields.ifname,
    netns: veth.netns,
    ips: veth.addresses.map((a) => a.split('/')[0]),
    routerIps: veth.addresses.length > 0 ? fields.routerIps : [],
    hostIfname: veth.hostIfname,
    hostMac: veth.hostMac,
    hostIfindex: veth.hostIfindex,
    podIfname: veth.podIfname,
    podMac: veth.podMac,
    podIfindex: veth.podIfindex,
    mtu: veth.mtu,
    endpointId: fields.endpointId,
    ...(fields.podName ? {podName: fields.podName} : {}),
    ...(fields.podNamespace ? {podNamespace: fields.podNamespace} : {}),
    ...(fields.podUid ? {podUid: fields.podUid} : {}),
    ...(fields.bpfAttached === undefined ? {} : {bpfAttached: fields.bpfAttached}),
    createdAt: new Date().toISOString(),
  }
}

export function endpointsDir(stateDir: string): string {
  return path.join(stateDir, 'endpoints')
}

export function endpointKey(containerId: string, ifname: string): string {
  return `${containerId}:${ifname}`
}

export function endpointFile(stateDir: string, containerId: string, ifname: string): string {
  validateContainerId(containerId)
  validateIfname(ifname)
  return path.join(endpointsDir(stateDir), `${endpointKey(containerId, ifname)}.json`)
}

/** Id reservations live beside the records, so an id is taken from allocation until deletion. */
function idsDir(stateDir: string): string {
  return path.join(endpointsDir(stateDir), '.ids')
}

function lockFile(stateDir: string): string {
  return path.join(endpointsDir(stateDir), '.endpoints')
}

const spec: JsonFileSpec<EndpointRecord> = {
  what: 'endpoint record',
  corruptCode: 'PN_STATE_CORRUPT',
  validate: (v: unknown): v is EndpointRecord => {
    const r = v as EndpointRecord
    return !!r && typeof r.id === 'string' && typeof r.containerId === 'string' && typeof r.ifname === 'string' &&
      typeof r.endpointId === 'number' && Array.isArray(r.ips)
  },
  corruptHint: 'delete the file (or run `pn endpoint delete`) and recreate the endpoint',
}

export async function saveEndpoint(stateDir: string, rec: EndpointRecord): Promise<void> {
  const file = endpointFile(stateDir, rec.containerId, rec.ifname)
  if (rec.id !== endpointKey(rec.containerId, rec.ifname)) {
    throw new PnError('PN_INVALID_ARGUMENT', `save endpoint ${rec.id}: id must be <containerId>:<ifname>`)
  }
  await withLock(lockFile(stateDir), async () => {
    await writeFileAtomic(file, JSON.stringify(rec, null, 2) + '\n')
    await reserveId(stateDir, rec.endpointId, rec.id)
  })
}

export async function getEndpoint(stateDir: string, containerId: string, ifname: string): Promise<EndpointRecord | undefined> {
  return readJsonFile(endpointFile(stateDir, containerId, ifname), spec)
}

/** The record, or PN_ENDPOINT_NOT_FOUND with what to run. */
export async function requireEndpoint(stateDir: string, containerId: string, ifname: string): Promise<EndpointRecord> {
  const rec = await getEndpoint(stateDir, containerId, ifname)
  if (!rec) {
    throw new PnError('PN_ENDPOINT_NOT_FOUND', `read endpoint ${endpointKey(containerId, ifname)}: no such endpoint`, {
      hint: 'see `pn endpoint list`',
    })
  }
  return rec
}

export async function listEndpoints(stateDir: string): Promise<EndpointRecord[]> {
  let names: string[]
  try {
    names = await fs.readdir(endpointsDir(stateDir))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: EndpointRecord[] = []
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
    const rec = await readJsonFile(path.join(endpointsDir(stateDir), name), spec)
    if (rec) out.push(rec)
  }
  return out.sort((a, b) => a.endpointId - b.endpointId)
}

/** Remove the record and its id reservation; `{deleted:false}` when there was none. */
export async function deleteEndpoint(stateDir: string, containerId: string, ifname: string): Promise<{deleted: boolean; record?: EndpointRecord}> {
  const file = endpointFile(stateDir, containerId, ifname)
  return withLock(lockFile(stateDir), async () => {
    const rec = await readJsonFile(file, spec).catch(() => undefined)
    let deleted = false
    try {
      await fs.unlink(file)
      deleted = true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    await releaseIdsOf(stateDir, endpointKey(containerId, ifname))
    return {deleted, ...(rec ? {record: rec} : {})}
  })
}

/**
 * The lowest free endpoint id, reserved for `owner` until its record is deleted (a second call
 * for the same owner returns the same id, so a retried ADD does not burn ids).
 */
export async function allocateEndpointId(stateDir: string, owner?: string): Promise<number> {
  return withLock(lockFile(stateDir), async () => {
    const reserved = await readIds(stateDir)
    if (owner) {
      for (const [id, o] of reserved) if (o === owner) return id
    }
    for (const rec of await listEndpoints(stateDir)) reserved.set(rec.endpointId, rec.id)
    for (let id = 1; id <= MAX_ENDPOINT_ID; id++) {
      if (!reserved.has(id)) {
        await reserveId(stateDir, id, owner ?? '')
        return id
      }
    }
    throw new PnError('PN_IPAM_EXHAUSTED', 'allocate endpoint id: all 65535 endpoint ids are in use', {
      hint: 'delete stale endpoints (`pn endpoint list`, `pn endpoint delete --purge`)',
    })
  })
}

async function readIds(stateDir: string): Promise<Map<number, string>> {
  const out = new Map<number, string>()
  let names: string[]
  try {
    names = await fs.readdir(idsDir(stateDir))
  } catch {
    return out
  }
  for (const n of names) {
    const id = Number(n)
    if (!Number.isInteger(id)) continue
    out.set(id, (await fs.readFile(path.join(idsDir(stateDir), n), 'utf8').catch(() => '')).trim())
  }
  return out
}

async function reserveId(stateDir: string, id: number, owner: string): Promise<void> {
  await writeFileAtomic(path.join(idsDir(stateDir), String(id)), owner + '\n')
}

async function releaseIdsOf(stateDir: string, owner: string): Promise<void> {
  for (const [id, o] of await readIds(stateDir)) {
    if (o === owner) await fs.rm(path.join(idsDir(stateDir), String(id)), {force: true})
  }
}
