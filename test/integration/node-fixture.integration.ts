/**
 * Shared fixture of the node/veth integration tests (no tests here): a node netns with an uplink
 * veth whose other end is in a "network" netns, a fresh state dir, and the bpffs under /run/pn.
 */
import {execFileSync} from 'node:child_process'
import {mkdirSync, mkdtempSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {createNamespace, inNs} from '../helpers/netns.js'

const BPFFS = '/run/pn/bpffs'

/** The bpffs must exist in the test's mount ns before `ip netns exec` copies it. */
export function ensureBpffsMounted(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') {
    execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
  }
}

export function makeNode(tag: string): {node: string; net: string; stateDir: string; bpffsRoot: string; run: (args: string[]) => ReturnType<typeof pn>} {
  const node = createNamespace(tag)
  const net = createNamespace(tag + 'n')
  inNs(node.name, ['ip', 'link', 'add', 'eth0', 'mtu', '1450', 'type', 'veth', 'peer', 'name', 'up0', 'netns', net.name])
  inNs(node.name, ['ip', 'link', 'set', 'eth0', 'up'])
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-node-'))
  const bpffsRoot = path.join(BPFFS, node.name)
  return {
    node: node.name,
    net: net.name,
    stateDir,
    bpffsRoot,
    run: (args) => pn([...args, '--state-dir', stateDir, '--json'], {netns: node.name}),
  }
}

