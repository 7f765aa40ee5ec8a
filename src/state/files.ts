/**
 * State files: written atomically (temp file in the same directory, fsync, rename, fsync the
 * directory) and changed only under an exclusive lock, so a process killed at any moment
 * leaves either the old file or the new one, never a torn one.
 */
import {fsp as fs, openFile} from '../exec/fs.js'
import path from 'node:path'
import {PnError, type ErrorCode} from '../errors.js'
import {acquireFlock, type Locker} from '../exec/flock.js'
import {randomHex} from './digest.js'

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
  /** Who takes the flocks (the agent's long-lived helper); default one `flock` process per lock. */
  locker?: Locker
}

export async function ensureDir(dir: string): Promise<void> {
  await fs.mkdir(dir, {recursive: true, mode: 0o755})
}

/**
 * `sync: false` skips both fsyncs: the file still appears whole or not at all to any process
 * (rename), but a power loss may lose it — for a file that is fsync'd later (see commitFile).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644, opts: {sync?: boolean} = {}): Promise<void> {
  const sync = opts.sync !== false
  const dir = path.dirname(file)
  await ensureDir(dir)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomHex(4)}.tmp`)
  const handle = await openFile(tmp, 'wx', mode)
  try {
    await handle.writeFile(data)
    if (sync) await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await fs.rename(tmp, file)
  } catch (err) {
    await fs.rm(tmp, {force: true})
    throw err
  }
  if (!sync) return
  const dirHandle = await openFile(dir, 'r')
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}

/** fsync `from`, rename it over `to` and fsync the directory: after it returns, `to` survives a crash. */
export async function renameDurable(from: string, to: string): Promise<void> {
  const h = await openFile(from, 'r')
  try {
    await h.sync()
  } finally {
    await h.close()
  }
  await fs.rename(from, to)
  const dirHandle = await openFile(path.dirname(to), 'r')
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
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
