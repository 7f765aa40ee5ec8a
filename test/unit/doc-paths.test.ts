/**
 * Every repository path the docs and the source comments cite exists, so a rename or a removal
 * cannot leave a pointer to nothing behind.
 *
 * What counts as a citation: in docs/*.md, README.md and labs/*\/README.md, backticked text and
 * relative link targets; in comments of src/, native/, bpf/, commands/, bench/, scripts/ and test/,
 * any word. Either counts when it looks like a repository path: it starts with a top-level folder
 * of this repository (`src/…`, `bpf/…`), or contains a `/` and ends in a source extension
 * (`maps/index.ts`, `./netns.ts`; a leading `./` or `../` alone is not enough: `../x`). It must
 * then name a file or folder relative to the citing file, to the repository root, or, for a
 * partial path like `maps/index.ts`, the end of some path in the repository. Not citations: absolute paths (`/var/lib/pn`, runtime paths), URLs,
 * placeholders and globs (`<state-dir>/…`, `src/**`), and paths named as another project's
 * (`Cilium's bpf/lib/lb.h`) or system headers (`linux/bpf.h`). `dist/…` is the build output: a
 * compiled module must have its TypeScript source (`dist/src/entry/cni-main.js`), a native binary
 * its C file (`dist/native/pn-cni`), and the few files the build generates are listed; the other
 * folders .gitignore names (bench/results/) are run outputs and need not exist.
 */
import assert from 'node:assert/strict'
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import {REPO_ROOT} from '../helpers/cli.js'

const TOP = ['src', 'native', 'bpf', 'commands', 'bench', 'scripts', 'test', 'docs', 'labs', 'bin', 'contrib', 'dist']
const EXT = /\.(ts|js|mjs|cjs|c|h|sh|md|json)$/
/** Build outputs with no source file of the same name (scripts/bundle-cni.mjs, scripts/manifest.mjs). */
const GENERATED = ['dist/src/entry/cni-bundle.vm.js', 'dist/src/entry/cni-bundle.cache', 'dist/oclif.manifest.json']
/** Kernel and libc headers, by the folder an #include names them with. */
const SYSTEM = /^(asm|asm-generic|linux|sys|net|netinet|arpa|bits|bpf\/bpf_[a-z_]+\.h$)/
/** Ignored output folders (`bench/results/`): cited as where a run writes. */
const IGNORED = readFileSync(path.join(REPO_ROOT, '.gitignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => /^[\w.-]+(\/[\w.-]+)*\/$/.test(l) && l !== 'dist/')

/** Words right before a path that make it another project's (Cilium's bpf/lib/…, the plugins' pkg/…). */
const UPSTREAM = /(cilium|cilium's|upstream|kernel|kernel's|linux|libbpf|iproute2|plugins|plugins'|containerd|cri-o|podman|k8s|kubernetes|libcni|cni's|bird|bird's|xdp-tutorial)\s*$/i

function walk(dir: string, keep: (f: string) => boolean): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (f === 'node_modules' || f === 'dist' || f.startsWith('.')) return []
    return statSync(p).isDirectory() ? walk(p, keep) : keep(p) ? [p] : []
  })
}

/** Comment text of a source file (TypeScript/JavaScript by the scanner, C and shell by their syntax). */
function comments(file: string, text: string): string[] {
  if (/\.(ts|js|mjs|cjs)$/.test(file) || /^#!.*\bnode\b/.test(text)) {
    // Every token's leading and trailing trivia: the parser knows strings, regexes and templates.
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, /\.ts$/.test(file) ? ts.ScriptKind.TS : ts.ScriptKind.JS)
    const seen = new Set<number>()
    const out: string[] = []
    const grab = (pos: number) => {
      for (const r of [...(ts.getLeadingCommentRanges(text, pos) ?? []), ...(ts.getTrailingCommentRanges(text, pos) ?? [])]) {
        if (!seen.has(r.pos)) out.push(text.slice(r.pos, r.end))
        seen.add(r.pos)
      }
    }
    const visit = (n: ts.Node) => {
      grab(n.getFullStart())
      grab(n.getEnd())
      for (const c of n.getChildren(source)) visit(c)
    }
    visit(source)
    return out
  }
  if (/\.(c|h)$/.test(file)) return [...text.matchAll(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g)].map((m) => m[0])
  if (/\.sh$/.test(file) || /^#!.*\b(ba)?sh\b/.test(text)) return [...text.matchAll(/(?:^|\s)#[^\n]*/g)].map((m) => m[0])
  return []
}

/** Backticked spans and relative link targets of a markdown file. */
function markdownCitations(text: string): {word: string; before: string}[] {
  const out: {word: string; before: string}[] = []
  const noFences = text.replace(/^```[\s\S]*?^```/gm, '')
  for (const m of noFences.matchAll(/`([^`\n]+)`/g)) out.push({word: m[1].trim(), before: noFences.slice(Math.max(0, m.index! - 30), m.index)})
  for (const m of noFences.matchAll(/\]\(([^)\s]+)\)/g)) if (!/^(https?:|mailto:|#)/.test(m[1])) out.push({word: m[1].replace(/#.*$/, ''), before: ''})
  return out
}

/** Path-looking words of a comment, with the text just before each. */
function commentCitations(text: string): {word: string; before: string}[] {
  const clean = text.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, ' ') // URLs
  return [...clean.matchAll(/(?:\.{1,2}\/)?[\w.@<>*…-]+(?:\/[\w.@<>*…-]*)+/g)].map((m) => ({word: m[0].replace(/[.,;:]+$/, ''), before: clean.slice(Math.max(0, m.index! - 30), m.index)}))
}

function isCandidate(word: string): boolean {
  if (word.startsWith('/') || /[<>*…$%{}\s|]/.test(word) || SYSTEM.test(word)) return false
  const tail = word.replace(/^(\.{1,2}\/)+/, '')
  if (tail !== word) return EXT.test(tail) || TOP.includes(tail.split('/')[0]) // `./netns.ts`, not `../x`
  if (TOP.includes(word.split('/')[0]) && word.includes('/')) return true
  return word.includes('/') && EXT.test(word)
}

let allPaths: string[] | undefined
function repoPaths(): string[] {
  allPaths ??= walk(REPO_ROOT, () => true).map((f) => path.relative(REPO_ROOT, f))
  return allPaths
}

function exists(citingFile: string, word: string): boolean {
  const w = word.replace(/[.,;:)'"]+$/, '').replace(/\/$/, '')
  if (w === '' || w === '.' || w === '..') return true
  if (IGNORED.some((dir) => `${w}/`.startsWith(dir))) return true
  if (w.startsWith('dist/')) {
    if (GENERATED.includes(w)) return true
    const rest = w.slice('dist/'.length)
    // Build output folders of scripts/test-native.sh (sanitizer builds, libFuzzer corpora).
    if (rest === 'native-asan' || rest === 'native-fuzz') return existsSync(path.join(REPO_ROOT, 'scripts/test-native.sh'))
    // A Node addon: dist/native/<name>.node from native/<name>.c.
    if (rest.startsWith('native/') && rest.endsWith('.node')) return existsSync(path.join(REPO_ROOT, `${rest.slice(0, -'.node'.length)}.c`))
    if (rest.startsWith('native/')) return existsSync(path.join(REPO_ROOT, `${rest}.c`)) || existsSync(path.join(REPO_ROOT, rest))
    return [rest, rest.replace(/\.js$/, '.ts'), rest.replace(/\.js\.map$/, '.ts')].some((r) => existsSync(path.join(REPO_ROOT, r)))
  }
  if (existsSync(path.resolve(path.dirname(citingFile), w)) || existsSync(path.join(REPO_ROOT, w))) return true
  // A compiled name in a comment of a .ts file (an import path ending in .js) names the source.
  if (/\.js$/.test(w) && (existsSync(path.resolve(path.dirname(citingFile), w.replace(/\.js$/, '.ts'))) || existsSync(path.join(REPO_ROOT, w.replace(/\.js$/, '.ts'))))) return true
  if (TOP.includes(w.split('/')[0])) return false
  // A partial path, or one relative to somewhere else (`../../bin/pn-cni.cjs` from dist/native/).
  const tail = w.replace(/^(\.{1,2}\/)+/, '')
  return repoPaths().some((p) => p === tail || p.endsWith(`/${tail}`) || p.includes(`/${tail}/`))
}

describe('cited repository paths exist', function () {
  this.timeout(60_000)

  const docs = [
    ...walk(path.join(REPO_ROOT, 'docs'), (f) => f.endsWith('.md')),
    path.join(REPO_ROOT, 'README.md'),
    ...readdirSync(path.join(REPO_ROOT, 'labs')).map((d) => path.join(REPO_ROOT, 'labs', d, 'README.md')).filter((f) => existsSync(f)),
  ]
  const sources = ['src', 'native', 'bpf', 'commands', 'bench', 'scripts', 'test'].flatMap((d) =>
    walk(path.join(REPO_ROOT, d), (f) => /\.(ts|js|mjs|cjs|c|h|sh)$/.test(f) || !path.basename(f).includes('.')),
  )

  function check(files: string[], cite: (file: string, text: string) => {word: string; before: string}[]): {checked: number; missing: string[]} {
    let checked = 0
    const missing: string[] = []
    for (const f of files) {
      for (const {word, before} of cite(f, readFileSync(f, 'utf8'))) {
        if (!isCandidate(word) || UPSTREAM.test(before)) continue
        checked++
        if (!exists(f, word)) missing.push(`${path.relative(REPO_ROOT, f)}: ${word}`)
      }
    }
    return {checked, missing}
  }

  it('in docs/*.md, README.md and labs/*/README.md', () => {
    const {checked, missing} = check(docs, (_, text) => markdownCitations(text))
    assert.ok(checked > 50, `only ${checked} citations found: the extraction is broken`)
    assert.deepEqual(missing, [])
  })

  it('in comments of src/, native/, bpf/, commands/, bench/, scripts/ and test/', () => {
    const {checked, missing} = check(sources, (f, text) => comments(f, text).flatMap(commentCitations))
    assert.ok(checked > 50, `only ${checked} citations found: the extraction is broken`)
    assert.deepEqual(missing, [])
  })

  it('the rules tell a citation from a runtime path, a URL or another project', () => {
    assert.deepEqual(commentCitations('see src/a/b.ts, https://github.com/cilium/cilium/blob/main/bpf/lib/lb.h and /var/lib/pn').map((c) => c.word).filter(isCandidate), ['src/a/b.ts'])
    assert.equal(isCandidate('asm/types.h'), false)
    assert.equal(exists(path.join(REPO_ROOT, 'README.md'), 'bench/results/cni.json'), true)
    assert.equal(isCandidate('<state-dir>/ipam/'), false)
    assert.equal(isCandidate('10.20.30.0/26'), false)
    assert.equal(isCandidate('maps/index.ts'), true)
    assert.equal(isCandidate('../x'), false)
    assert.equal(exists(path.join(REPO_ROOT, 'src/datapath/bpf/map-io.ts'), 'maps/index.ts'), true)
    assert.equal(exists(path.join(REPO_ROOT, 'README.md'), 'src/datapath/bpf/codecs.ts'), false)
    assert.equal(exists(path.join(REPO_ROOT, 'README.md'), 'dist/src/entry/cni-main.js'), true)
    assert.equal(exists(path.join(REPO_ROOT, 'README.md'), 'dist/src/entry/nothing.js'), false)
    assert.ok(UPSTREAM.test("Cilium's "))
  })
})
