/**
 * A kernel for unit tests of flows (no root): one uplink, the addresses and routes a test gives,
 * every other read empty or "does not exist", and every change accepted without effect.
 */
import {effectiveArgv, type RunOptions, type RunResult, type Runner} from '../../src/exec/runner.js'

export interface FakeKernelOptions {
  uplink: {ifname: string; mtu: number; address: string}
  /** `ip -j addr show` of the whole netns (default: none). */
  addrs?: string
  /** `ip -j -4|-6 route show table all` (default: none). */
  routes4?: string
  routes6?: string
}

export class FakeKernel implements Runner {
  constructor(private readonly o: FakeKernelOptions) {}

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const argv = effectiveArgv(file, args, opts)
    const ok = (stdout: string): RunResult => ({argv, exitCode: 0, stdout, stderr: ''})
    const dev = args[args.indexOf('dev') + 1]
    const absent = (): RunResult => ({argv, exitCode: 1, stdout: '', stderr: `Device "${dev}" does not exist.`})
    if (file === 'ip' && args.includes('link') && args.includes('show') && args.includes('dev')) {
      if (dev === this.o.uplink.ifname && !opts.netns) return ok(JSON.stringify([{ifindex: 2, ...this.o.uplink, flags: ['UP']}]))
      return absent()
    }
    if (file === 'ip' && args.includes('addr')) return args.includes('dev') ? absent() : ok(this.o.addrs ?? '[]')
    if (file === 'ip' && args.includes('route') && args.includes('all')) return ok((args.includes('-6') ? this.o.routes6 : this.o.routes4) ?? '[]')
    if (file === 'ip' && args.includes('route')) return ok('[]')
    if (file === 'tc' && args.includes('show')) return ok('[]')
    if (file === 'bpftool' && args.includes('dump')) return ok('[]')
    // bpftool -j puts its error in the JSON answer: nothing pinned here.
    if (file === 'bpftool') return {argv, exitCode: 255, stdout: JSON.stringify({error: `bpf obj get (${args[args.length - 1]}): No such file or directory`}), stderr: ''}
    return ok('')
  }

  async makeDir(): Promise<boolean> {
    return true
  }

  async remove(): Promise<void> {}
  async writeFile(): Promise<void> {}

  stream(): never {
    throw new Error('the fake kernel streams nothing')
  }

  async spawnDetached(): Promise<never> {
    throw new Error('the fake kernel spawns nothing')
  }
}
