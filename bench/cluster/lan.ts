/**
 * The outer half of a real-node cluster bench: a LAN namespace with a bridge at `<lan>.254`, and
 * the bench itself run again inside it (`--inside LAN`), so etcd and the test process reach the
 * nodes' uplinks on the bridge. Used by bench/cluster/nodes.ts and bench/policy/cluster.ts.
 */
import {spawn} from 'node:child_process'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs, isRoot} from '../../test/helpers/netns.js'

export interface LanBench {
  /** What the bench is, for the root error. */
  name: string
  /** The script to run again inside the LAN namespace (its own path). */
  self: string
  /** The LAN's first three octets; the bridge is `.254`. */
  lan: string
  /** Namespace name tag (pn-<tag>…). */
  tag: string
  /** The bench proper, inside the LAN namespace. */
  inside: (lanNs: string) => Promise<void>
}

/** Run `b` as a process: inside the LAN when given `--inside`, else make the LAN and run itself there. */
export function runLanBench(b: LanBench): void {
  const main = async (): Promise<void> => {
    const i = process.argv.indexOf('--inside')
    if (i > 0) return b.inside(process.argv[i + 1])
    if (!isRoot()) throw new Error(`${b.name} needs root (namespaces, eBPF)`)
    const lan = createNamespace(b.tag).name
    try {
      inNs(lan, ['ip', 'link', 'add', 'br0', 'type', 'bridge'])
      inNs(lan, ['ip', 'addr', 'add', `${b.lan}.254/24`, 'dev', 'br0'])
      inNs(lan, ['ip', 'link', 'set', 'br0', 'up'])
      const code = await new Promise<number>((resolve) => {
        const child = spawn('ip', ['netns', 'exec', lan, process.execPath, b.self, ...process.argv.slice(2), '--inside', lan], {stdio: 'inherit'})
        child.on('exit', (c) => resolve(c ?? 1))
      })
      process.exitCode = code
    } finally {
      deleteNamespace(lan)
    }
  }
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
    cleanupNamespaces()
  })
}
