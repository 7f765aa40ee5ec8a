/**
 * oclif's command_not_found hook: a word that names no command (`pn endpiont list`, `pn service
 * remove`) or a word after a command that takes none (`pn status extra`) gets pn's error — the
 * envelope with --json, error/hint lines otherwise, a "did you mean", exit 2 — instead of
 * oclif's bare "command … not found".
 */
import type {Hook} from '@oclif/core'
import {PnError} from '../../errors.js'
import {reportError, unknownCommandError} from '../usage.js'

const hook: Hook<'command_not_found'> = async function (opts) {
  const config = opts.config
  const argsOf = (id: string) => {
    const names = Object.keys(config.findCommand(id)?.args ?? {}).map((a) => a.toUpperCase())
    return names.length ? names.join(' ') : undefined
  }
  const commands = config.commands.flatMap((c) => [c.id, ...(c.aliases ?? [])])
  const pe: PnError = unknownCommandError(opts.id, {commands, topics: config.topics.map((t) => t.name), argsOf})
  reportError(pe, (opts.argv ?? []).includes('--json') || process.argv.includes('--json'))
  process.exitCode = pe.exitCode
}

export default hook
