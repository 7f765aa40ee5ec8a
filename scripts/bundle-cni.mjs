// Bundle pn-cni's entry (dist/src/entry/cni-main.js and everything it imports) into one
// CommonJS module next to it, dist/src/entry/cni-bundle.vm.js, already inside Node's module
// wrapper (the file is one function expression, for vm.Script, not for require()), and write a
// V8 code cache for it, cni-bundle.cache, which bin/pn-cni hands to vm.Script. A runtime execs pn-cni once per CNI call
// (the fallback path when no agent runs): resolving and compiling ~60 modules cost ~60 ms a call
// here, and one bundled ES module still ~30 ms of parsing plus the compilation of each function
// on its first call. From the cache nothing is parsed or compiled while the call runs. The
// bundle sits in the entry's own folder so the paths the modules compute from import.meta.url
// (../../native/…) stay right.
import {spawnSync} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {readFileSync, rmSync} from 'node:fs'
import {build} from 'esbuild'

const BUNDLE = 'dist/src/entry/cni-bundle.vm.js'
const CACHE = 'dist/src/entry/cni-bundle.cache'

// A cache must never outlive the bundle it was made for (see bin/pn-cni).
rmSync(CACHE, {force: true})

await build({
  entryPoints: ['dist/src/entry/cni-main.js'],
  outfile: BUNDLE,
  bundle: true,
  platform: 'node',
  // CommonJS, not an ES module: vm.Script takes a code cache (Node 20 has no cache for ES
  // modules), and each node: builtin is require()d when its module is first used, not up front.
  format: 'cjs',
  target: 'node20',
  // ES modules compute paths from import.meta.url; in CommonJS it is the bundle's own file.
  define: {'import.meta.url': '__pnImportMetaUrl'},
  inject: ['scripts/cni-import-meta-url.mjs'],
  // The first line names this build; the cache file starts with the same line. Then Node's
  // CommonJS wrapper, written here rather than added by bin/pn-cni: the source is compiled as
  // read, not copied once more into a wrapped string (a short process pays for every fresh page).
  // esbuild's "use strict" opens the function body, so the whole bundle stays strict.
  banner: {js: `/*pn-cni build ${randomUUID()}*/\n(function (exports, require, module, __filename, __dirname) {`},
  footer: {js: '})'},
  plugins: [
    {
      // The CLI's spawner (ExecaRunner) imports execa on first use; pn-cni never constructs it
      // (SpawnRunner). A dynamic import() cannot run inside vm.Script without
      // --experimental-vm-modules, so the bundle gets a stub that says so instead.
      name: 'no-execa',
      setup(b) {
        b.onResolve({filter: /^execa$/}, () => ({path: 'execa', namespace: 'pn-cni-stub'}))
        b.onLoad({filter: /.*/, namespace: 'pn-cni-stub'}, () => ({
          contents: "export function execa() { throw new Error('pn-cni: execa is not in the pn-cni bundle (ExecaRunner is the CLI runner; pn-cni uses SpawnRunner)') }",
          loader: 'js',
        }))
      },
    },
  ],
  // esbuild escapes non-ASCII characters (charset ascii), so bin/pn-cni may read it as latin1.
  charset: 'ascii',
  // A third less to read per call; names stay, so stack traces still read.
  minifyWhitespace: true,
  sourcemap: 'linked',
  logLevel: 'warning',
})

if (/[^\x00-\x7f]/.test(readFileSync(BUNDLE, 'latin1'))) throw new Error(`${BUNDLE}: not ASCII (bin/pn-cni reads it as latin1)`)

// The code cache, written and checked by the node that builds (a node of another version
// rejects it, and bin/pn-cni then compiles the script as it would without one).
const made = spawnSync(process.execPath, ['scripts/cni-code-cache.mjs', BUNDLE, CACHE], {stdio: 'inherit'})
if (made.status !== 0) throw new Error(`scripts/cni-code-cache.mjs exited with ${made.status ?? made.signal}`)
