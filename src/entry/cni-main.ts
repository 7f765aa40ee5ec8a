/**
 * The `pn-cni` entry (what `bin/pn-cni` runs): read stdin, run one CNI command, print only the
 * result or the error on stdout. Logs go to stderr, or to the netconf's `logFile` once it is
 * known. Like the CLI, it is an entry: it reads the environment (./env.ts) and hands the library
 * plain options. Imports only src/cni and the libraries it composes — never oclif — so a
 * runtime's exec stays cheap.
 */
import {appendFileSync} from 'node:fs'
import {versionResult} from '../cni/version.js'

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return ''
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
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
    process.stderr.write(line)
  }
  let stdin = ''
  try {
    stdin = await readStdin()
  } catch (err) {
    const body = {code: 5, msg: `read stdin: ${(err as Error).message}`, details: 'PN_CNI_IO'}
    process.stdout.write(JSON.stringify(body, null, 4) + '\n')
    return 1
  }
  if (env.CNI_COMMAND === 'VERSION') {
    // Answered before loading the flows (and execa): runtimes probe VERSION often.
    process.stdout.write(JSON.stringify(versionResult(stdin)) + '\n')
    return 0
  }
  const [{SpawnRunner}, {defaultHandlers}, {runProtocol}, {interruptOnSignals}, {entryOptions}] = await Promise.all([
    import('../exec/runner.js'),
    import('../cni/handlers.js'),
    import('../cni/protocol.js'),
    import('./signals.js'),
    import('./env.js'),
  ])
  // A runtime that gives up on us (SIGTERM) gets an ADD that unwinds, not a half-made pod.
  const interrupt = interruptOnSignals()
  const opts = entryOptions(env, (line) => process.stderr.write(line))
  const out = await runProtocol({
    env,
    stdin,
    defaults: {stateDir: opts.stateDir, signal: interrupt.signal, lock: opts.lock, flow: opts.flow, failAfter: opts.failAfter},
    // PN_TRACE_EXEC=1 logs every command the plugin spawns (to the log file or stderr).
    runner: new SpawnRunner(opts.traceExec ? (argv) => log(`exec: ${argv.join(' ')}`) : undefined),
    handlers: defaultHandlers,
    log,
    onConf: (conf) => {
      logFile = conf.logFile
    },
  })
  process.stdout.write(out.stdout)
  if (out.command !== 'VERSION') log(`exit ${out.exitCode} after ${Date.now() - started} ms`)
  return out.exitCode
}
