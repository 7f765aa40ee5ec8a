/**
 * State files: written atomically (temp file in the same directory, fsync, rename, fsync the
 * directory) and changed only under an exclusive lock, so a process killed at any moment
 * leaves either the old file or the new one, never a torn one, and a call that returned
 * survives a power loss. Files are 0600, directories 0700.
 */
import fsSync from 'node:fs'
import {fsp as fs, openFile} from '../exec/fs.js'
import path from 'node:path'
import {PnError, type ErrorCode} from '../errors.js'
import {acquireFlock, type Locker} from '../exec/flock.js'
import {randomHex} from './digest.js'
import {timedSync, timedSyncAsync} from './timing.js'

export const DEFAULT_STATE_DIR = '/var/lib/pn'
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000

/** State dir from the flag (the CLI maps PN_STATE_DIR onto it), else /var/lib/pn. */
export function resolveStateDir(flag?: string): string {
  return path.resolve(flag || DEFAULT_STATE_DIR)
}

/**
 * How a caller locks state files: the wait before PN_LOCK_TIMEOUT, and a hook run while the
 * lock is held (tests use it to hold a lock and SIGKILL the holder). Entries (the CLI, pn-cni)
 * build this from their flags and environment; the library never reads the environment.
 */
export interface LockOptions {
  timeoutMs?: number
  whileHeld?: (lockFile: string) => Promise<void>
  /** Who takes the flocks; default this process (src/exec/flock.ts). */
  locker?: Locker
}

/** State files are readable by root only; so are the directories that hold them. */
export const STATE_FILE_MODE = 0o600
export const STATE_DIR_MODE = 0o700

/** Create `dir` (and its parents) if missing; state directories are 0700. */
export async function ensureDir(dir: string, mode = STATE_DIR_MODE): Promise<void> {
  await fs.mkdir(dir, {recursive: true, mode})
}

/**
 * The mode of a directory created for a file: a file others may read (a CNI config, a plugin
 * binary) gets a directory they can enter; a state file gets a private one.
 */
function dirModeFor(fileMode: number): number {
  return fileMode & 0o044 ? 0o755 : STATE_DIR_MODE
}

/** fsync a directory: makes the names created, renamed or removed in it durable. */
export async function syncDir(dir: string): Promise<void> {
  const h = await openFile(dir, 'r')
  try {
    await timedSyncAsync(1, () => h.sync())
  } finally {
    await h.close()
  }
}

/**
 * fsync a file or directory synchronously: no event-loop turn, for code that holds a lock a
 * CPU-starved burst of callers waits on (src/ipam/host-store.ts).
 */
export function syncPathSync(p: string): void {
  const fd = fsSync.openSync(p, 'r')
  try {
    timedSync(1, () => fsSync.fsyncSync(fd))
  } finally {
    fsSync.closeSync(fd)
  }
}

/**
 * fsync several files and directories at once. The kernel commits them together (one journal
 * commit on ext4 and xfs rather than one per path): the group commit of a change that touched
 * several names. Missing paths are skipped (a file removed in the same change).
 */
export async function syncPaths(paths: Iterable<string>): Promise<void> {
  const list = [...new Set(paths)]
  let next = 0
  // A few at a time (libuv runs four): a whole store written at once must not run out of fds.
  const worker = async () => {
    while (next < list.length) {
      const p = list[next++]
      let h
      try {
        h = await openFile(p, 'r')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw err
      }
      try {
        await h.sync()
      } finally {
        await h.close()
      }
    }
  }
  await timedSyncAsync(list.length, () => Promise.all(Array.from({length: Math.min(SYNC_PARALLEL, list.length)}, worker)))
}

const SYNC_PARALLEL = 8

/**
 * The directory fsyncs of one flow (and the fsyncs of its claim files), run together once,
 * right before the flow reports success: a group commit. A file's data is still fsync'd before
 * its rename, wherever a group is used, so a power loss never leaves an empty or torn file under
 * the final name; what the group delays is only the durability of the names (renames, creates,
 * unlinks) until `flush`, which the flow awaits before it answers. A process crash meanwhile
 * loses nothing (the page cache outlives the process); a power loss before the flush may lose
 * the names, as if the flow had not run: its kernel state (veth, BPF) is gone after a reboot too.
 */
export class SyncGroup {
  private readonly paths = new Set<string>()

  add(...paths: string[]): void {
    for (const p of paths) this.paths.add(p)
  }

  get size(): number {
    return this.paths.size
  }

  /** fsync everything added since the last flush, in parallel (syncPaths). */
  async flush(): Promise<void> {
    if (this.paths.size === 0) return
    const list = [...this.paths]
    this.paths.clear()
    await syncPaths(list)
  }
}

/** fsync `dir` now, or leave it to the flow's group. */
async function syncDirOr(dir: string, group?: SyncGroup): Promise<void> {
  if (group) group.add(dir)
  else await syncDir(dir)
}

/**
 * Replace `file` so that a crash at any moment leaves the old content or the new, and the new
 * survives a power loss once this returns: temp file in the same directory, fsync, rename, fsync
 * the directory (with `group`: once the group is flushed). Mode 0600 unless a caller outside the
 * state dir asks for more.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = STATE_FILE_MODE, group?: SyncGroup): Promise<void> {
  const dir = path.dirname(file)
  await ensureDir(dir, dirModeFor(mode))
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomHex(4)}.tmp`)
  const handle = await openFile(tmp, 'wx', mode)
  try {
    await handle.writeFile(data)
    await timedSyncAsync(1, () => handle.sync())
  } finally {
    await handle.close()
  }
  try {
    await fs.rename(tmp, file)
  } catch (err) {
    await fs.rm(tmp, {force: true})
    throw err
  }
  await syncDirOr(dir, group)
}

/**
 * Create `file` exclusively (EEXIST when it is there: a claim) and make the claim durable. The
 * file and its directory are fsync'd together (now, or with `group`), so a power loss during the
 * call may leave the name with empty content: for a claim file the name is what counts.
 */
export async function createFileExclusive(file: string, data: string, mode = STATE_FILE_MODE, group?: SyncGroup): Promise<void> {
  const handle = await openFile(file, 'wx', mode)
  try {
    await handle.writeFile(data)
  } finally {
    await handle.close()
  }
  if (group) group.add(file, path.dirname(file))
  else await syncPaths([file, path.dirname(file)])
}

/** Remove `file` and fsync its directory (now, or with `group`); false when it was not there. */
export async function removeFileDurable(file: string, group?: SyncGroup): Promise<boolean> {
  try {
    await fs.unlink(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
  await syncDirOr(path.dirname(file), group)
  return true
}

/**
 * Rename `from` (already fsync'd, e.g. by writeFileAtomic) over `to` and fsync the directory:
 * after it returns, `to` survives a crash.
 */
export async function renameDurable(from: string, to: string): Promise<void> {
  await fs.rename(from, to)
  await syncDir(path.dirname(to))
}

/** Read a file; undefined when it does not exist. */
export async function readFileIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new PnError('PN_STATE_CORRUPT', `read ${file}: ${(err as Error).message}`)
  }
}

export async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.access(file)
    return true
  } catch {
    return false
  }
}

/** Run fn while holding the exclusive lock `<file>.lock`. */
export async function withLock<T>(file: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  await ensureDir(path.dirname(file))
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
  const lock = opts.locker ? await opts.locker.acquire([{path: `${file}.lock`, timeoutMs}]) : await acquireFlock(`${file}.lock`, timeoutMs)
  try {
    await opts.whileHeld?.(`${file}.lock`)
    return await fn()
  } finally {
    await lock.release()
  }
}

export interface JsonFileSpec<T> {
  /** What the file holds, for messages ("pool file", "ipam state"). */
  what: string
  /** Error code when the file is unreadable or fails validation. */
  corruptCode: ErrorCode
  /** Validate parsed JSON; throw or return false when it is not a T. */
  validate: (value: unknown) => value is T
  /** Hint for a corrupt file. */
  corruptHint?: string
}

/** Read and validate a JSON state file; undefined when it does not exist. */
export async function readJsonFile<T>(file: string, spec: JsonFileSpec<T>): Promise<T | undefined> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new PnError('PN_STATE_CORRUPT', `read ${spec.what} ${file}: ${(err as Error).message}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw corrupt(file, spec, `not valid JSON (${(err as Error).message})`)
  }
  if (!spec.validate(value)) throw corrupt(file, spec, 'unexpected content')
  return value
}

function corrupt<T>(file: string, spec: JsonFileSpec<T>, cause: string): PnError {
  return new PnError(spec.corruptCode, `read ${spec.what} ${file}: ${cause}`, {
    hint: spec.corruptHint ?? `pn will not overwrite it; inspect or move ${file} away, then rerun`,
    details: {file},
  })
}

/**
 * Read-modify-write a JSON state file under its lock. `mutate` returns the new value (or
 * undefined for "unchanged", which skips the write) and a result for the caller.
 */
export async function updateJsonFile<T, R>(
  file: string,
  spec: JsonFileSpec<T>,
  mutate: (current: T | undefined) => Promise<{next?: T; result: R}> | {next?: T; result: R},
  lock: LockOptions = {},
): Promise<R> {
  return withLock(file, async () => {
    const current = await readJsonFile(file, spec)
    const {next, result} = await mutate(current)
    if (next !== undefined) await writeFileAtomic(file, JSON.stringify(next, null, 2) + '\n')
    return result
  }, lock)
}
