// Bundle pn-cni's entry (dist/src/entry/cni-main.js and everything it imports, execa aside) into
// one module next to it, dist/src/entry/cni-bundle.js, which bin/pn-cni loads. A runtime execs
// pn-cni once per CNI call (the fallback path when no agent runs): resolving and compiling ~60
// modules cost ~60 ms a call here, one file ~10 ms. It sits in the entry's own folder so the
// paths the modules compute from import.meta.url (../../native/…, ../../../bin/…) stay right.
import {build} from 'esbuild'

await build({
  entryPoints: ['dist/src/entry/cni-main.js'],
  outfile: 'dist/src/entry/cni-bundle.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // The CLI's spawner; pn-cni never loads it (SpawnRunner), so it stays a lazy import.
  external: ['execa'],
  // CommonJS dependencies (ip-cidr) call require(); an ES module has none of its own.
  banner: {js: "import {createRequire as __pnCreateRequire} from 'node:module'; const require = __pnCreateRequire(import.meta.url);"},
  sourcemap: 'linked',
  logLevel: 'warning',
})
