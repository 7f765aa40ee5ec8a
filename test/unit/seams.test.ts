import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {REPO_ROOT} from '../helpers/cli.js'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (statSync(p).isDirectory()) return sources(p)
    return p.endsWith('.ts') ? [p] : []
  })
}

/** The layering rules STYLE.md asks lint to enforce, checked on the sources. */
describe('module seams', () => {
  const files = [...sources(path.join(REPO_ROOT, 'src')), ...sources(path.join(REPO_ROOT, 'commands'))].map((f) => ({
    rel: path.relative(REPO_ROOT, f),
    text: readFileSync(f, 'utf8'),
  }))

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

  it('the library never prints (only the pn-cni entry writes its protocol output)', () => {
    const offenders = files.filter(
      (f) => f.rel.startsWith('src/') && !f.rel.startsWith('src/cli/') && f.rel !== 'src/cni/main.ts' &&
        // the PN_TEST_HOLD_LOCK_MS test hook announces that it holds the lock, and only then
        f.rel !== 'src/ipam/store.ts' && /console\.(log|error)|process\.std(out|err)\.write/.test(f.text),
    )
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })

  it('commands stay thin: no spawning, no file writes', () => {
    const offenders = files.filter((f) => f.rel.startsWith('commands/') && /from 'node:fs'|writeFile|from 'node:child_process'/.test(f.text))
    assert.deepEqual(offenders.map((f) => f.rel), [])
  })
})
