/**
 * No dead exports in src/: every exported name is imported somewhere (src, commands, test,
 * bench) or at least used in its own file. Syntax only (the TypeScript parser, no type
 * checker), so it is fast and needs no build of its own: named imports and re-exports count
 * as uses; a namespace import, a dynamic import() or a `dist/src/…` path named by bin/ or
 * scripts/ marks a whole module as used.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import {REPO_ROOT} from '../helpers/cli.js'

/** Kept on purpose although nothing in TypeScript reads them. */
const ALLOWED = new Set([
  // The TypeScript half of constants #defined in bpf/include/*.h: the kernel↔TS contract names them all.
  'src/datapath/bpf/maps/ct4.ts:CT_F_LOOPBACK',
  'src/datapath/bpf/maps/endpoints.ts:ENDPOINT_KEY_IPV4',
  'src/datapath/bpf/maps/endpoints.ts:ENDPOINT_KEY_IPV6',
  'src/datapath/bpf/maps/trace.ts:EVENT_TRACE',
])

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (statSync(p).isDirectory()) return tsFiles(p)
    return p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : []
  })
}

interface Module {
  rel: string
  source: ts.SourceFile
  /** Exported name → the identifier that declares it. */
  exports: Map<string, ts.Identifier>
}

function exportsOf(source: ts.SourceFile): Map<string, ts.Identifier> {
  const out = new Map<string, ts.Identifier>()
  for (const st of source.statements) {
    const mods = ts.canHaveModifiers(st) ? ts.getModifiers(st) : undefined
    if (!mods?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) || mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) continue
    if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) out.set(d.name.text, d.name)
    } else if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) {
      out.set(st.name.text, st.name)
    }
  }
  return out
}

describe('no unused exports in src/', function () {
  this.timeout(60_000)

  it('every export of src/ is imported somewhere or used in its own file', () => {
    const files = ['src', 'commands', 'test', 'bench'].flatMap((d) => tsFiles(path.join(REPO_ROOT, d)))
    const modules = new Map<string, Module>()
    for (const f of files) {
      const source = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.ES2022, true)
      modules.set(f, {rel: path.relative(REPO_ROOT, f), source, exports: exportsOf(source)})
    }
    const used = new Map<string, Set<string>>() // file → names imported from it
    const whole = new Set<string>() // files used as a whole
    const stars = new Map<string, string[]>() // file → files it re-exports with `export *`
    const use = (file: string, name: string) => {
      if (!used.has(file)) used.set(file, new Set())
      used.get(file)!.add(name)
    }
    const resolve = (from: string, spec: string) => (spec.startsWith('.') ? path.resolve(path.dirname(from), spec).replace(/\.js$/, '.ts') : undefined)

    for (const [file, {source}] of modules) {
      const visit = (n: ts.Node) => {
        if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
          const target = resolve(file, n.moduleSpecifier.text)
          if (target && ts.isImportDeclaration(n)) {
            const b = n.importClause?.namedBindings
            if (b && ts.isNamespaceImport(b)) whole.add(target)
            else if (b) for (const e of b.elements) use(target, (e.propertyName ?? e.name).text)
          } else if (target && ts.isExportDeclaration(n)) {
            if (!n.exportClause) stars.set(file, [...(stars.get(file) ?? []), target])
            else if (ts.isNamedExports(n.exportClause)) for (const e of n.exportClause.elements) use(target, (e.propertyName ?? e.name).text)
            else whole.add(target)
          }
        }
        if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0] && ts.isStringLiteralLike(n.arguments[0])) {
          const target = resolve(file, n.arguments[0].text)
          if (target) whole.add(target)
        }
        if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
          const target = resolve(file, n.argument.literal.text)
          if (target && n.qualifier) use(target, ts.isIdentifier(n.qualifier) ? n.qualifier.text : n.qualifier.left.getText())
          else if (target) whole.add(target)
        }
        ts.forEachChild(n, visit)
      }
      visit(source)
    }
    // A name imported from a module that only passes it on (`export *`) is a use of the module it comes from.
    for (let changed = true; changed; ) {
      changed = false
      for (const [file, targets] of stars) {
        for (const name of used.get(file) ?? []) {
          if (modules.get(file)?.exports.has(name)) continue
          for (const t of targets) {
            if (used.get(t)?.has(name)) continue
            use(t, name)
            changed = true
          }
        }
      }
    }
    // bin/ and scripts/ load compiled modules by path (bin/pn-cni.cjs, scripts/bundle-cni.mjs).
    for (const dir of ['bin', 'scripts']) {
      for (const f of readdirSync(path.join(REPO_ROOT, dir))) {
        for (const m of readFileSync(path.join(REPO_ROOT, dir, f), 'utf8').matchAll(/dist\/(src\/[\w/.-]+)\.js/g)) whole.add(path.join(REPO_ROOT, `${m[1]}.ts`))
      }
    }

    const unused: string[] = []
    for (const [file, m] of modules) {
      if (!m.rel.startsWith('src/') || whole.has(file)) continue
      for (const [name, decl] of m.exports) {
        if (used.get(file)?.has(name) || ALLOWED.has(`${m.rel}:${name}`)) continue
        let local = 0
        const count = (n: ts.Node) => {
          if (ts.isIdentifier(n) && n !== decl && n.text === name) local++
          ts.forEachChild(n, count)
        }
        count(m.source)
        if (local === 0) unused.push(`${m.rel}: ${name}`)
      }
    }
    assert.ok(modules.size > 100, `read ${modules.size} files`)
    assert.deepEqual(unused, [], 'exported but used nowhere: delete them (or, for a C-side constant, add them to ALLOWED with the reason)')
  })
})
