/** Run the real `pn` CLI as a child process (what users and labs do). */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
export const PN_BIN = path.join(REPO_ROOT, 'bin/run.js')

export interface CliResult {
  status: number
  stdout: string
  stderr: string
  json?: {status: string; result?: any; error?: {code: string; message: string; hint?: string}; warnings?: string[]}
}

function parse(status: number | null, stdout: string, stderr: string): CliResult {
  let json
  try {
    json = JSON.parse(stdout)
  } catch {
    json = undefined
  }
  return {status: status ?? 1, stdout, stderr, json}
}

/** Synchronous run; pass --json yourself when you want `json`. */
export function pn(args: string[], opts: {env?: NodeJS.ProcessEnv; netns?: string; input?: string} = {}): CliResult {
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, process.execPath, PN_BIN, ...args] : [process.execPath, PN_BIN, ...args]
  const r = spawnSync(argv[0], argv.slice(1), {encoding: 'utf8', env: {...process.env, NO_COLOR: '1', ...opts.env}, input: opts.input})
  return parse(r.status, r.stdout ?? '', r.stderr ?? '')
}

/** Asynchronous run, for concurrency tests. */
export function pnAsync(args: string[], opts: {env?: NodeJS.ProcessEnv; netns?: string} = {}): Promise<CliResult> {
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, process.execPath, PN_BIN, ...args] : [process.execPath, PN_BIN, ...args]
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {env: {...process.env, NO_COLOR: '1', ...opts.env}})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve(parse(code, stdout, stderr)))
  })
}

/** The result of a pn call that must succeed (its `--json` envelope's `result`); the assertion names `what`. */
export function ok(r: CliResult, what: string) {
  assert.equal(r.status, 0, `${what} failed: ${r.stdout} ${r.stderr}`)
  return r.json?.result
}
