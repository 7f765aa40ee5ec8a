/**
 * pn-mapbatch (native/pn-mapbatch.c, built to dist/native/): one small process that takes a
 * state lock with flock(2), opens pinned BPF maps and writes binary records into them with the
 * batch syscalls (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH). It replaces a `flock` helper
 * plus a `bpftool batch` (two process starts, and bpftool's ~12 µs of command parsing per line)
 * with one process start and one syscall per run of records.
 *
 * Like the flock helper (flock.ts), the lock lives exactly as long as the process: closing its
 * stdin (or pn dying, even by SIGKILL) ends it and the kernel drops the lock.
 *
 * Protocol limits (native/pn-mapbatch.c checks the same): at most 16 maps, a lock timeout of at
 * most 2^31-1 ms (clamped), a frame of at most 1048576 records whose length matches its count
 * (checked before it is written: PN_INVALID_ARGUMENT), an answer line of at most 16 MiB (a longer
 * one is a broken helper: it is killed and the frame fails).
 */
import {spawn} from './child-process.js'
import {existsSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {PnError} from '../errors.js'
import {LockBusyError} from './flock.js'

/** Where `npm run build` (scripts/build-native.sh) puts the native helpers: dist/native/. */
export function nativeTool(name: string): string {
  return fileURLToPath(new URL(`../../native/${name}`, import.meta.url))
}

/** What one frame did: `done` records from the start took effect (minus `skipped`), then `failed`. */
export interface FrameResult {
  done: number
  /** Deletes of keys that were not there (not an error; nothing to undo). */
  skipped: number[]
  failed?: {index: number; errno: number; error: string}
}

export interface MapBatchProcess {
  /** Send one frame (u32 LE count + 28-byte records) and wait for its result. */
  write(frame: Buffer): Promise<FrameResult>
  /** End the process (releases the lock). */
  close(): Promise<void>
}

/** The protocol's limits, as native/pn-mapbatch.c has them. */
export const MAPBATCH_LIMITS = {maps: 16, records: 1 << 20, recordBytes: 28, timeoutMs: 2 ** 31 - 1, answerBytes: 16 << 20} as const

/** A frame's shape against the limits: undefined when it may be sent, else why not. */
export function frameProblem(frame: Buffer): string | undefined {
  if (frame.length < 4) return 'a frame shorter than its 4-byte count'
  const count = frame.readUInt32LE(0)
  if (count > MAPBATCH_LIMITS.records) return `${count} records is over the limit of ${MAPBATCH_LIMITS.records}`
  if (frame.length !== 4 + count * MAPBATCH_LIMITS.recordBytes) return `${frame.length} bytes do not hold ${count} records of ${MAPBATCH_LIMITS.recordBytes} bytes`
  return undefined
}

const LOCK_BUSY_EXIT = 75
const NO_MAP_EXIT = 3

/**
 * Start pn-mapbatch on `mapPaths` (record map index i = mapPaths[i]), holding `lock` (an
 * exclusive flock on that file, waited for up to timeoutMs) until close().
 */
export async function openMapBatch(mapPaths: string[], opts: {lock?: {path: string; timeoutMs: number}} = {}): Promise<MapBatchProcess> {
  const bin = nativeTool('pn-mapbatch')
  if (!existsSync(bin)) {
    throw new PnError('PN_TOOL_MISSING', `run pn-mapbatch: ${bin} is missing`, {hint: 'build it with `npm run build` (scripts/build-native.sh: needs clang and libbpf-dev)'})
  }
  if (mapPaths.length > MAPBATCH_LIMITS.maps) {
    throw new PnError('PN_INVALID_ARGUMENT', `open bpf maps: ${mapPaths.length} maps is over the limit of ${MAPBATCH_LIMITS.maps}`, {hint: 'write them in several runs'})
  }
  const timeoutMs = opts.lock ? Math.min(MAPBATCH_LIMITS.timeoutMs, Math.max(0, Math.round(opts.lock.timeoutMs) || 0)) : 0
  const args = opts.lock ? ['--lock', opts.lock.path, '--lock-timeout', String(timeoutMs)] : []
  const child = spawn(bin, [...args, ...mapPaths], {stdio: ['pipe', 'pipe', 'pipe']})
  const exited = new Promise<{code: number | null; error?: Error}>((resolve) => {
    child.once('error', (error) => resolve({code: null, error}))
    child.once('close', (code) => resolve({code}))
  })
  let stderr = ''
  let protocolError: string | undefined
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdin.on('error', () => undefined)
  // Lines from stdout, handed to whoever waits for the next one.
  let buffered = ''
  const lines: string[] = []
  let waiter: ((line: string | undefined) => void) | undefined
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString()
    if (buffered.length > MAPBATCH_LIMITS.answerBytes && !buffered.includes('\n')) {
      buffered = ''
      protocolError = `an answer line over ${MAPBATCH_LIMITS.answerBytes} bytes`
      child.kill('SIGKILL')
      return
    }
    let i
    while ((i = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, i))
      buffered = buffered.slice(i + 1)
    }
    if (waiter && lines.length > 0) {
      const w = waiter
      waiter = undefined
      w(lines.shift())
    }
  })
  void exited.then(() => {
    if (waiter) {
      const w = waiter
      waiter = undefined
      w(undefined)
    }
  })
  let done = false
  const nextLine = () => (lines.length > 0 ? Promise.resolve(lines.shift()) : done ? Promise.resolve(undefined) : new Promise<string | undefined>((r) => (waiter = r)))
  void exited.then(() => (done = true))

  const failure = async (what: string): Promise<never> => {
    const {code, error} = await exited
    if (code === LOCK_BUSY_EXIT && opts.lock) throw new LockBusyError(0, opts.lock.path, opts.lock.timeoutMs)
    if (code === NO_MAP_EXIT) {
      throw new PnError('PN_BPF_NOT_LOADED', `${what}: ${stderr.trim()}`, {hint: 'load the datapath with `pn bpf load --host`'})
    }
    if (protocolError) throw new PnError('PN_COMMAND_FAILED', `${what}: pn-mapbatch broke its protocol: ${protocolError}`, {details: {stderr}})
    throw new PnError('PN_COMMAND_FAILED', `${what}: pn-mapbatch exited with ${code}${error ? ` (${error.message})` : ''}: ${stderr.trim()}`, {details: {stderr}})
  }

  const ready = await nextLine()
  if (ready !== 'ready') return failure('open bpf maps')
  return {
    async write(frame: Buffer): Promise<FrameResult> {
      const problem = frameProblem(frame)
      if (problem) throw new PnError('PN_INVALID_ARGUMENT', `write bpf maps: ${problem}`, {hint: `send at most ${MAPBATCH_LIMITS.records} records a frame`})
      child.stdin.write(frame)
      const line = await nextLine()
      if (line === undefined) return failure('write bpf maps')
      return JSON.parse(line) as FrameResult
    },
    async close(): Promise<void> {
      child.stdin.end()
      await exited
    },
  }
}
