/**
 * The `pn-cni` entry (what `bin/pn-cni` runs): read stdin, run one CNI command, print only the
 * result or the error on stdout. Logs go to stderr, or to the netconf's `logFile` once it is
 * known. Like the CLI, it is an entry: it reads the environment (./env.ts) and hands the library
 * plain options. Imports only src/cni and the libraries it composes — never oclif — so a
 * runtime's exec stays cheap.
 */
import {appendFileSync, fstatSync, readSync, writeSync} from 'node:fs'
import path from 'node:path'
import {versionResult} from '../cni/version.js'

/**
 * The netconf. A runtime gives a pipe or a file: read(2) until EOF, which spares the stdin stream
 * (a net.Socket) its set-up. A character device (a terminal gives nothing; /dev/null) and a
 * non-blocking pipe with no data yet (EAGAIN) are read as the stream.
 */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  let stream = fstatSync(0).isCharacterDevice()
  if (!stream) {
    try {
      const buf = Buffer.allocUnsafe(64 * 1024)
      for (let n; (n = readSync(0, buf, 0, buf.length, null)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
      stream = true
    }
  }
  if (stream) {
    if (process.stdin.isTTY) return ''
    for await (const c of process.stdin) chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * All of `text` to fd 1 or 2 with write(2), not process.stdout/stderr: for a pipe those are
 * net.Sockets, and loading node:net and its streams costs a standalone call ≈ 3 ms. A
 * non-blocking pipe that is full is waited for; a reader that is gone (EPIPE) gets nothing.
 */
function writeAll(fd: 1 | 2, text: string): void {
  const bytes = Buffer.from(text, 'utf8')
  for (let off = 0; off < bytes.length; ) {
    try {
      off += writeSync(fd, bytes, off)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EPIPE') return
      if (code !== 'EAGAIN') throw err
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }
}

export async function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const started = Date.now()
  let logFile: string | undefined
  const prefix = () => `${new Date().toISOString()} pn-cni[${process.pid}] ${env.CNI_COMMAND ?? '-'} ${env.CNI_CONTAINERID ?? '-'}:${env.CNI_IFNAME ?? '-'}`
  const log = (msg: string) => {
    const line = `${prefix()} ${msg}\n`
    if (logFile) {
      try {
        appendFileSync(logFile, line)
        return
      } catch {
        // fall back to stderr when the log file cannot be written
      }
    }
    writeAll(2, line)
  }
  let stdin = ''
  try {
    stdin = await readStdin()
  } catch (err) {
    const body = {code: 5, msg: `read stdin: ${(err as Error).message}`, details: 'PN_CNI_IO'}
    writeAll(1, JSON.stringify(body, null, 4) + '\n')
    return 1
  }
  if (env.CNI_COMMAND === 'VERSION') {
    // Answered before loading the flows (and execa): runtimes probe VERSION often.
    writeAll(1, JSON.stringify(versionResult(stdin)) + '\n')
    return 0
  }
  if (env.PN_AGENT_OP === 'service') {
    // A service change sent through the client while no agent answered: the same request, in-process.
    const [{SpawnRunner}, {answerServiceRequest}, {entryOptions, requestStateDir}, {DEFAULT_STATE_DIR}] = await Promise.all([
      import('../exec/runner.js'),
      import('../service/request.js'),
      import('./env.js'),
      import('../state/files.js'),
    ])
    const opts = entryOptions(env)
    // The state dir as the agent takes it (not JSON: the default; answerServiceRequest reports it).
    const stateDir = requestStateDir(stdin, env) ?? path.resolve(env.PN_STATE_DIR || DEFAULT_STATE_DIR)
    const out = await answerServiceRequest(new SpawnRunner(), stateDir, stdin, {lock: opts.lock})
    writeAll(1, out.stdout)
    return out.exitCode
  }
  const [{SpawnRunner}, {defaultHandlers}, {runProtocol}, {interruptOnSignals}, {entryOptions}, native, {NetlinkWorker, WorkerRunner}] = await Promise.all([
    import('../exec/runner.js'),
    import('../cni/handlers.js'),
    import('../cni/protocol.js'),
    import('./signals.js'),
    import('./env.js'),
    import('./native.js'),
    import('../exec/netlink-worker.js'),
  ])
  // A runtime that gives up on us (SIGTERM) gets an ADD that unwinds, not a half-made pod.
  const interrupt = interruptOnSignals()
  const opts = entryOptions(env, (line) => writeAll(2, line))
  // PN_TRACE_EXEC=1 logs every command the plugin spawns (to the log file or stderr).
  const spawner = new SpawnRunner(opts.traceExec ? (argv) => log(`exec: ${argv.join(' ')}`) : undefined)
  // One helper process for the kernel commands instead of a process per command (each costs
  // 10–50 ms). native/pn-cni.c starts it next to this process and passes its socket; otherwise it
  // is spawned on first use. Without a built helper the commands are processes as before. Locks
  // need no helper: this process holds them (src/exec/flock.ts).
  // PN_KERNEL=tools: no worker, the kernel ops run as ip and tc processes (an inherited worker
  // sees its socket close when this process exits, and ends).
  const netlink = opts.kernel === 'tools' ? undefined : opts.helperFds.netlink !== undefined ? native.NETLINK_BINARY : native.builtHelper(native.NETLINK_BINARY)
  const worker = netlink ? new NetlinkWorker(netlink, opts.helperFds.netlink) : undefined
  let out
  try {
    out = await runProtocol({
      env,
      stdin,
      defaults: {stateDir: opts.stateDir, signal: interrupt.signal, lock: opts.lock, flow: opts.flow, failAfter: opts.failAfter},
      // A DEL's veth deletion is answered once the device is gone, not after the kernel's RCU
      // barrier that frees it (src/kernel/native.ts): the worker finishes it after this process
      // has answered and exited.
      runner: worker
        ? new WorkerRunner(spawner, worker, opts.traceExec ? (line) => log(`netlink: ${line}`) : undefined, {
          onLateFailure: (what, why) => log(`${what}: answered once the link was gone, then failed: ${why}`),
        })
        : spawner,
      handlers: defaultHandlers,
      log,
      onConf: (conf) => {
        logFile = conf.logFile
      },
    })
  } finally {
    // Closing its stdin ends the helper. Not waited for (a few ms): bin/pn-cni exits once the
    // answer is written, and the helper exits on its own at the end of its input.
    void worker?.stop()
  }
  writeAll(1, out.stdout)
  if (out.command !== 'VERSION') log(`exit ${out.exitCode} after ${Date.now() - started} ms`)
  return out.exitCode
}
