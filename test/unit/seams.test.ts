import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {requestEnv, TEST_HOOK_VARS} from '../../src/entry/agent-main.js'
import {REPO_ROOT} from '../helpers/cli.js'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (statSync(p).isDirectory()) return sources(p)
    return p.endsWith('.ts') ? [p] : []
  })
}

interface Source {
  rel: string
  text: string
}

/**
 * The layers of docs/ARCHITECTURE.md, lowest first. A module may import only from a lower rank
 * (or from itself); modules of one rank do not import each other.
 */
export const LAYERS: Record<string, number> = {
  'src/errors.ts': 0,
  'src/exec': 1,
  'src/cidr': 1,
  'src/state': 2,
  'src/kernel': 2,
  'src/flow': 3,
  'src/policy': 3,
  'src/datapath': 4,
  'src/ipam': 4,
  'src/endpoint': 5,
  'src/node': 6,
  'src/cni': 7,
  'src/routing': 7,
  'src/service': 7,
  'src/agent': 7,
  'src/cluster': 8,
  'src/entry': 9,
  'src/cli': 10,
  commands: 11,
}

export function moduleOf(rel: string): string | undefined {
  if (rel === 'src/errors.ts') return rel
  const parts = rel.split('/')
  if (parts[0] === 'commands') return 'commands'
  if (parts[0] === 'src' && parts.length > 2) return `src/${parts[1]}`
  return undefined
}

/** Every import that points up or sideways, as `from → to`. */
export function layerViolations(files: Source[]): string[] {
  const out: string[] = []
  for (const f of files) {
    const from = moduleOf(f.rel)
    if (!from) continue
    for (const m of f.text.matchAll(/(?:from\s+|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = path.normalize(path.join(path.dirname(f.rel), m[1])).replace(/\.js$/, '.ts')
      const to = moduleOf(target)
      if (!to || to === from) continue
      if (LAYERS[to] === undefined || LAYERS[from] === undefined) {
        out.push(`${f.rel} → ${target} (module not in the layer table)`)
      } else if (LAYERS[to] >= LAYERS[from]) {
        out.push(`${f.rel} → ${target} (${from} may not import ${to})`)
      }
    }
  }
  return out
}

/** The layering rules of docs/ARCHITECTURE.md ("Layers"), checked on the sources. */
describe('module seams', () => {
  const files: Source[] = [...sources(path.join(REPO_ROOT, 'src')), ...sources(path.join(REPO_ROOT, 'commands'))].map((f) => ({
    rel: path.relative(REPO_ROOT, f),
    text: readFileSync(f, 'utf8'),
  }))

  it('imports point one way: commands → cli → entry → cni/node … → endpoint → datapath, ipam → flow → state → exec, cidr → errors', () => {
    assert.deepEqual(layerViolations(files), [])
  })

  it('the layer check catches an import that points up or sideways', () => {
    const bad = [
      {rel: 'src/datapath/bpf/load.ts', text: "import {NodeContext} from '../../node/context.js'"},
      {rel: 'src/ipam/host.ts', text: "import type {VethResult} from '../datapath/veth.js'"},
      {rel: 'src/state/files.ts', text: "const m = await import('../cli/base.js')"},
      {rel: 'src/node/init.ts', text: "import {x} from '../datapath/host.js'"},
    ]
    assert.deepEqual(layerViolations(bad), [
      'src/datapath/bpf/load.ts → src/node/context.ts (src/datapath may not import src/node)',
      'src/ipam/host.ts → src/datapath/veth.ts (src/ipam may not import src/datapath)',
      'src/state/files.ts → src/cli/base.ts (src/state may not import src/cli)',
    ])
  })

  it('only src/kernel reads a tool\'s error text or builds ip, tc and bpftool lines', () => {
    // src/exec/dry-run.ts writes tc's answer to a second clsact (it simulates the kernel), never reads it.
    const readsErrors = files.filter((f) => !f.rel.startsWith('src/kernel/') && f.rel !== 'src/exec/dry-run.ts' &&
      /Cannot find device|Command failed -:|RTNETLINK answers|Exclusivity flag on|Parent Qdisc|filter chain/.test(f.text))
    assert.deepEqual(readsErrors.map((f) => f.rel), [])
    // src/exec sees argv by design (the runner under the tools backend; --dry-run's simulation of links).
    const buildsLines = files.filter((f) => !f.rel.startsWith('src/kernel/') && !f.rel.startsWith('src/exec/') &&
      /`(link (add|set|del)|addr (add|del|replace)|route (add|del|replace)|neigh (add|replace)|qdisc (add|del)|filter (add|replace|del)|map (update|delete)) /.test(f.text))
    assert.deepEqual(buildsLines.map((f) => f.rel), [])
  })

  it('only src/kernel runs ip, tc and bpftool; the rest of pn applies kernel ops', () => {
    // What has no kernel op yet, each with its reason. An entry that no longer runs a tool fails
    // below, so the list only shrinks.
    const notOps: Record<string, string> = {
      'src/datapath/bpf/compile.ts': 'bpftool gen object: links the compiled units into one object (a build step)',
      'src/datapath/bpf/status.ts': 'bpftool net show and prog show of every program (ids, run counts) for `pn bpf status`',
      'src/datapath/bpf/monitor.ts': 'the event pipe: a stream, not a request',
    }
    const runsTool = (text: string) => /\.(run|stream|spawnDetached)\(\s*'(ip|tc|bpftool)'/.test(text)
    const offenders = files.filter((f) => !f.rel.startsWith('src/kernel/') && !f.rel.startsWith('src/exec/') && !(f.rel in notOps) && runsTool(f.text))
    assert.deepEqual(offenders.map((f) => f.rel), [])
    const stale = Object.keys(notOps).filter((rel) => !files.some((f) => f.rel === rel && runsTool(f.text)))
    assert.deepEqual(stale, [], 'no longer runs a tool: drop it from the list')
  })

  it('only src/exec spawns programs (execa, node:child_process)', () => {
    const offenders = files.filter(
      (f) => !f.rel.startsWith('src/exec/') && /from 'execa'|import\('execa'\)|from 'node:child_process'|from 'child_process'/.test(f.text),
    )
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('only src/cli and commands use oclif, chalk and listr2', () => {
    const offenders = files.filter(
      (f) => !f.rel.startsWith('src/cli/') && !f.rel.startsWith('commands/') && /from '(@oclif\/core|chalk|listr2)'/.test(f.text),
    )
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('the library never prints (only the entries, src/cli and src/entry, write to the terminal)', () => {
    const offenders = files.filter(
      (f) => f.rel.startsWith('src/') && !f.rel.startsWith('src/cli/') && !f.rel.startsWith('src/entry/') &&
        /console\.(log|error)|process\.std(out|err)\.write/.test(f.text),
    )
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('the library reads no environment variables (the entries read them and pass options down)', () => {
    // src/exec/runner.ts hands the environment on to children (merged with RunOptions.env); it reads no setting.
    const offenders = files.filter((f) => !f.rel.startsWith('src/cli/') && !f.rel.startsWith('src/entry/') &&
      /process\.env\b/.test(f.text.replace('{...process.env, ...opts.env} : process.env', '')))
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('commands stay thin: no spawning, no file writes', () => {
    const offenders = files.filter((f) => f.rel.startsWith('commands/') && /from 'node:fs'|writeFile|from 'node:child_process'/.test(f.text))
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('test hooks never reach a production agent: the systemd unit does not enable them, and without --test-hooks the agent drops them from every request', () => {
    const unit = readFileSync(path.join(REPO_ROOT, 'contrib/systemd/pn-agent.service'), 'utf8')
    const active = unit.split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n')
    assert.match(active, /^ExecStart=.* agent start --foreground/m)
    assert.doesNotMatch(active, /--test-hooks/)
    for (const v of [...TEST_HOOK_VARS, 'PN_TEST_']) assert.doesNotMatch(active, new RegExp(v))
    // Behaviour: a request's hooks are stripped unless the agent was started with --test-hooks.
    const env = Object.fromEntries([...TEST_HOOK_VARS, 'PN_TEST_ANY'].map((v) => [v, '1']))
    assert.deepEqual(requestEnv({...env, CNI_COMMAND: 'ADD'}, false), {CNI_COMMAND: 'ADD'})
    assert.deepEqual(requestEnv(env, true), env)
    // The agent's handler reads a request's environment only through requestEnv, and the option is off unless set.
    const main = files.find((f) => f.rel === 'src/entry/agent-main.ts')!.text
    assert.deepEqual([...main.matchAll(/wire\.env\b/g)].length, 1, 'wire.env used outside requestEnv')
    assert.match(main, /const req = \{\.\.\.wire, env: requestEnv\(wire\.env, testHooks\)\}/)
    assert.match(main, /const testHooks = opts\.testHooks === true/)
    const start = files.find((f) => f.rel === 'commands/agent/start.ts')!.text
    assert.match(start, /'test-hooks': Flags\.boolean\(\{[^}]*hidden: true/)
  })
})
