import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {compileObjects, type CompileResult} from '../../src/datapath/bpf/index.js'
import {bpfCacheDir} from '../../src/node/context.js'

export type BpfCompileResult = CompileResult

export default class BpfCompile extends BaseCommand<typeof BpfCompile, BpfCompileResult> {
  static summary = 'Compile the tc eBPF datapath once for this node (cached by source hash).'
  static description = `Every program in bpf/ is built with clang (-O2 -g -target bpf) and the units are linked into one object (bpftool gen object), so all programs share one set of pn_ maps. The result is cached under <state-dir>/bpf/<hash>/, keyed by the sources and compile options; --force rebuilds.`

  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --force --json',
  ]

  static flags = {
    force: Flags.boolean({summary: 'Rebuild even when the cache has this source hash.'}),
  }

  async execute(): Promise<BpfCompileResult> {
    return compileObjects(this.runner, {cacheDir: bpfCacheDir(this.stateDir), sourceDir: this.entry.bpfDir, force: this.flags.force})
  }

  protected render(r: BpfCompileResult): string {
    const how = r.cacheHit ? 'cache hit' : 'compiled'
    return [`${how}: ${r.cacheDir}`, ...Object.entries(r.objects).map(([k, v]) => `  ${k}: ${v}`)].join('\n')
  }
}
