import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {REPO_ROOT} from '../helpers/cli.js'

/** Every command file under dist/commands (path = command id). */
function commandFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (statSync(p).isDirectory()) return commandFiles(p)
    return p.endsWith('.js') ? [p] : []
  })
}

describe('every command documents itself', () => {
  const root = path.join(REPO_ROOT, 'dist/commands')
  const files = commandFiles(root)

  it('finds the commands of every topic', () => {
    const topics = new Set(files.map((f) => path.relative(root, f).split(path.sep)[0]))
    for (const t of ['pool', 'ipam', 'node', 'veth', 'endpoint', 'bpf', 'cni', 'bgp', 'service', 'agent']) assert.ok(topics.has(t), `topic ${t}`)
  })

  it('has a summary and examples, one of them with --json, and supports --json', async () => {
    for (const file of files) {
      const id = path.relative(root, file).replace(/\.js$/, '').split(path.sep).join(' ')
      const cmd = (await import(pathToFileURL(file).href)).default as {
        summary?: string
        examples?: (string | {command: string})[]
        enableJsonFlag?: boolean
      }
      assert.ok(cmd.summary && cmd.summary.length > 10, `pn ${id}: summary`)
      const examples = (cmd.examples ?? []).map((e) => (typeof e === 'string' ? e : e.command))
      assert.ok(examples.length >= 1, `pn ${id}: examples`)
      assert.ok(examples.some((e) => e.includes('--json')), `pn ${id}: an example with --json`)
      assert.equal(cmd.enableJsonFlag, true, `pn ${id}: --json`)
    }
  })

  it('is not hard-wrapped: a line break in help text only ends a paragraph', () => {
    const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, {summary?: string; description?: string; flags: Record<string, {summary?: string; description?: string}>; args?: Record<string, {description?: string}>}>
    }
    const bad: string[] = []
    const check = (where: string, text?: string) => {
      // A newline is fine only as a paragraph break (an empty line); oclif wraps the rest to the terminal.
      if (text && /[^\n]\n[^\n]/.test(text)) bad.push(`${where}: ${JSON.stringify(text.slice(0, 80))}`)
    }
    for (const [id, c] of Object.entries(manifest.commands)) {
      check(`${id} summary`, c.summary)
      check(`${id} description`, c.description)
      for (const [n, f] of Object.entries(c.flags)) check(`${id} --${n}`, `${f.summary ?? ''}${f.description ?? ''}`)
      for (const [n, a] of Object.entries(c.args ?? {})) check(`${id} ${n}`, a.description)
    }
    assert.deepEqual(bad, [])
  })
})
