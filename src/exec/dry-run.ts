/**
 * `--dry-run`: run a flow for real against the kernel's current state, but record every change
 * instead of making it. Reads pass through to the real runner; writes (and folder changes) are
 * recorded and answered with success. A flow that reads back what it just "made" (setupVeth
 * reads the new lxc's ifindex) is answered from the recorded `ip link add` lines, with ifindex
 * 0 standing for "assigned by the kernel when this runs".
 */
import {RecordingRunner, type RunOptions, type RunResult, type Runner} from './runner.js'

interface MadeLink {
  name: string
  mac: string
  mtu: number
  netns?: string
}

/** Links created by `ip -batch` lines (`link add name X address M mtu N … peer name Y address M2 mtu N2 [netns P]`). */
export function linksMade(records: {argv: string[]; input?: string; netns?: string}[]): MadeLink[] {
  const out: MadeLink[] = []
  for (const r of records) {
    if (!r.input || !r.argv.includes('-batch')) continue
    for (const line of r.input.split('\n')) {
      const m = /^link add name (\S+) address (\S+) mtu (\d+) .*type veth peer name (\S+) address (\S+) mtu (\d+)(?: netns (\S+))?/.exec(line.trim())
      if (!m) continue
      out.push({name: m[1], mac: m[2], mtu: Number(m[3]), netns: r.netns})
      out.push({name: m[4], mac: m[5], mtu: Number(m[6]), netns: m[7] ?? r.netns})
    }
  }
  return out
}

export class DryRunRunner extends RecordingRunner {
  constructor(inner: Runner) {
    let self: DryRunRunner | undefined
    super((argv: string[], opts: RunOptions): Partial<RunResult> | undefined => {
      if (!opts.readOnly || !self) return undefined
      // `ip -j -d link show dev X` (possibly through nsenter) for a link this dry run "made".
      const ip = argv[0] === 'nsenter' ? argv.slice(3) : argv
      const i = ip.indexOf('dev')
      if (ip[0] !== 'ip' || !ip.includes('link') || !ip.includes('show') || i < 0) return undefined
      const made = linksMade(self.records).find((l) => l.name === ip[i + 1] && (l.netns ?? '') === (opts.netns ?? ''))
      if (!made) return undefined
      return {stdout: JSON.stringify([{ifindex: 0, ifname: made.name, mtu: made.mtu, address: made.mac, flags: ['UP'], linkinfo: {info_kind: 'veth'}, link_index: 0}])}
    }, inner)
    self = this
  }

  /**
   * A clsact qdisc this dry run already "added" answers the second add the way the kernel would
   * (`Exclusivity flag on`), so the flow takes its has-a-qdisc path and the listing shows one add.
   */
  override async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (file === 'tc' && args[0] === 'qdisc' && args[1] === 'add' && args.includes('clsact')) {
      const dev = args[args.indexOf('dev') + 1]
      const again = this.records.some((r) => r.argv[0] === 'tc' && r.argv[1] === 'qdisc' && r.argv[2] === 'add' && r.argv[r.argv.indexOf('dev') + 1] === dev)
      if (again) {
        const result = {argv: [file, ...args], exitCode: 2, stdout: '', stderr: 'Error: Exclusivity flag on, cannot modify.'}
        if (opts.allowFailure) return result
      }
    }
    return super.run(file, args, opts)
  }
}
