/**
 * Walks every command in the oclif manifest with input that fails at parse time — a missing
 * required flag or argument, an unknown flag, an extra word — with and without --json. Each answer
 * must be pn's: the error envelope on stdout (or `error: … [PN_…]` + `hint:` on stderr), naming the
 * offending flag or word, with the exit code docs/CLI.md gives the error code. Nothing here needs
 * root: oclif rejects the input before a command runs.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {EXIT, ERROR_CODES, type ErrorCode} from '../../src/errors.js'
import {pnAsync, REPO_ROOT, type CliResult} from '../helpers/cli.js'

interface ManifestCommand {
  id: string
  aliases?: string[]
  args?: Record<string, {required?: boolean}>
  flags: Record<string, {required?: boolean; type: string; options?: string[]}>
}

const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, ManifestCommand>}
const commands = Object.values(manifest.commands).sort((a, b) => a.id.localeCompare(b.id))
const docs = readFileSync(path.join(REPO_ROOT, 'docs/CLI.md'), 'utf8')

interface Case {
  title: string
  argv: string[]
  /** What the message (or details) must name. */
  names: string
  code: ErrorCode
}

const words = (c: ManifestCommand) => c.id.split(':')
/** A placeholder for each required positional, so only the thing under test is wrong. */
const requiredArgs = (c: ManifestCommand) => Object.entries(c.args ?? {}).filter(([, a]) => a.required).map(() => 'x')
const requiredFlags = (c: ManifestCommand) => Object.entries(c.flags).filter(([, f]) => f.required).map(([n]) => n)

function casesOf(c: ManifestCommand): Case[] {
  const out: Case[] = []
  const flags = requiredFlags(c)
  const args = Object.entries(c.args ?? {}).filter(([, a]) => a.required)
  if (args.length > 0) out.push({title: 'a missing argument', argv: [...words(c)], names: args[0][0].toUpperCase(), code: 'PN_INVALID_ARGUMENT'})
  else if (flags.length > 0) out.push({title: 'a missing required flag', argv: [...words(c), ...requiredArgs(c)], names: `--${flags[0]}`, code: 'PN_INVALID_ARGUMENT'})
  out.push({title: 'an unknown flag', argv: [...words(c), ...requiredArgs(c), '--no-such-flag'], names: '--no-such-flag', code: 'PN_INVALID_ARGUMENT'})
  // Every positional filled, then one word too many.
  const positionals = Object.keys(c.args ?? {}).map(() => 'x')
  out.push({title: 'an extra word', argv: [...words(c), ...positionals, 'extraword'], names: 'extraword', code: 'PN_INVALID_ARGUMENT'})
  return out
}

/** Run many CLI calls a few at a time (the machine is shared; each call is a node start). */
async function runAll<T>(jobs: (() => Promise<T>)[], parallel = 6): Promise<T[]> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  await Promise.all(Array.from({length: parallel}, async () => {
    while (next < jobs.length) {
      const i = next++
      results[i] = await jobs[i]()
    }
  }))
  return results
}

function documentedExit(code: ErrorCode): number {
  const row = new RegExp(`^\\| \`${code}\` \\| (\\d+) \\(`, 'm').exec(docs)
  assert.ok(row, `${code} is in the error table of docs/CLI.md`)
  return Number(row[1])
}

describe('every command answers bad input in pn\'s words (cli walk)', function () {
  this.timeout(240_000)
  const env = {PN_STATE_DIR: '/nonexistent/pn-cli-walk', PN_POOL: '/nonexistent/pn-cli-walk/pool.json'}
  const all = commands.flatMap((c) => casesOf(c).map((k) => ({c, k})))
  // The human form shares every line of code with --json but the printing: one command per topic suffices.
  const topics = new Map<string, ManifestCommand>()
  for (const c of commands) if (!topics.has(words(c)[0]) || casesOf(c).length > casesOf(topics.get(words(c)[0])!).length) topics.set(words(c)[0], c)
  const sample = all.filter(({c}) => topics.get(words(c)[0]) === c)
  let json: CliResult[] = []
  let human: CliResult[] = []

  before(async () => {
    const results = await runAll([...all.map(({k}) => () => pnAsync([...k.argv, '--json'], {env})), ...sample.map(({k}) => () => pnAsync(k.argv, {env}))])
    json = results.slice(0, all.length)
    human = results.slice(all.length)
  })

  it('walks all commands of the manifest', () => {
    assert.ok(commands.length >= 40, `${commands.length} commands`)
    // Every command has at least the unknown-flag and extra-word cases; those with required input one more.
    assert.equal(all.length, commands.reduce((n, c) => n + casesOf(c).length, 0))
    assert.ok(all.some(({k}) => k.title === 'a missing required flag') && all.some(({k}) => k.title === 'a missing argument'))
  })

  it('--json: one error envelope on stdout naming the input, the documented exit code', () => {
    const bad: string[] = []
    all.forEach(({c, k}, i) => {
      const r = json[i]
      const where = `pn ${k.argv.join(' ')} --json (${c.id}: ${k.title})`
      if (r.json?.status !== 'error') return bad.push(`${where}: not an error envelope: ${r.stdout.slice(0, 200)} ${r.stderr.slice(0, 200)}`)
      const e = r.json.error as {code: ErrorCode; message: string; hint?: string; details?: unknown}
      if (e.code !== k.code) bad.push(`${where}: code ${e.code}`)
      const details = JSON.stringify(e.details ?? {})
      if (!e.message.includes(k.names) || !details.includes(k.names)) bad.push(`${where}: message/details do not name ${k.names}: ${e.message} ${details}`)
      if (!e.hint?.includes('--help')) bad.push(`${where}: hint without --help: ${e.hint}`)
      if (r.status !== documentedExit(e.code) || r.status !== EXIT[ERROR_CODES[e.code].exit]) bad.push(`${where}: exit ${r.status}`)
      if (r.stderr.trim() !== '') bad.push(`${where}: stderr not empty: ${r.stderr.slice(0, 200)}`)
    })
    assert.deepEqual(bad, [])
  })

  it('without --json (one command per topic): error and hint lines on stderr, nothing on stdout, the same exit code', () => {
    const bad: string[] = []
    assert.ok(sample.length >= 25, `${sample.length} cases`)
    sample.forEach(({c, k}, i) => {
      const r = human[i]
      const where = `pn ${k.argv.join(' ')} (${c.id}: ${k.title})`
      const m = /^error: (.*) \[(PN_[A-Z_]+)\]\nhint: .*--help.*\n$/.exec(r.stderr)
      if (!m) return bad.push(`${where}: stderr is not pn's error: ${JSON.stringify(r.stderr.slice(0, 300))}`)
      if (m[2] !== k.code || !m[1].includes(k.names)) bad.push(`${where}: ${m[2]} ${m[1]}`)
      if (r.stdout !== '') bad.push(`${where}: stdout: ${r.stdout.slice(0, 200)}`)
      if (r.status !== EXIT.usage) bad.push(`${where}: exit ${r.status}`)
    })
    assert.deepEqual(bad, [])
  })
})
