/**
 * The on-disk form of host-scope IPAM, made so that one call costs the same whether the node
 * holds one address or 65,000: `<state-dir>/ipam/`
 *
 *   meta.json            {"version": 2, "ranges": [{"cidr", "routerIp"}]}         (tiny, rarely written)
 *   bitmap.<i>           range i's bitmap: ceil(capacity/32) little-endian 32-bit words, fixed size,
 *                        changed in place (only the words an operation touched are written)
 *   owners/<key>.json    one record per owner: {"owner", "allocations": [StoredAllocation…]}
 *   ips/<ip>             symlink → <key>: who holds an address (release/confirm by IP)
 *   pending/<key>        symlink → <key>: owners with a pending allocation (the expiry sweep reads only these)
 *   journal.json         {"keys", "ips"} of the mutation in progress; present only while one runs
 *   boot                 the boot id the index was last checked against the records under
 *
 * An operation loads the bitmaps, the records it names (owner, IPs), the router's and the pending
 * ones, runs the pure HostAllocator on that partial view, and writes back only what changed. All of
 * it happens under the old lock (`<state-dir>/ipam.json.lock`).
 *
 * The calls are synchronous (each is a few microseconds on a small file): under load a hop through
 * libuv's thread pool per call cost more than the work, and it would stretch the time the lock is held.
 *
 * Crash safety: the owner record is the truth; the bitmaps, `ips/` and `pending/` are an index
 * of the records. Before touching anything a mutation writes the journal (temp + rename) naming
 * every key and IP it may touch; it then writes the records, the symlinks, the bitmap words, and
 * removes the journal. If the process dies anywhere in between, the next locked call finds the
 * journal and makes the bitmap, `ips/` and `pending/` agree with the records for exactly those
 * keys and IPs (an IP claimed by a record gets its bit and link; one that no record claims is
 * freed), so nothing is leaked or handed out twice. `repairIpamDir` does the same for the whole
 * directory (`pn ipam gc`), from the records alone.
 *
 * Power loss: only the records are fsync'd on the way (temp files fsync'd together, renamed, the
 * `owners/` directory fsync'd: two journal commits a change, whatever it touched), before the call
 * returns. The journal and the index are not: the page cache keeps them for any process crash,
 * and a reboot (a new kernel boot id, compared with `boot`) makes the first call rebuild the whole
 * index from the records, fsync it, and only then record the new boot id.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fsp} from '../exec/fs.js'
import {formatIp, tryParseIp} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import {randomHex, sha256Hex} from '../state/digest.js'
import {STATE_DIR_MODE, STATE_FILE_MODE, syncDir, syncPathSync, syncPaths} from '../state/files.js'
import {Bitmap} from './bitmap.js'
import {IpRange, ROUTER_OWNER, type IpamRange, type IpamState, type StoredAllocation} from './host-allocator.js'

export const IPAM_DIR = 'ipam'

let bootIdCache: string | undefined

/**
 * This boot of the kernel (a new value after every reboot, so after every power loss); when
 * /proc is not mounted, the boot time to ten minutes (a spurious change costs one full check).
 */
export function currentBootId(): string {
  if (bootIdCache !== undefined) return bootIdCache
  try {
    bootIdCache = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    bootIdCache = `btime:${Math.round((Date.now() / 1000 - os.uptime()) / 600)}`
  }
  return bootIdCache
}

export interface IpamMeta {
  version: 2
  ranges: IpamRange[]
}

export interface OwnerRecord {
  owner: string
  allocations: StoredAllocation[]
}

interface Journal {
  keys: string[]
  ips: string[]
}

const SAFE_KEY = /^[A-Za-z0-9_@+=,-][A-Za-z0-9._@+=,:-]{0,199}$/

/** File name of an owner's record: the owner itself when it is a safe name, else `~<sha256>`. */
export function ownerKey(owner: string): string {
  return SAFE_KEY.test(owner) ? owner : `~${sha256Hex(owner)}`
}

export function canonicalIpOrUndefined(text: string): string | undefined {
  const ip = tryParseIp(text)
  return ip ? formatIp(ip.value, ip.family) : undefined
}

export class IpamDir {
  /**
   * Directories whose fsync the caller runs after releasing the IPAM lock (and before it reports
   * success): see writeRecords. Undefined: fsync'd in place.
   */
  deferredSyncs?: Set<string>

  /** `bootId`: tests stand in a reboot with another value. */
  constructor(readonly dir: string, readonly bootId: string = currentBootId()) {}

  get metaFile(): string {
    return path.join(this.dir, 'meta.json')
  }
  bitmapFile(i: number): string {
    return path.join(this.dir, `bitmap.${i}`)
  }
  recordFile(key: string): string {
    return path.join(this.dir, 'owners', `${key}.json`)
  }
  ipLink(ip: string): string {
    return path.join(this.dir, 'ips', ip)
  }
  pendingLink(key: string): string {
    return path.join(this.dir, 'pending', key)
  }
  get journalFile(): string {
    return path.join(this.dir, 'journal.json')
  }
  get bootFile(): string {
    return path.join(this.dir, 'boot')
  }

  private corrupt(file: string, cause: string): PnError {
    return new PnError('PN_STATE_CORRUPT', `read ipam state ${file}: ${cause}`, {
      hint: `pn will not overwrite it; inspect or move ${file} away (pn ipam gc rebuilds the index from the owner records), then rerun`,
      details: {file},
    })
  }

  private async readJson(file: string): Promise<unknown | undefined> {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw this.corrupt(file, (err as Error).message)
    }
    try {
      return JSON.parse(text)
    } catch (err) {
      throw this.corrupt(file, `not valid JSON (${(err as Error).message})`)
    }
  }

  async readMeta(): Promise<IpamMeta | undefined> {
    const v = (await this.readJson(this.metaFile)) as IpamMeta | undefined
    if (v === undefined) return undefined
    if (!v || v.version !== 2 || !Array.isArray(v.ranges) || !v.ranges.every((r) => r && typeof r.cidr === 'string' && typeof r.routerIp === 'string')) {
      throw this.corrupt(this.metaFile, 'unexpected content')
    }
    return v
  }

  async readRecord(key: string): Promise<OwnerRecord | undefined> {
    const file = this.recordFile(key)
    const v = (await this.readJson(file)) as OwnerRecord | undefined
    if (v === undefined) return undefined
    if (
      !v || typeof v.owner !== 'string' || ownerKey(v.owner) !== key || !Array.isArray(v.allocations) ||
      !v.allocations.every((a) => a && typeof a.ip === 'string' && typeof a.state === 'string' && typeof a.createdAt === 'string')
    ) {
      throw this.corrupt(file, 'unexpected content')
    }
    return v
  }

  async readBitmaps(ranges: IpamRange[]): Promise<Uint32Array[]> {
    return Promise.all(ranges.map(async (r, i) => {
      const words = Math.ceil(new IpRange(r.cidr).capacity / 32)
      let buf: Buffer
      try {
        buf = fs.readFileSync(this.bitmapFile(i))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw this.corrupt(this.bitmapFile(i), 'missing')
        throw err
      }
      if (buf.length !== words * 4) throw this.corrupt(this.bitmapFile(i), `${buf.length} bytes, want ${words * 4}`)
      const out = new Uint32Array(words)
      for (let w = 0; w < words; w++) out[w] = buf.readUInt32LE(w * 4)
      return out
    }))
  }

  /** Holder key of an address, from its link. */
  async ipHolder(ip: string): Promise<string | undefined> {
    try {
      // basename: a copy of the directory (fs.cp) may have made the link absolute
      return path.basename(fs.readlinkSync(this.ipLink(ip)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  async pendingKeys(): Promise<string[]> {
    return listDir(path.join(this.dir, 'pending'))
  }

  async allKeys(): Promise<string[]> {
    return (await listDir(path.join(this.dir, 'owners'))).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => f.slice(0, -5))
  }

  async writeRecord(key: string, rec: OwnerRecord | undefined): Promise<void> {
    await this.writeRecords([[key, rec]])
  }

  /**
   * Write (or, when empty, remove) several owner records durably as one group: every new content
   * to a temp file, the temp files fsync'd together, renamed into place, then `owners/` fsync'd.
   * Two journal commits however many records; a kill leaves each record old or new.
   */
  async writeRecords(changes: [string, OwnerRecord | undefined][]): Promise<void> {
    const writes: [string, string, string][] = []
    for (const [key, rec] of changes) {
      if (rec === undefined || rec.allocations.length === 0) continue
      const file = this.recordFile(key)
      writes.push([tmpPath(file), file, JSON.stringify(rec) + '\n'])
    }
    try {
      // Data first: a rename that reached the disk before its file's data would leave an empty record.
      // On the thread pool, all at once: in a burst of ADDs a create and an fsync wait for the
      // journal's commit (milliseconds), and synchronous ones stopped the agent's event loop for
      // every other ADD (~0.25 s of main-thread time per 100 ADDs). The lock is held across the
      // waits, but the changes that queue behind it are committed together next (runTogether), so
      // a longer hold makes bigger groups rather than more waits.
      // allSettled: every write has ended before a failure removes the temp files (none created after).
      const written = await Promise.allSettled(writes.map(([tmp, , data]) => fsp.writeFile(tmp, data, {mode: STATE_FILE_MODE})))
      const failed = written.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
      await syncPaths(writes.map(([tmp]) => tmp))
    } catch (err) {
      for (const [tmp] of writes) fs.rmSync(tmp, {force: true})
      throw err
    }
    // Renames and removals on the thread pool too, all at once: each is a change to `owners/`
    // that waits for the journal while a commit is running (in a 100-pod burst, synchronous
    // ones held the event loop ~150 ms). Every rename follows its file's fsync above.
    const renamed = await Promise.allSettled(writes.map(([tmp, file]) => fsp.rename(tmp, file)))
    const notRenamed = renamed.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (notRenamed) {
      for (const [tmp] of writes) fs.rmSync(tmp, {force: true}) // the ones renamed are gone already
      throw notRenamed.reason
    }
    const removals = changes.filter(([, rec]) => rec === undefined || rec.allocations.length === 0).map(([key]) => unlinkIfThereAsync(this.recordFile(key)))
    const removed = (await Promise.all(removals)).some(Boolean)
    if (writes.length > 0 || removed) {
      // The directory fsync (a journal commit) makes the renames and unlinks durable. With
      // deferredSyncs the caller runs it after the lock, before it returns: concurrent ADDs then
      // queue behind one commit, not two, per change. It also commits every earlier change to
      // `owners/` (the journal is ordered), so a later allocation is never durable before the
      // release that freed its address.
      if (this.deferredSyncs) this.deferredSyncs.add(path.join(this.dir, 'owners'))
      else syncPathSync(path.join(this.dir, 'owners'))
    }
  }

  async setLink(link: string, target: string): Promise<void> {
    try {
      if (path.basename(fs.readlinkSync(link)) === target) return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const tmp = `${path.dirname(link)}/.${randomHex(6)}.tmp`
    // On the thread pool: two directory changes that wait for the journal in a burst.
    await fsp.symlink(target, tmp)
    await fsp.rename(tmp, link)
  }

  /** Write the words that differ between `before` and `after` into bitmap i, in place. */
  async writeBitmapWords(i: number, before: Uint32Array, after: Uint32Array): Promise<void> {
    let fd: number | undefined
    try {
      for (let w = 0; w < after.length; w++) {
        if (before[w] === after[w]) continue
        fd ??= fs.openSync(this.bitmapFile(i), 'r+')
        const b = Buffer.alloc(4)
        b.writeUInt32LE(after[w])
        fs.writeSync(fd, b, 0, 4, w * 4)
      }
    } finally {
      if (fd !== undefined) fs.closeSync(fd)
    }
  }

  async writeMeta(meta: IpamMeta): Promise<void> {
    await writeDurable(this.metaFile, JSON.stringify(meta) + '\n')
  }

  /** True when the index was last checked against the records in another boot (or never). */
  async bootChanged(): Promise<boolean> {
    try {
      return fs.readFileSync(this.bootFile, 'utf8').trim() !== this.bootId
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true
      throw err
    }
  }

  /** Something to finish before reading: an interrupted change, or a reboot since the last check. */
  async needsRecovery(): Promise<boolean> {
    return (await this.hasJournal()) || this.bootChanged()
  }

  /** The index is on disk (fsync'd) and matches the records: remember this boot. */
  async markBoot(): Promise<void> {
    await syncPaths([...this.indexPaths(), path.join(this.dir, 'owners')])
    await writeDurable(this.bootFile, this.bootId + '\n')
  }

  private indexPaths(): string[] {
    const bitmaps = listDirAll(this.dir).filter((f) => /^bitmap\.\d+$/.test(f)).map((f) => path.join(this.dir, f))
    return [...bitmaps, path.join(this.dir, 'ips'), path.join(this.dir, 'pending')]
  }

  async hasJournal(): Promise<boolean> {
    try {
      fs.accessSync(this.journalFile)
      return true
    } catch {
      return false
    }
  }

  async readJournal(): Promise<Journal | undefined> {
    const v = (await this.readJson(this.journalFile)) as Journal | undefined
    if (v === undefined) return undefined
    if (!v || !Array.isArray(v.keys) || !Array.isArray(v.ips)) throw this.corrupt(this.journalFile, 'unexpected content')
    return v
  }

  async writeJournal(j: Journal): Promise<void> {
    await writeReplace(this.journalFile, JSON.stringify(j) + '\n')
  }

  async clearJournal(): Promise<void> {
    await unlinkIfThere(this.journalFile)
  }

  /**
   * Finish or undo an interrupted mutation: for the journal's keys and IPs, make bits, `ips/` and
   * `pending/` agree with the owner records. Returns what it changed, for a warning.
   */
  async recover(meta: IpamMeta): Promise<string[]> {
    if (await this.bootChanged()) {
      // After a reboot the index may have lost writes the records did not: check all of it.
      const fixed = await repairIpamDir(this, meta)
      await this.markBoot()
      return fixed
    }
    const j = await this.readJournal()
    if (!j) return []
    const fixed: string[] = []
    const ranges = meta.ranges.map((r) => new IpRange(r.cidr, r.routerIp))
    const before = await this.readBitmaps(meta.ranges)
    const maps = ranges.map((r, i) => Bitmap.fromWords(r.capacity, before[i]))
    const claimedBy = new Map<string, string>()
    for (const key of j.keys) {
      const rec = await this.readRecord(key)
      for (const a of rec?.allocations ?? []) {
        const ip = canonicalIpOrUndefined(a.ip)
        if (ip && !claimedBy.has(ip)) claimedBy.set(ip, key)
      }
      const pending = (rec?.allocations ?? []).some((a) => a.state === 'pending')
      const had = (await this.pendingLinkTarget(key)) !== undefined
      if (pending && !had) await this.setLink(this.pendingLink(key), key)
      if (!pending && had) await unlinkIfThere(this.pendingLink(key))
    }
    for (const text of j.ips) {
      const ip = canonicalIpOrUndefined(text)
      const parsed = tryParseIp(text)
      if (!ip || !parsed) continue
      const i = ranges.findIndex((r) => r.family === parsed.family && r.offsetOf(parsed.value) >= 0)
      const key = claimedBy.get(ip)
      const link = await this.ipHolder(ip)
      if (key !== undefined) {
        if (i >= 0 && maps[i].set(ranges[i].offsetOf(parsed.value))) fixed.push(`${ip}: set its bit (held by ${key})`)
        if (link !== key) await this.setLink(this.ipLink(ip), key)
      } else if (link === undefined || j.keys.includes(link)) {
        if (i >= 0 && maps[i].clear(ranges[i].offsetOf(parsed.value))) fixed.push(`${ip}: freed (no owner record holds it)`)
        if (link !== undefined) await unlinkIfThere(this.ipLink(ip))
      }
    }
    for (const [i, m] of maps.entries()) await this.writeBitmapWords(i, before[i], m.toWords())
    await this.clearJournal()
    return fixed
  }

  private async pendingLinkTarget(key: string): Promise<string | undefined> {
    try {
      return path.basename(fs.readlinkSync(this.pendingLink(key)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }
}

/**
 * Build a complete store directory from a full state at `dir`: filled in a temp dir, every file
 * and directory fsync'd, renamed into place, the parent fsync'd.
 */
export async function writeIpamDir(dir: string, state: IpamState, bootId?: string): Promise<void> {
  const parent = path.dirname(dir)
  fs.mkdirSync(parent, {recursive: true, mode: STATE_DIR_MODE})
  const tmp = path.join(parent, `.${path.basename(dir)}.${process.pid}.${randomHex(4)}.tmp`)
  fs.mkdirSync(tmp, {mode: STATE_DIR_MODE})
  try {
    await fillDir(tmp, state, bootId)
    fs.renameSync(tmp, dir)
  } catch (err) {
    fs.rmSync(tmp, {recursive: true, force: true})
    throw err
  }
  await syncDir(parent)
}

async function fillDir(dir: string, state: IpamState, bootId?: string): Promise<void> {
  const d = new IpamDir(dir, bootId)
  const written: string[] = []
  const write = (file: string, data: string | Buffer) => {
    fs.writeFileSync(file, data, {mode: STATE_FILE_MODE})
    written.push(file)
  }
  for (const sub of ['owners', 'ips', 'pending']) fs.mkdirSync(path.join(dir, sub), {recursive: true, mode: STATE_DIR_MODE})
  const ranges = state.ranges.map((r) => new IpRange(r.cidr, r.routerIp))
  const maps = ranges.map((r) => new Bitmap(r.capacity))
  const byOwner = new Map<string, StoredAllocation[]>()
  for (const a of state.allocations) {
    const ip = tryParseIp(a.ip)
    const i = ip ? ranges.findIndex((r) => r.family === ip.family && r.offsetOf(ip.value) >= 0) : -1
    if (!ip || i < 0) continue
    maps[i].set(ranges[i].offsetOf(ip.value))
    const list = byOwner.get(a.owner) ?? []
    list.push({...a, ip: formatIp(ip.value, ip.family)})
    byOwner.set(a.owner, list)
  }
  for (const [i, m] of maps.entries()) write(d.bitmapFile(i), wordsBuffer(m.toWords()))
  for (const [owner, allocations] of byOwner) {
    const key = ownerKey(owner)
    write(d.recordFile(key), JSON.stringify({owner, allocations}) + '\n')
    for (const a of allocations) fs.symlinkSync(key, d.ipLink(a.ip))
    if (allocations.some((a) => a.state === 'pending')) fs.symlinkSync(key, d.pendingLink(key))
  }
  write(d.metaFile, JSON.stringify({version: 2, ranges: state.ranges} satisfies IpamMeta) + '\n')
  write(d.bootFile, d.bootId + '\n')
  await syncPaths([...written, ...['owners', 'ips', 'pending'].map((sub) => path.join(dir, sub)), dir])
}

function wordsBuffer(words: Uint32Array): Buffer {
  const b = Buffer.alloc(words.length * 4)
  for (let w = 0; w < words.length; w++) b.writeUInt32LE(words[w], w * 4)
  return b
}

/** Every allocation of the directory (reads every owner record). */
export async function readAllAllocations(d: IpamDir): Promise<{records: Map<string, OwnerRecord>; allocations: StoredAllocation[]}> {
  const records = new Map<string, OwnerRecord>()
  const allocations: StoredAllocation[] = []
  for (const key of await d.allKeys()) {
    const rec = await d.readRecord(key)
    if (!rec) continue
    records.set(key, rec)
    for (const a of rec.allocations) allocations.push({...a, owner: rec.owner})
  }
  return {records, allocations}
}

/**
 * Check the whole directory against its owner records and fix it: bits and `ips/` links without an
 * owner record are freed, records without a bit get it, `pending/` follows the records, and an
 * address claimed by two records stays with the first (the second loses it). Returns what it fixed.
 */
export async function repairIpamDir(d: IpamDir, meta: IpamMeta, write = true): Promise<string[]> {
  const fixed: string[] = []
  const ranges = meta.ranges.map((r) => new IpRange(r.cidr, r.routerIp))
  const before = await d.readBitmaps(meta.ranges)
  const want = ranges.map((r) => new Bitmap(r.capacity))
  const holder = new Map<string, string>()
  const {records} = await readAllAllocations(d)
  for (const [key, rec] of records) {
    const keep: StoredAllocation[] = []
    for (const a of rec.allocations) {
      const ip = tryParseIp(a.ip)
      const i = ip ? ranges.findIndex((r) => r.family === ip.family && r.offsetOf(ip.value) >= 0) : -1
      const text = ip ? formatIp(ip.value, ip.family) : a.ip
      if (!ip || i < 0 || holder.has(text)) {
        fixed.push(`${a.ip}: dropped from ${rec.owner} (${!ip || i < 0 ? 'outside every range' : `also held by ${holder.get(text)}`})`)
        continue
      }
      want[i].set(ranges[i].offsetOf(ip.value))
      holder.set(text, key)
      keep.push(a)
    }
    if (keep.length !== rec.allocations.length && write) await d.writeRecord(key, {owner: rec.owner, allocations: keep})
    const pending = keep.some((a) => a.state === 'pending')
    const links = await listDir(path.join(d.dir, 'pending'))
    if (pending !== links.includes(key)) fixed.push(`pending/${key}: ${pending ? 'added' : 'removed'}`)
    if (!write) continue
    if (pending && !links.includes(key)) await d.setLink(d.pendingLink(key), key)
    if (!pending && links.includes(key)) await unlinkIfThere(d.pendingLink(key))
  }
  for (const key of await d.pendingKeys()) {
    if (records.has(key)) continue
    fixed.push(`pending/${key}: removed (no record)`)
    if (write) await unlinkIfThere(d.pendingLink(key))
  }
  for (const [i, r] of ranges.entries()) {
    const have = Bitmap.fromWords(r.capacity, before[i])
    for (let o = 0; o < r.capacity; o++) {
      if (have.has(o) && !want[i].has(o)) fixed.push(`${r.ipAt(o)}: freed (no owner record holds it)`)
      if (!have.has(o) && want[i].has(o)) fixed.push(`${r.ipAt(o)}: set its bit (an owner record holds it)`)
    }
    if (write) await d.writeBitmapWords(i, before[i], want[i].toWords())
  }
  for (const ip of await listDir(path.join(d.dir, 'ips'))) {
    if (holder.has(ip)) continue
    fixed.push(`ips/${ip}: removed (no record)`)
    if (write) await unlinkIfThere(d.ipLink(ip))
  }
  for (const [ip, key] of holder) {
    if ((await d.ipHolder(ip)) === key) continue
    fixed.push(`ips/${ip}: points at ${key}`)
    if (write) await d.setLink(d.ipLink(ip), key)
  }
  if (write) {
    removeTempFiles(d)
    await d.clearJournal()
  } else if (await d.hasJournal()) fixed.push('journal.json: an interrupted change')
  return fixed
}

/** Temp files of writers killed before their rename (only ever touched under the lock). */
function removeTempFiles(d: IpamDir): void {
  for (const sub of ['', 'owners', 'ips', 'pending']) {
    const dir = path.join(d.dir, sub)
    for (const f of listDirAll(dir)) if (f.startsWith('.') && f.endsWith('.tmp')) fs.rmSync(path.join(dir, f), {force: true})
  }
}

/** The router's key (its record is loaded by every operation). */
export const ROUTER_KEY = ownerKey(ROUTER_OWNER)

async function listDir(dir: string): Promise<string[]> {
  return listDirAll(dir).filter((f) => !f.startsWith('.'))
}

function listDirAll(dir: string): string[] {
  try {
    return fs.readdirSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}

/** unlinkIfThere on the thread pool. */
async function unlinkIfThereAsync(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return false
  }
}

async function unlinkIfThere(file: string): Promise<boolean> {
  try {
    fs.unlinkSync(file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    return false
  }
}

function tmpPath(file: string): string {
  return `${path.dirname(file)}/.${path.basename(file)}.${randomHex(6)}.tmp`
}

/**
 * Replace a small file by temp file + rename: a kill leaves the old or the new content. No fsync:
 * for the journal only, which matters until the process that wrote it dies (the page cache
 * outlives the process); after a reboot the whole index is checked instead.
 */
async function writeReplace(file: string, data: string): Promise<void> {
  const tmp = tmpPath(file)
  fs.writeFileSync(tmp, data, {mode: STATE_FILE_MODE})
  try {
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, {force: true})
    throw err
  }
}

/** writeReplace that survives a power loss once it returns: fsync the temp file, rename, fsync the directory. */
async function writeDurable(file: string, data: string): Promise<void> {
  const tmp = tmpPath(file)
  try {
    fs.writeFileSync(tmp, data, {mode: STATE_FILE_MODE})
    await syncPaths([tmp])
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, {force: true})
    throw err
  }
  await syncDir(path.dirname(file))
}
