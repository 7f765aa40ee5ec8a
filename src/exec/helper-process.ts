/**
 * A native helper (pn-netlink) as its Node user sees it: bytes each way and an end.
 * Either this process spawns it, or the process that started this one already did and hands over
 * a connected socket as an inherited fd: native/pn-cni.c, the executable a runtime runs, starts
 * both helpers next to Node when no agent answers, so a standalone call pays for neither start
 * nor a fork() of a grown Node process (which on a VM copies and write-protects every page
 * table of the heap).
 */
import {closeSync, readSync, writeSync} from 'node:fs'
import {spawn} from './child-process.js'
import {sys} from './sys.js'

export interface HelperProcess {
  /**
   * Send a request. `answered`, for a request that gets an answer, says when its answer has
   * arrived (through `onData`): an adopted helper's link waits for it right here.
   */
  /**
   * Send a request. An adopted helper waits for its answer right here (`answered`); with `gaveUp`
   * it looks every millisecond whether the caller no longer needs to wait, and returns then (the
   * answer is read with the next request's, or never).
   */
  send(data: Buffer | string, answered?: () => boolean, gaveUp?: () => boolean): void
  /** Answers, as they arrive. Set once, before the first send. */
  onData(cb: (d: Buffer) => void): void
  /** End the helper's input: it exits (and drops what it held). */
  end(): void
  /**
   * End a helper that broke its protocol (an answer over a limit, a malformed header): a spawned
   * one is killed, an adopted one's socket closed. `gone` then resolves with `why`.
   */
  kill(why: string): void
  /** Set for a helper this process spawned. */
  readonly pid?: number
  /** Resolves once the helper is gone (it exited, or its socket closed): why, for errors. */
  readonly gone: Promise<string>
  /** Resolves when it started (spawned and exec'd); rejects when it could not be. */
  readonly started: Promise<void>
}

/** Spawn `binary` with pipes; its stderr is read and dropped (the answers say what failed). */
export function spawnHelper(binary: string): HelperProcess {
  const child = spawn(binary, [], {stdio: ['pipe', 'pipe', 'pipe']})
  child.stdin.on('error', () => undefined)
  child.stderr.on('data', () => undefined)
  const started = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
  let killedFor: string | undefined
  const gone = new Promise<string>((resolve) => {
    child.once('error', (e) => resolve(e.message))
    child.once('exit', (code, signal) => resolve(killedFor ?? `exited (${signal ?? `code ${code}`})`))
  })
  return {
    send: (data) => void child.stdin.write(data),
    onData: (cb) => void child.stdout.on('data', cb),
    end: () => void child.stdin.end(),
    kill: (why) => {
      killedFor ??= why
      child.kill('SIGKILL')
    },
    pid: child.pid,
    gone,
    started,
  }
}

/**
 * Adopt a helper the parent process started: `fd` is this end of a connected, blocking UNIX
 * socket whose other end is the helper's stdin and stdout. Requests and answers are synchronous
 * read(2)/write(2) on it: a standalone pn-cni has nothing else to do while a helper works, and
 * this spares it the stream machinery (node:net and node:stream, ≈ 3 ms to load) and an event
 * loop turn per answer; a signal that arrives while a request waits is handled right after.
 * Closing the fd (or this process's exit) is the helper's EOF, so it ends as a spawned one does.
 */
export function adoptHelper(fd: number): HelperProcess {
  let deliver: (d: Buffer) => void = () => undefined
  let settle!: (why: string) => void
  let open = true
  const gone = new Promise<string>((resolve) => (settle = resolve))
  const close = (why: string) => {
    if (!open) return
    open = false
    try {
      closeSync(fd)
    } catch {
      // already closed
    }
    settle(why)
  }
  const buf = Buffer.allocUnsafe(64 * 1024)
  return {
    send(data, answered, gaveUp) {
      if (!open) return
      try {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
        for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off)
        while (answered && !answered() && open) {
          if (gaveUp && !sys().readable(fd, 1)) {
            if (gaveUp()) return
            continue
          }
          const n = readSync(fd, buf, 0, buf.length, null)
          if (n === 0) return close('its socket closed')
          deliver(Buffer.from(buf.subarray(0, n)))
        }
      } catch (err) {
        close((err as Error).message)
      }
    },
    onData: (cb) => void (deliver = cb),
    end: () => close('ended'),
    kill: (why) => close(why),
    gone,
    started: Promise.resolve(),
  }
}
