/**
 * Endpoint records: one JSON file per (container id, ifname) under `<state-dir>/endpoints/`,
 * tying the container to its netns, IPs, veth names/MACs/ifindexes and a small endpoint id
 * (the key later BPF maps use). Records are written atomically (temp + rename), so they need
 * no lock; ids are claimed by exclusive file creation (O_EXCL), so neither does allocation.
 */
import {fsp as fs} from '../exec/fs.js'
import path from 'node:path'
import {PnError} from '../errors.js'
import {createFileExclusive, ensureDir, readJsonFile, removeFileDurable, STATE_FILE_MODE, writeFileAtomic, type JsonFileSpec, type SyncGroup} from '../state/files.js'
import {validateContainerId, validateIfname} from '../datapath/validate.js'
import type {VethResult} from '../datapath/veth.js'
import {sha256Hex} from '../state/digest.js'

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
  /** The pod's labels as the runtime passed them on ADD (or `pn endpoint label` set), sorted by key. */
  labels?: Record<string, string>
  bpfAttached?: boolean
  createdAt: string
}

export const MAX_ENDPOINT_ID = 65535

/** Pod metadata a runtime may pass (CNI_ARGS K8S_POD_*), stored on the record. */
export interface PodMeta {
  podName?: string
  podNamespace?: string
  podUid?: string
  labels?: Record<string, string>
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
    ...(fields.labels && Object.keys(fields.labels).length > 0 ? {labels: fields.labels} : {}),
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

/**
 * The CNI spec sets no length limit on a container id, but a file name has 255 bytes (NAME_MAX)
 * and an atomic write adds a temp suffix to it. An attachment key of up to 200 bytes names its
 * files as it is (as before: existing state still reads; runtimes use 64-hex ids); a longer one
 * becomes `~<sha256 of the key>`, the rule IPAM's owner records follow. The record and `.ids/<id>`
 * keep the whole key inside.
 */
export const MAX_PLAIN_KEY_BYTES = 200

/** File name for an attachment key (`<containerId>:<ifname>`), hashed when it would be too long. */
export function attachmentFileName(key: string): string {
  return Buffer.byteLength(key) <= MAX_PLAIN_KEY_BYTES ? key : `~${sha256Hex(key)}`
}

export function endpointFile(stateDir: string, containerId: string, ifname: string): string {
  validateContainerId(containerId)
  validateIfname(ifname)
  return path.join(endpointsDir(stateDir), `${attachmentFileName(endpointKey(containerId, ifname))}.json`)
}

/**
 * Id reservations live beside the records: `.ids/<id>` holds the owner (claimed with O_EXCL,
 * so two ADDs never get one id), `.owners/<owner>` the id (so a retried ADD gets its id again).
 * An id is taken from allocation until its record is deleted, or GC finds its owner gone.
 */
function idsDir(stateDir: string): string {
  return path.join(endpointsDir(stateDir), '.ids')
}

function ownersDir(stateDir: string): string {
  return path.join(endpointsDir(stateDir), '.owners')
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

/** Write the record durably (its directory's fsync with `group`, when the flow flushes it). */
export async function saveEndpoint(stateDir: string, rec: EndpointRecord, group?: SyncGroup): Promise<void> {
  const file = endpointFile(stateDir, rec.containerId, rec.ifname)
  if (rec.id !== endpointKey(rec.containerId, rec.ifname)) {
    throw new PnError('PN_INVALID_ARGUMENT', `save endpoint ${rec.id}: id must be <containerId>:<ifname>`)
  }
  await writeFileAtomic(file, JSON.stringify(rec, null, 2) + '\n', STATE_FILE_MODE, group)
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

/**
 * The record holding endpoint id `endpointId` (the number `pn monitor --endpoint` and `pn status`
 * print): `.ids/<id>` names its owner, so no scan; a record whose reservation is missing is
 * still found by reading the records.
 */
export async function requireEndpointById(stateDir: string, endpointId: number): Promise<EndpointRecord> {
  if (!Number.isInteger(endpointId) || endpointId < 1 || endpointId > MAX_ENDPOINT_ID) {
    throw new PnError('PN_INVALID_ARGUMENT', `read endpoint ${endpointId}: an endpoint id is an integer 1-${MAX_ENDPOINT_ID}`, {
      hint: 'see `pn endpoint list`, or name it by `--container-id` (and `--ifname`)',
    })
  }
  const owner = (await fs.readFile(path.join(idsDir(stateDir), String(endpointId)), 'utf8').catch(() => '')).trim()
  const i = owner.lastIndexOf(':')
  if (i > 0) {
    const rec = await getEndpoint(stateDir, owner.slice(0, i), owner.slice(i + 1)).catch(() => undefined)
    if (rec?.endpointId === endpointId) return rec
  }
  const rec = (await listEndpoints(stateDir)).find((e) => e.endpointId === endpointId)
  if (!rec) {
    throw new PnError('PN_ENDPOINT_NOT_FOUND', `read endpoint ${endpointId}: no endpoint has this id`, {
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
export async function deleteEndpoint(stateDir: string, containerId: string, ifname: string, group?: SyncGroup): Promise<{deleted: boolean; record?: EndpointRecord}> {
  const file = endpointFile(stateDir, containerId, ifname)
  const rec = await readJsonFile(file, spec).catch(() => undefined)
  const deleted = await removeFileDurable(file, group)
  await releaseEndpointId(stateDir, endpointKey(containerId, ifname), undefined, group)
  return {deleted, ...(rec ? {record: rec} : {})}
}

/**
 * The lowest free endpoint id, reserved for `owner` until its record is deleted (a second call
 * for the same owner returns the same id, so a retried ADD does not burn ids). Concurrent
 * callers race on creating `.ids/<id>` exclusively; the loser moves on to the next id.
 */
export async function allocateEndpointId(stateDir: string, owner: string, group?: SyncGroup): Promise<number> {
  const ownerFile = path.join(ownersDir(stateDir), attachmentFileName(owner))
  const mine = Number((await fs.readFile(ownerFile, 'utf8').catch(() => '')).trim())
  if (Number.isInteger(mine) && mine > 0) return mine
  await ensureDir(idsDir(stateDir))
  await ensureDir(ownersDir(stateDir))
  const taken = new Set((await fs.readdir(idsDir(stateDir))).map(Number))
  for (let id = 1; id <= MAX_ENDPOINT_ID; id++) {
    if (taken.has(id)) continue
    try {
      await createFileExclusive(path.join(idsDir(stateDir), String(id)), owner + '\n', STATE_FILE_MODE, group)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw err
    }
    try {
      await writeFileAtomic(ownerFile, `${id}\n`, STATE_FILE_MODE, group)
    } catch (err) {
      // The id must not stay taken by a reservation nobody will release.
      await fs.rm(path.join(idsDir(stateDir), String(id)), {force: true})
      throw err
    }
    return id
  }
  throw new PnError('PN_ENDPOINT_IDS_EXHAUSTED', `allocate endpoint id: all ${MAX_ENDPOINT_ID} endpoint ids are in use`, {
    hint: 'delete stale endpoints (`pn endpoint list`, `pn endpoint delete --purge`), or let `pn cni gc` reclaim ids of killed ADDs',
  })
}

/** Give back the id `owner` holds (no-op when it holds none); `knownId` also frees an `.ids` entry whose owner file is missing. */
export async function releaseEndpointId(stateDir: string, owner: string, knownId?: number, group?: SyncGroup): Promise<boolean> {
  const ownerFile = path.join(ownersDir(stateDir), attachmentFileName(owner))
  const recorded = Number((await fs.readFile(ownerFile, 'utf8').catch(() => '')).trim())
  const id = Number.isInteger(recorded) && recorded > 0 ? recorded : knownId ?? 0
  if (Number.isInteger(id) && id > 0) {
    const idFile = path.join(idsDir(stateDir), String(id))
    // Only our own reservation: the id may have been reclaimed and re-issued meanwhile.
    if ((await fs.readFile(idFile, 'utf8').catch(() => '')).trim() === owner) await removeFileDurable(idFile, group)
  }
  await removeFileDurable(ownerFile, group)
  return Number.isInteger(id) && id > 0
}

/** Owners holding an endpoint id (GC compares them with the records and the runtime's list). */
export async function endpointIdOwners(stateDir: string): Promise<{id: number; owner: string}[]> {
  const names = await fs.readdir(idsDir(stateDir)).catch(() => [] as string[])
  const out: {id: number; owner: string}[] = []
  for (const n of names) {
    const id = Number(n)
    if (!Number.isInteger(id)) continue
    out.push({id, owner: (await fs.readFile(path.join(idsDir(stateDir), n), 'utf8').catch(() => '')).trim()})
  }
  return out.sort((a, b) => a.id - b.id)
}
