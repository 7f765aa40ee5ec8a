/**
 * `--dry-run` for a command: the flow runs against a scratch copy of the state dir (so node.json,
 * ipam.json and records may change there, not here) and a DryRunRunner (so the kernel is read,
 * never changed). What comes back is the exact list of `ip`/`tc`/`bpftool`/`sysctl` commands and
 * folder changes the flow would have made, in order — run by hand, they build the same state.
 */
import {promises as fs} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {DryRunRunner} from '../exec/dry-run.js'
import type {Runner} from '../exec/runner.js'

export interface DryRunResult<T> {
  dryRun: true
  /** What would run, in order (batch input shown as a here-document). */
  commands: string[]
  /** What the command would have returned. */
  result: T
}

/** Run `fn` against a scratch copy of `stateDir` and the dry-run runner over `runner`. */
export async function dryRun<T>(
  runner: Runner,
  stateDir: string,
  fn: (ctx: {runner: Runner; stateDir: string; scratch: (file: string) => Promise<string>}) => Promise<T>,
): Promise<DryRunResult<T>> {
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'pn-dry-run-'))
  const state = path.join(scratch, 'state')
  try {
    await fs.cp(stateDir, state, {recursive: true}).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
      await fs.mkdir(state)
    })
    // Files outside the state dir the flow would change (a pool file) get a scratch copy too.
    const copies = new Map<string, string>()
    const copy = async (file: string): Promise<string> => {
      const to = path.join(scratch, `file-${copies.size}-${path.basename(file)}`)
      await fs.copyFile(file, to).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err
      })
      copies.set(to, file)
      return to
    }
    const rec = new DryRunRunner(runner)
    const result = await fn({runner: rec, stateDir: state, scratch: copy})
    // Show the real paths, not the scratch ones.
    let text = JSON.stringify({commands: rec.lines(), result})
    for (const [to, from] of copies) text = text.replaceAll(to, from)
    text = text.replaceAll(state, stateDir)
    const out = JSON.parse(text) as {commands: string[]; result: T}
    return {dryRun: true, commands: out.commands, result: out.result}
  } finally {
    await fs.rm(scratch, {recursive: true, force: true})
  }
}

/** Human text of a dry run. */
export function renderDryRun(r: DryRunResult<unknown>): string {
  if (r.commands.length === 0) return 'dry run: nothing to change'
  return ['dry run: would run', ...r.commands.map((c) => `  ${c.replaceAll('\n', '\n  ')}`)].join('\n')
}
