/**
 * The one CLI grammar of docs/CLI.md: verbs, unknown words with "did you mean", list shapes,
 * `service list` → `service apply`, tables, and what --verbose shows of a batch.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {verboseText} from '../../src/cli/base.js'
import {table} from '../../src/cli/table.js'
import {closest, unknownCommandError} from '../../src/cli/usage.js'
import {ExecaRunner} from '../../src/exec/runner.js'
import {parseServiceList} from '../../src/service/model.js'
import {pn, REPO_ROOT} from '../helpers/cli.js'

const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, {id: string; aliases?: string[]}>
}
const ids = Object.keys(manifest.commands)
const docs = readFileSync(path.join(REPO_ROOT, 'docs/CLI.md'), 'utf8')

describe('cli grammar', function () {
  this.timeout(60_000)
  it('every verb is in the verb table of docs/CLI.md; removal is `delete` (CNI keeps its spec verbs)', () => {
    const section = docs.slice(docs.indexOf('### Verbs'), docs.indexOf('### Naming things'))
    const verbs = new Set([...section.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) => [...m[1].matchAll(/`([a-z]+)`/g)].map((v) => v[1])))
    assert.ok(verbs.has('list') && verbs.has('delete'), [...verbs].join(' '))
    const standalone = new Set(['status', 'monitor'])
    for (const id of ids) {
      const verb = id.split(':').at(-1)!
      if (standalone.has(id)) continue
      if (id.startsWith('cni:')) continue
      assert.ok(verbs.has(verb), `pn ${id.replaceAll(':', ' ')}: verb "${verb}" is not in docs/CLI.md`)
      assert.notEqual(verb, 'del', `pn ${id.replaceAll(':', ' ')}: use delete`)
    }
    assert.deepEqual(manifest.commands['service:delete']?.aliases, ['service:del'])
  })

  it('`pn service del` still works, as an alias of `pn service delete`', () => {
    const r = pn(['service', 'del', '--json'])
    assert.equal(r.json?.error?.code, 'PN_INVALID_ARGUMENT', r.stdout + r.stderr)
    assert.match(r.json!.error!.message, /missing required argument FRONTEND/)
  })

  it('an unknown word: PN_UNKNOWN_COMMAND, exit 2, with the closest command', () => {
    const r = pn(['servce', 'list', '--json'])
    assert.equal(r.status, 2)
    assert.equal(r.json?.error?.code, 'PN_UNKNOWN_COMMAND')
    assert.match(r.json!.error!.message, /unknown command "servce"/)
    assert.match(r.json!.error!.hint!, /did you mean `pn service list`\?/)
    const verb = pn(['bpf', 'map', 'lsit'])
    assert.equal(verb.status, 2)
    assert.match(verb.stderr, /^error: run pn bpf map lsit: unknown command "lsit" \[PN_UNKNOWN_COMMAND\]\nhint: did you mean `pn bpf map list`\?/)
    assert.equal(verb.stdout, '')
    const flag = pn(['--bogus', '--json'])
    assert.deepEqual([flag.status, flag.json?.error?.code, flag.json?.error?.message.startsWith('parse arguments: unknown flag --bogus')], [2, 'PN_INVALID_ARGUMENT', true])
  })

  it('a word after a command that takes none is named, in the envelope (pn status extra)', () => {
    const r = pn(['status', 'extra', '--json'])
    assert.equal(r.status, 2)
    assert.equal(r.json?.error?.code, 'PN_INVALID_ARGUMENT')
    assert.equal(r.json!.error!.message, 'parse arguments: unexpected argument "extra" (pn status takes no arguments)')
  })

  it('names the flag: missing (cni check), out of range (pool init --mask-size 33), misspelt (did you mean)', () => {
    const check = pn(['cni', 'check', '--container-id', 'x', '--json'])
    assert.equal(check.json?.error?.message, 'parse arguments: missing required flag --netns')
    const mask = pn(['pool', 'init', '--cidr', '10.0.0.0/8', '--mask-size', '33'])
    assert.equal(mask.status, 2)
    assert.match(mask.stderr, /^error: parse arguments: --mask-size: expected an integer less than or equal to 32 but received: 33 \[PN_INVALID_ARGUMENT\]/)
    const typo = pn(['ipam', 'list', '--pod-cdir', '10.0.0.0/24', '--json'])
    assert.equal(typo.json?.error?.message, 'parse arguments: unknown flag --pod-cdir')
    assert.match(typo.json!.error!.hint!, /^did you mean --pod-cidr\?/)
  })

  it('suggestions: close words only', () => {
    assert.equal(closest('lsit', ['list', 'show', 'dump']), 'list')
    assert.equal(closest('zzzzzz', ['list', 'show', 'dump']), undefined)
    const e = unknownCommandError('service:remove', {commands: ['service:add', 'service:delete', 'service:list'], topics: ['service'], argsOf: () => undefined})
    assert.equal(e.code, 'PN_UNKNOWN_COMMAND')
    assert.equal(e.message, 'run pn service remove: unknown command "remove"')
  })

  describe('list shapes: an array under result', () => {
    let dir: string
    before(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-grammar-'))))
    after(() => rmSync(dir, {recursive: true, force: true}))

    it('ipam list, endpoint list, pool list', () => {
      const ipam = pn(['ipam', 'list', '--state-dir', dir, '--pod-cidr', '10.9.0.0/24', '--json'])
      assert.ok(Array.isArray(ipam.json?.result), ipam.stdout)
      const eps = pn(['endpoint', 'list', '--state-dir', dir, '--json'])
      assert.deepEqual(eps.json?.result, [], eps.stdout)
      assert.equal(pn(['pool', 'init', '--state-dir', dir, '--cidr', '10.8.0.0/16', '--mask-size', '24', '--json']).json?.status, 'ok')
      assert.equal(pn(['pool', 'alloc', 'n1', '--state-dir', dir, '--json']).json?.status, 'ok')
      const pool = pn(['pool', 'list', '--state-dir', dir, '--json'])
      assert.deepEqual(pool.json?.result.map((n: {name: string; cidrs: string[]}) => [n.name, n.cidrs]), [['n1', ['10.8.0.0/24']]])
      const shown = pn(['pool', 'show', '--state-dir', dir, '--json'])
      assert.equal(shown.json?.result.clusterCidrs[0].used, 1, shown.stdout)
      assert.match(pn(['pool', 'list', '--state-dir', dir]).stdout, /^NODE +POD CIDRS +SINCE\nn1 +10\.8\.0\.0\/24 +\d{4}-/)
    })
  })

  it('service apply takes what service list --json printed (the envelope, backends as objects)', () => {
    const listed = {
      status: 'ok',
      result: [
        {frontend: '10.96.0.10:80/tcp', vip: '10.96.0.10', port: 80, proto: 'tcp', revNatIndex: 1, backends: [{address: '10.1.0.5:8080', backendId: 1}], stats: {packets: 3, bytes: 0, connections: 1, replies: 2}},
        {frontend: '10.96.0.53:53/udp', vip: '10.96.0.53', port: 53, proto: 'udp', revNatIndex: 2, backends: [], stats: {packets: 0, bytes: 0, connections: 0, replies: 0}},
      ],
      warnings: [],
    }
    const specs = parseServiceList(JSON.stringify(listed, null, 2))
    assert.deepEqual(specs.map((s) => [s.frontend.vip, s.frontend.port, s.backends.length]), [['10.96.0.10', 80, 1], ['10.96.0.53', 53, 0]])
    assert.equal(parseServiceList(JSON.stringify(listed.result)).length, 2)
    assert.throws(() => parseServiceList(JSON.stringify({status: 'error', error: {}})), /expected a JSON list/)
  })

  it('tables: each column as wide as its widest cell (bpf map types like perf_event_array)', () => {
    const text = table(['NAME', 'TYPE', 'MAX'], [['pn_events', 'perf_event_array', 2], ['pn_ct4', 'lru_percpu_hash', 65536], ['pn_lxc', 'hash', undefined]], {right: [2]})
    assert.equal(text, ['NAME       TYPE                MAX', 'pn_events  perf_event_array      2', 'pn_ct4     lru_percpu_hash   65536', 'pn_lxc     hash                  -'].join('\n'))
  })

  it('--verbose shows the stdin script of a batch, indented under its argv', async () => {
    assert.equal(verboseText(['ip', '-batch', '-'], 'link set lo up\naddr add 10.0.0.1/32 dev lo\n'), '+ ip -batch -\n    link set lo up\n    addr add 10.0.0.1/32 dev lo\n')
    assert.equal(verboseText(['ip', 'link', 'show']), '+ ip link show\n')
    const seen: [string[], string | undefined][] = []
    await new ExecaRunner((argv, input) => seen.push([argv, input])).run('cat', [], {input: 'a\nb\n'})
    assert.deepEqual(seen, [[['cat'], 'a\nb\n']])
  })
})
