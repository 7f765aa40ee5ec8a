/**
 * CNI benchmark: the wall time of one ADD and one DEL as a runtime sees it (one plugin process
 * per call, exec'd inside the node's netns), pn against the CNI reference plugins ptp +
 * host-local (Debian containernetworking-plugins) on the same node netns, interleaved call by
 * call in one run. pn runs in routing mode bpf (veth + endpoint + BPF attach + map entries);
 * ptp makes a veth with host routes and an address on the host side. Results (medians, p90,
 * ratios) go to bench/results/cni.json.
 *   node dist/bench/cni/run.js        (PN_BENCH_PODS=N, default 20)
 * PN_BENCH_COMPARE=DIR adds another pn checkout (built, e.g. a `git worktree` of an earlier
 * commit) as a third plugin on its own node, interleaved in the same run: before/after figures
 * for a change, as ratios to the same reference.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {REPO_ROOT} from '../../test/helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../../test/helpers/netns.js'

const PODS = Number(process.env.PN_BENCH_PODS ?? 20)
const BPFFS = '/run/pn/bpffs'
const CNI_BIN = '/usr/lib/cni'
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-cni-'))

function ensureBpffs(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
}

/** One plugin call inside the node netns (nsenter: the runtime's own netns is the node's). */
function call(nodeNs: string, plugin: string[], env: Record<string, string>, conf: object): number {
  const started = process.hrtime.bigint()
  const r = spawnSync('nsenter', [`--net=/run/netns/${nodeNs}`, '--', ...plugin], {
    env: {...process.env, CNI_PATH: CNI_BIN, CNI_IFNAME: 'eth0', ...env},
    input: JSON.stringify(conf),
    encoding: 'utf8',
  })
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  if (r.status !== 0) throw new Error(`${plugin.join(' ')} ${env.CNI_COMMAND}: ${r.stdout} ${r.stderr}`)
  return ms
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b)
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]
  return {median: Number(q(0.5).toFixed(2)), p90: Number(q(0.9).toFixed(2)), mean: Number((s.reduce((a, b) => a + b, 0) / s.length).toFixed(2))}
}

/** A node netns with an uplink stub, initialised by the pn checkout at `repo`. */
function makeNode(repo: string, cidr: string, stateDir: string): string {
  const node = createNamespace('cnib').name
  nodes.push({ns: node, repo, stateDir})
  const stub = createNamespace('cnibu').name
  inNs(node, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', stub])
  inNs(node, ['ip', 'link', 'set', 'eth0', 'up'])
  const init = spawnSync('ip', ['netns', 'exec', node, process.execPath, path.join(repo, 'bin/run.js'), 'node', 'init', '--name', node, '--device', 'eth0',
    '--pod-cidr', cidr, '--bpffs-root', `${BPFFS}/${node}`, '--state-dir', stateDir, '--json'], {encoding: 'utf8'})
  if (init.status !== 0) throw new Error(`pn node init (${repo}): ${init.stdout} ${init.stderr}`)
  return node
}

function main(): void {
  ensureBpffs()
  const compare = process.env.PN_BENCH_COMPARE ? path.resolve(process.env.PN_BENCH_COMPARE) : undefined
  const node = makeNode(REPO_ROOT, '10.97.0.0/24', stateDir)
  const plugins: {name: string; node: string; cmd: string[]; conf: object}[] = [
    {name: 'pn', node, cmd: [process.execPath, path.join(REPO_ROOT, 'bin/pn-cni')], conf: {cniVersion: '1.0.0', name: 'pnbench', type: 'pn', stateDir}},
    {name: 'ptp', node, cmd: [path.join(CNI_BIN, 'ptp')], conf: {cniVersion: '1.0.0', name: 'ptpbench', type: 'ptp', ipam: {type: 'host-local', subnet: '10.98.0.0/24', dataDir: path.join(tmp, 'host-local')}}},
  ]
  if (compare) {
    const baseState = path.join(tmp, 'state-compare')
    const baseNode = makeNode(compare, '10.96.0.0/24', baseState)
    plugins.push({name: 'compare', node: baseNode, cmd: [process.execPath, path.join(compare, 'bin/pn-cni')], conf: {cniVersion: '1.0.0', name: 'pnbase', type: 'pn', stateDir: baseState}})
  }
  const t: Record<string, {add: number[]; del: number[]}> = Object.fromEntries(plugins.map((p) => [p.name, {add: [], del: []}]))

  for (let i = 0; i < PODS; i++) {
    for (const p of plugins) {
      const pod = createNamespace('cnibp').name
      const env = {CNI_CONTAINERID: `${p.name}-bench-${i}`, CNI_NETNS: `/run/netns/${pod}`}
      t[p.name].add.push(call(p.node, p.cmd, {...env, CNI_COMMAND: 'ADD'}, p.conf))
      t[p.name].del.push(call(p.node, p.cmd, {...env, CNI_COMMAND: 'DEL'}, p.conf))
      spawnSync('ip', ['netns', 'del', pod])
    }
  }
  const version = call(node, plugins[0].cmd, {CNI_COMMAND: 'VERSION'}, {cniVersion: '1.0.0'})
  const ratio = (a: number[], b: number[]) => Number((stats(a).median / stats(b).median).toFixed(2))
  const results = {
    pods: PODS,
    pn: {add: stats(t.pn.add), del: stats(t.pn.del)},
    ptpHostLocal: {add: stats(t.ptp.add), del: stats(t.ptp.del)},
    ...(compare ? {compare: {repo: compare, add: stats(t.compare.add), del: stats(t.compare.del)}} : {}),
    pnVersionMs: Number(version.toFixed(2)),
    ratios: {
      add: ratio(t.pn.add, t.ptp.add),
      del: ratio(t.pn.del, t.ptp.del),
      ...(compare ? {compareAdd: ratio(t.compare.add, t.ptp.add), compareDel: ratio(t.compare.del, t.ptp.del), addVsCompare: ratio(t.pn.add, t.compare.add), delVsCompare: ratio(t.pn.del, t.compare.del)} : {}),
    },
  }
  console.log(`CNI ADD/DEL wall time per call, ${PODS} pods each, interleaved (ms)`)
  console.log('what                 ADD p50   ADD p90   DEL p50   DEL p90')
  const rows: [string, {add: ReturnType<typeof stats>; del: ReturnType<typeof stats>}][] = [['pn (bpf mode)', results.pn], ['ptp + host-local', results.ptpHostLocal]]
  if (results.compare) rows.push(['pn (compare build)', results.compare])
  for (const [name, r] of rows) {
    console.log(`${name.padEnd(20)} ${String(r.add.median).padStart(7)}   ${String(r.add.p90).padStart(7)}   ${String(r.del.median).padStart(7)}   ${String(r.del.p90).padStart(7)}`)
  }
  console.log(`ratio pn/reference: ADD ${results.ratios.add}x, DEL ${results.ratios.del}x; pn VERSION ${results.pnVersionMs} ms`)
  if (compare) {
    const r = results.ratios as Record<string, number>
    console.log(`compare build/reference: ADD ${r.compareAdd}x, DEL ${r.compareDel}x; this build/compare build: ADD ${r.addVsCompare}x, DEL ${r.delVsCompare}x`)
  }
  const out = path.join(REPO_ROOT, 'bench/results/cni.json')
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n')
  console.log(`wrote ${out}`)
}

const nodes: {ns: string; repo: string; stateDir: string}[] = []
const stateDir = path.join(tmp, 'state')

try {
  main()
} finally {
  // Each build's own reset unloads its node's programs and removes its pins; then the namespaces go.
  for (const n of nodes) {
    spawnSync('ip', ['netns', 'exec', n.ns, process.execPath, path.join(n.repo, 'bin/run.js'), 'node', 'reset', '--state-dir', n.stateDir, '--json'])
  }
  cleanupNamespaces()
  rmSync(tmp, {recursive: true, force: true})
}
