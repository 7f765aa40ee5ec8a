/**
 * Input pn cannot parse, in pn's words. oclif's parse errors (missing flag, unknown flag, extra
 * word, bad value) and words that name no command become one PnError each that names the
 * offending input, offers the closest known word ("did you mean"), and points at --help.
 * Used by the base command (parse errors) and the command_not_found hook (unknown words).
 */
import chalk from 'chalk'
import {editDistance as distance, PnError} from '../errors.js'

/** `pool:init` → `pn pool init`. */
export function spoken(id: string): string {
  return ['pn', ...id.split(':').filter(Boolean)].join(' ')
}

/** The candidate closest to `word`, if it is close enough to be a likely typo (or a prefix of it). */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const d = c.startsWith(word) || word.startsWith(c) ? Math.min(1, distance(word, c)) : distance(word, c)
    if (d < bestD) [best, bestD] = [c, d]
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined
}

/** What a command offers to the parser: its flag names (with aliases) and positional args. */
export interface CommandShape {
  id: string
  flags: Record<string, {char?: string; aliases?: string[]}>
  args?: Record<string, unknown>
}

interface OclifParseError extends Error {
  flags?: string[]
  args?: (string | {name: string})[]
}

/** One oclif parse error → PN_INVALID_ARGUMENT naming the flag or word (details: flags, args). */
export function parseError(err: OclifParseError, cmd: CommandShape): PnError {
  const help = `see \`${spoken(cmd.id)} --help\``
  const fail = (cause: string, details: {flags?: string[]; args?: string[]}, hint = help) =>
    new PnError('PN_INVALID_ARGUMENT', `parse arguments: ${cause}`, {hint, details})
  const kind = err.constructor?.name
  const flagNames = Object.entries(cmd.flags).flatMap(([name, f]) => [name, ...(f.aliases ?? [])])
  if (kind === 'NonExistentFlagsError' && err.flags?.length) {
    const names = err.flags.map((f) => f.replace(/=.*$/, ''))
    const guess = closest(names[0].replace(/^-+/, ''), flagNames)
    const hint = guess ? `did you mean --${guess}? ${help}` : help
    return fail(`unknown flag${names.length === 1 ? '' : 's'} ${names.join(', ')}`, {flags: names}, hint)
  }
  if (kind === 'UnexpectedArgsError' && err.args?.length) {
    const words = err.args.map(String)
    return fail(`unexpected argument${words.length === 1 ? '' : 's'} ${words.map((w) => `"${w}"`).join(', ')} (${spoken(cmd.id)} takes ${argList(cmd)})`, {args: words})
  }
  if (kind === 'RequiredArgsError') {
    const names = (err.args ?? []).map((a) => (typeof a === 'string' ? a : a.name).toUpperCase())
    return fail(`missing required argument${names.length === 1 ? '' : 's'} ${names.join(', ')}`, {args: names}, `${spoken(cmd.id)} ${names.join(' ')}; ${help}`)
  }
  const lines = err.message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== 'See more help with --help')
  if (kind === 'FailedFlagValidationError') {
    // "The following error occurred:" then one reason a line, e.g. "Missing required flag netns".
    const reasons = lines.slice(1).map((l) => stripAnsi(l))
    const missing = reasons.flatMap((r) => /^Missing required flag (\S+)$/.exec(r)?.[1] ?? []).map((n) => `--${n}`)
    const other = reasons.filter((r) => !/^Missing required flag /.test(r)).map(lowerFirst)
    const causes = [...(missing.length ? [`missing required flag${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`] : []), ...other]
    return fail(causes.join('; ') || 'invalid flags', {flags: missing.length ? missing : flagsIn(other.join(' '))})
  }
  // "Parsing --mask-size" + the reason, "Expected --x=y to be one of: …", "Flag --x expects a value".
  const parsing = /^Parsing (--\S+)/.exec(lines[0] ?? '')
  if (parsing) return fail(`${parsing[1]}: ${lowerFirst(lines.slice(1).join('; ') || 'invalid value')}`, {flags: [parsing[1]]})
  const text = lowerFirst(lines.join('; ').replace(/^Error: /, ''))
  return fail(text || 'invalid input', {flags: flagsIn(text)})
}

/** A word that names no command: the longest command it starts with takes no more words, or the topic has no such verb. */
export function unknownCommandError(id: string, known: {commands: string[]; topics: string[]; argsOf: (id: string) => string | undefined}): PnError {
  const words = id.split(':').filter(Boolean)
  if (words.length === 1 && words[0].startsWith('-')) {
    return new PnError('PN_INVALID_ARGUMENT', `parse arguments: unknown flag ${words[0]} (a command comes first: pn TOPIC VERB [--flag …])`, {
      hint: 'see `pn --help`',
      details: {flags: [words[0]]},
    })
  }
  const commands = new Set(known.commands)
  for (let n = words.length - 1; n >= 1; n--) {
    const head = words.slice(0, n).join(':')
    if (!commands.has(head)) continue
    const extra = words.slice(n)
    return new PnError('PN_INVALID_ARGUMENT', `parse arguments: unexpected argument${extra.length === 1 ? '' : 's'} ${extra.map((w) => `"${w}"`).join(', ')} (${spoken(head)} takes ${known.argsOf(head) ?? 'no arguments'})`, {
      hint: `see \`${spoken(head)} --help\``,
      details: {args: extra, command: spoken(head)},
    })
  }
  // The longest known topic the words start with, then the word after it is the unknown one.
  let n = 0
  while (n < words.length && known.topics.includes(words.slice(0, n + 1).join(':'))) n++
  const topic = words.slice(0, n).join(':')
  const word = words[n] ?? ''
  const siblings = known.commands.filter((c) => (topic ? c.startsWith(`${topic}:`) : true)).map((c) => spoken(c))
  const tried = spoken(words.slice(0, n + 1).join(':'))
  const guess = closest(spoken(words.join(':')), siblings) ?? closest(tried, siblings)
  const help = `see \`${topic ? spoken(topic) : 'pn'} --help\``
  return new PnError('PN_UNKNOWN_COMMAND', `run ${tried}: unknown command "${word}"`, {
    hint: guess ? `did you mean \`${guess}\`? ${help}` : help,
    details: {args: [word], ...(guess ? {suggestion: guess} : {})},
  })
}

/** Print a PnError the one way pn does: the JSON envelope on stdout, or error/hint lines on stderr. */
export function reportError(pe: PnError, json: boolean, warnings: string[] = []): void {
  if (json) {
    process.stdout.write(JSON.stringify({status: 'error', error: pe.toJSON(), warnings}, null, 2) + '\n')
    return
  }
  process.stderr.write(chalk.red(`error: ${pe.message}`) + chalk.dim(` [${pe.code}]`) + '\n')
  if (pe.hint) process.stderr.write(chalk.cyan(`hint: ${pe.hint}\n`))
}

function argList(cmd: CommandShape): string {
  const names = Object.keys(cmd.args ?? {}).map((a) => a.toUpperCase())
  return names.length === 0 ? 'no arguments' : names.join(' ')
}

function flagsIn(text: string): string[] {
  return [...new Set(text.match(/--[a-z][\w-]*/g) ?? [])]
}

function lowerFirst(s: string): string {
  return s.length > 1 && /^[A-Z][a-z]/.test(s) ? s[0].toLowerCase() + s.slice(1) : s
}

function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex -- oclif dims the reasons with ANSI escapes
  return s.replace(/\u001B\[[0-9;]*m/g, '')
}
