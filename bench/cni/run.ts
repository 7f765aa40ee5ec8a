/**
 * CNI benchmark: the wall time of one ADD and one DEL as a runtime sees it (one plugin process
 * per call, exec'd inside the node's netns), pn against the CNI reference plugins ptp +
 * host-local (Debian containernetworking-plugins) on the same node netns, interleaved call by
 * call in one run. pn runs in routing mode bpf (veth + endpoint + BPF attach + map entries);
 * ptp makes a veth with host routes and an address on the host side. Results (medians, p90,
 * ratios) go to bench/results/cni.json.
 *   node dist/bench/cni/run.js        (PN_BENCH_PODS=N, default 20)
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn, REPO_ROOT} from '../../test/helpers/cli.js'
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

function main(): void {
  ensureBpffs()
  const node = createNamespace('cnib').name
  nodeNs = node
  const stub = createNamespace('cnibu').name
  inNs(node, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', stub])
  inNs(node, ['ip', 'link', 'set', 'eth0', 'up'])
  const init = pn(['node', 'init', '--name', node, '--device', 'eth0', '--pod-cidr', '10.97.0.0/24', '--bpffs-root', `${BPFFS}/${node}`, '--state-dir', stateDir, '--json'], {netns: node})
  if (init.status !== 0) throw new Error(`pn node init: ${init.stdout} ${init.stderr}`)

  const pnConf = {cniVersion: '1.0.0', name: 'pnbench', type: 'pn', stateDir}
  const ptpConf = {cniVersion: '1.0.0', name: 'ptpbench', type: 'ptp', ipam: {type: 'host-local', subnet: '10.98.0.0/24', dataDir: path.join(tmp, 'host-local')}}
  const pnCmd = [process.execPath, path.join(REPO_ROOT, 'bin/pn-cni')]
  const ptpCmd = [path.join(CNI_BIN, 'ptp')]
  const t = {pnAdd: [] as number[], pnDel: [] as number[], ptpAdd: [] as number[], ptpDel: [] as number[]}

  for (let i = 0; i < PODS; i++) {
    for (const [which, cmd, conf] of [['pn', pnCmd, pnConf], ['ptp', ptpCmd, ptpConf]] as const) {
      const pod = createNamespace('cnibp').name
      const env = {CNI_CONTAINERID: `${which}-bench-${i}`, CNI_NETNS: `/run/netns/${pod}`}
      const add = call(node, [...cmd], {...env, CNI_COMMAND: 'ADD'}, conf)
      const del = call(node, [...cmd], {...env, CNI_COMMAND: 'DEL'}, conf)
      if (which === 'pn') t.pnAdd.push(add), t.pnDel.push(del)
      else t.ptpAdd.push(add), t.ptpDel.push(del)
      spawnSync('ip', ['netns', 'del', pod])
    }
  }
  const version = call(node, pnCmd, {CNI_COMMAND: 'VERSION'}, {cniVersion: '1.0.0'})
  const results = {
    pods: PODS,
    pn: {add: stats(t.pnAdd), del: stats(t.pnDel)},
    ptpHostLocal: {add: stats(t.ptpAdd), del: stats(t.ptpDel)},
    pnVersionMs: Number(version.toFixed(2)),
    ratios: {
      add: Number((stats(t.pnAdd).median / stats(t.ptpAdd).median).toFixed(2)),
      del: Number((stats(t.pnDel).median / stats(t.ptpDel).median).toFixed(2)),
    },
  }
  console.log(`CNI ADD/DEL wall time per call, ${PODS} pods each, interleaved (ms)`)
  console.log('what                 ADD p50   ADD p90   DEL p50   DEL p90')
  for (const [name, r] of [['pn (bpf mode)', results.pn], ['ptp + host-local', results.ptpHostLocal]] as const) {
    console.log(`${name.padEnd(20)} ${String(r.add.median).padStart(7)}   ${String(r.add.p90).padStart(7)}   ${String(r.del.median).padStart(7)}   ${String(r.del.p90).padStart(7)}`)
  }
  console.log(`ratio pn/reference: ADD ${results.ratios.add}x, DEL ${results.ratios.del}x; pn VERSION ${results.pnVersionMs} ms`)
  const out = path.join(REPO_ROOT, 'bench/results/cni.json')
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, JSON.stringify(results, null, 2) + '\n')
  console.log(`wrote ${out}`)
}

let nodeNs: string | undefined
const stateDir = path.join(tmp, 'state')

try {
  main()
} finally {
  // pn's own reset unloads the node's programs and removes its pins; then the namespaces go.
  if (nodeNs) pn(['node', 'reset', '--state-dir', stateDir, '--json'], {netns: nodeNs})
  cleanupNamespaces()
  rmSync(tmp, {recursive: true, force: true})
}
