/**
 * Compile once per node: every program source is built with clang and the units are linked by
 * `bpftool gen object` into one object, so all programs share one instance of each pn_ map.
 * Objects are cached under `<cacheDir>/<hash>/`, keyed by the sources and the compile options.
 */
import {fsp as fs} from '../../exec/fs.js'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PnError} from '../../errors.js'
import type {Runner} from '../../exec/runner.js'
import {randomHex} from '../../state/digest.js'

/** One C file per attach point; the linked object is DATAPATH_OBJECT. */
export const PROGRAM_SOURCES = ['from_container.c', 'from_netdev.c', 'to_netdev.c', 'to_host.c', 'from_host.c', 'from_overlay.c'] as const
export const DATAPATH_OBJECT = 'pn_datapath.o'

/** The repo's bpf/ folder (dist/src/datapath/bpf → ../../../../bpf); entries may pass another (PN_BPF_DIR). */
export function bpfSourceDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url))
  return path.resolve(here, '../../../../bpf')
}

const ARCH: Record<string, string> = {x64: 'x86_64', arm64: 'aarch64', ppc64: 'powerpc64le', s390x: 's390x', riscv64: 'riscv64'}

/** clang flags shared by every unit (part of the cache key). */
export function compileFlags(): string[] {
  const triple = `${ARCH[process.arch] ?? process.arch}-linux-gnu`
  // asm/types.h lives in the multiarch include dir, which `-target bpf` does not search.
  return ['-O2', '-g', '-Wall', '-target', 'bpf', '-I', `/usr/include/${triple}`]
}

export interface CompileDiagnostic {
  file: string
  line: number
  column: number
  severity: string
  message: string
}

/** clang's `file:line:col: error: text` lines. */
export function parseClangDiagnostics(stderr: string): CompileDiagnostic[] {
  const out: CompileDiagnostic[] = []
  for (const line of stderr.split('\n')) {
    const m = /^(.+?):(\d+):(\d+): (error|warning|fatal error): (.*)$/.exec(line.trim())
    if (m) out.push({file: m[1], line: Number(m[2]), column: Number(m[3]), severity: m[4], message: m[5]})
  }
  return out
}

async function sourceFiles(dir: string): Promise<string[]> {
  const headers = (await fs.readdir(path.join(dir, 'include')).catch(() => [] as string[]))
    .filter((f) => f.endsWith('.h'))
    .map((f) => `include/${f}`)
  return [...PROGRAM_SOURCES, ...headers.sort()]
}

/** Hash of every source file and the compile options: the cache key. */
export async function sourceHash(dir = bpfSourceDir()): Promise<string> {
  // node:crypto on first use: pn-cni loads this module and never compiles (src/state/digest.ts).
  const {createHash} = await import('node:crypto')
  const h = createHash('sha256')
  h.update(JSON.stringify(compileFlags()))
  for (const rel of await sourceFiles(dir)) {
    let text: Buffer
    try {
      text = await fs.readFile(path.join(dir, rel))
    } catch (err) {
      throw new PnError('PN_BPF_COMPILE_FAILED', `read bpf source ${path.join(dir, rel)}: ${(err as Error).message}`, {
        hint: 'run pn from its source tree or set PN_BPF_DIR to the bpf/ folder',
      })
    }
    h.update(`${rel}\0${text.length}\0`)
    h.update(text)
  }
  return h.digest('hex').slice(0, 16)
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false)
}

export interface CompileOptions {
  cacheDir: string
  force?: boolean
  /** Override the source folder (tests). */
  sourceDir?: string
}

export interface CompileOutcome {
  objects: Record<string, string>
  cacheDir: string
  cacheHit: boolean
  hash: string
}

export async function compileDatapath(runner: Runner, opts: CompileOptions): Promise<CompileOutcome> {
  const src = opts.sourceDir ? path.resolve(opts.sourceDir) : bpfSourceDir()
  const hash = await sourceHash(src)
  const outDir = path.join(opts.cacheDir, hash)
  const object = path.join(outDir, DATAPATH_OBJECT)
  if (!opts.force && (await exists(object))) {
    return {objects: {datapath: object}, cacheDir: outDir, cacheHit: true, hash}
  }
  // Build in a private folder and rename it into place: concurrent compiles never see half an object.
  const tmp = path.join(opts.cacheDir, `.tmp-${hash}-${process.pid}-${randomHex(3)}`)
  await fs.mkdir(tmp, {recursive: true, mode: 0o700}) // under the state dir: private like it
  try {
    const units = await Promise.all(
      PROGRAM_SOURCES.map(async (file) => {
        const out = path.join(tmp, file.replace(/\.c$/, '.o'))
        const r = await runner.run('clang', [...compileFlags(), '-c', path.join(src, file), '-o', out], {allowFailure: true})
        if (r.exitCode !== 0) {
          const diags = parseClangDiagnostics(r.stderr)
          const first = diags.find((d) => d.severity !== 'warning')
          const where = first ? `${first.file}:${first.line}:${first.column}: ${first.message}` : r.stderr.trim().split('\n')[0]
          throw new PnError('PN_BPF_COMPILE_FAILED', `compile bpf ${file}: ${where}`, {
            hint: 'fix the C source (all diagnostics are in details.diagnostics) and rerun `pn bpf compile`',
            details: {file: path.join(src, file), argv: r.argv, errors: diags, diagnostics: r.stderr},
          })
        }
        return out
      }),
    )
    const r = await runner.run('bpftool', ['gen', 'object', path.join(tmp, DATAPATH_OBJECT), ...units], {allowFailure: true})
    if (r.exitCode !== 0) {
      throw new PnError('PN_BPF_COMPILE_FAILED', `link bpf objects: ${r.stderr.trim().split('\n').pop() ?? `exit code ${r.exitCode}`}`, {
        hint: 'a map defined in two headers must be identical (and __weak); see details.diagnostics',
        details: {argv: r.argv, diagnostics: r.stderr},
      })
    }
    if (opts.force) await fs.rm(outDir, {recursive: true, force: true})
    try {
      await fs.rename(tmp, outDir)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err
      // Another process won the race with identical sources: use its result.
    }
  } finally {
    await fs.rm(tmp, {recursive: true, force: true})
  }
  return {objects: {datapath: object}, cacheDir: outDir, cacheHit: false, hash}
}
