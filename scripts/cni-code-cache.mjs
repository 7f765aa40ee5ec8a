// The V8 code cache of pn-cni's bundle (scripts/bundle-cni.mjs runs this in a node of its own):
//   node scripts/cni-code-cache.mjs dist/src/entry/cni-bundle.vm.js dist/src/entry/cni-bundle.cache
// Every function is compiled (--no-lazy while the script compiles), so a CNI call compiles none;
// the flag is back to its default before the cache is written, and a cache carries the flags it
// was made with, so bin/pn-cni (default flags) takes it. The file is the bundle's first line (its
// build id) followed by V8's data. Then bin/pn-cni answers VERSION once to show the cache is used.
import {spawnSync} from 'node:child_process'
import {readFileSync, renameSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'

const [bundle, out] = process.argv.slice(2).map((p) => path.resolve(p))
const source = readFileSync(bundle, 'latin1')
const head = source.slice(0, source.indexOf('\n') + 1)
if (!head.startsWith('/*pn-cni build ')) throw new Error(`${bundle}: no build id on its first line`)

v8.setFlagsFromString('--no-lazy')
// The file as it is, as bin/pn-cni compiles it (it holds its CommonJS wrapper).
const script = new vm.Script(source, {filename: bundle})
v8.setFlagsFromString('--lazy')
const data = script.createCachedData()
writeFileSync(`${out}.tmp`, Buffer.concat([Buffer.from(head, 'latin1'), data]))
renameSync(`${out}.tmp`, out)

const entry = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../bin/pn-cni')
const check = spawnSync(process.execPath, [entry], {env: {PATH: process.env.PATH, CNI_COMMAND: 'VERSION', NODE_DEBUG: 'pn-cni'}, input: '{}', encoding: 'utf8'})
if (check.status !== 0 || !/code cache accepted/.test(check.stderr)) {
  throw new Error(`bin/pn-cni does not use ${out} (exit ${check.status}): ${check.stdout}${check.stderr}`)
}
console.log(`${path.relative(process.cwd(), out)}: ${data.length} bytes, used by bin/pn-cni`)
