/**
 * Datapath benchmark: two pods on one node, pod↔pod, in three set-ups built side by side in
 * `pn-` namespaces, measured in the same run, interleaved round by round:
 *   bpf    — `pn node init --routing bpf`: from-container delivers by bpf_redirect_peer
 *   routed — `--routing host-routes`: podIP/32 routes on the node, no BPF (kernel forwarding)
 *   veth   — one veth pair between two namespaces (the physical limit here)
 *   bpf+monitor — the bpf pods again while `pn monitor --json` runs on their node: the trace gate
 *            is open, every packet emits its events and the monitor reads and decodes them
 *            (printing to /dev/null). `bpf` itself is the gate-closed figure: tracing compiled
 *            in, no monitor attached.
 *   bpf ipv6 — the bpf pods again over IPv6 (that node is dual stack): the same path for IPv6
 * Metrics: TCP throughput (iperf3 -t 3) and TCP request/response rate (rr.js, 1-byte echo).
 * Results (medians, ratios) go to bench/results/datapath.json.
 *   node dist/bench/datapath/run.js      (or bash bench/datapath/run.sh)
 */
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {pn, REPO_ROOT} from '../../test/helpers/cli.js'
import {cleanupNamespaces, createNamespace, inNs} from '../../test/helpers/netns.js'

const ROUNDS = Number(process.env.PN_BENCH_ROUNDS ?? 3)
const IPERF_SECONDS = Number(process.env.PN_BENCH_IPERF_SECONDS ?? 3)
const RR_SECONDS = Number(process.env.PN_BENCH_RR_SECONDS ?? 2)
const RR_JS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rr.js')
const BPFFS = '/run/pn/bpffs'

const children: ChildProcess[] = []
const stateDirs: string[] = []
const nodes: {ns: string; stateDir: string}[] = []

interface Pair {
  name: string
  client: string
  server: string
  serverIp: string
  /** Run `pn monitor` on this node while measuring. */
  monitor?: {ns: string; stateDir: string}
}

/** Start `pn monitor --json` on a node and wait until it listens; returns a stop function. */
async function startMonitor(node: {ns: string; stateDir: string}): Promise<() => Promise<void>> {
  const child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, path.join(REPO_ROOT, 'bin/run.js'), 'monitor', '--json', '--state-dir', node.stateDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  children.push(child)
  await new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr!.on('data', (d) => {
      err += String(d)
      if (err.includes('listening')) resolve()
    })
    child.once('exit', () => reject(new Error(`pn monitor exited: ${err}`)))
  })
  return async () => {
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGINT')
    await exited
  }
}

function run(ns: string, node: {stateDir: string}, args: string[]) {
  const r = pn([...args, '--state-dir', node.stateDir, '--json'], {netns: ns})
  if (r.status !== 0) throw new Error(`pn ${args.join(' ')}: ${r.stdout} ${r.stderr}`)
  return r.json?.result
}

function ensureBpffs(): void {
  mkdirSync(BPFFS, {recursive: true})
  if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
}

/** A node namespace with an uplink (to a stub netns) and two pods. */
function nodeWithPods(tag: string, routing: 'bpf' | 'host-routes', cidrByte: number, dual = false): Pair {
  const ns = createNamespace(tag).name
  const stub = createNamespace(tag + 'u').name
  inNs(ns, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', stub])
  inNs(ns, ['ip', 'link', 'set', 'eth0', 'up'])
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-'))
  stateDirs.push(stateDir)
  const node = {ns, stateDir}
  nodes.push(node)
  const v6 = dual ? ['--pod-cidr', `fd00:${cidrByte}::/112`] : []
  run(ns, node, ['node', 'init', '--name', ns, '--device', 'eth0', '--pod-cidr', `10.${cidrByte}.0.0/24`, ...v6, '--routing', routing])
  const pods: string[] = []
  for (const i of [10, 11]) {
    const pod = createNamespace(tag + 'p').name
    const r = run(ns, node, ['veth', 'create', '--container-id', pod, '--netns', `/run/netns/${pod}`, '--ip', `10.${cidrByte}.0.${i}`, ...(dual ? ['--ip', `fd00:${cidrByte}::${i}`] : [])])
    if (routing === 'bpf') run(ns, node, ['bpf', 'load', '--container-id', pod])
    // Without BPF nothing answers the pod's ARP for its router IP on the lxc; proxy ARP does.
    else inNs(ns, ['sysctl', '-qw', `net.ipv4.conf.${r.hostIfname}.proxy_arp=1`])
    pods.push(pod)
  }
  return {name: routing === 'bpf' ? 'bpf' : 'routed', client: pods[0], server: pods[1], serverIp: `10.${cidrByte}.0.11`}
}

function vethPair(): Pair {
  const a = createNamespace('bdva').name
  const b = createNamespace('bdvb').name
  inNs(a, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b])
  inNs(a, ['ip', 'addr', 'add', '10.199.0.1/24', 'dev', 'eth0'])
  inNs(b, ['ip', 'addr', 'add', '10.199.0.2/24', 'dev', 'eth0'])
  inNs(a, ['ip', 'link', 'set', 'eth0', 'up'])
  inNs(b, ['ip', 'link', 'set', 'eth0', 'up'])
  return {name: 'veth', client: a, server: b, serverIp: '10.199.0.2'}
}

async function startServer(ns: string, argv: string[], ready: RegExp | undefined): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], {stdio: ['ignore', 'pipe', 'ignore']})
  children.push(child)
  if (ready) {
    await new Promise<void>((resolve) => {
      child.stdout!.on('data', (d) => ready.test(String(d)) && resolve())
      setTimeout(resolve, 2000)
    })
  } else {
    await new Promise((r) => setTimeout(r, 300))
  }
  return child
}

async function throughput(p: Pair, port: number): Promise<number> {
  const server = await startServer(p.server, ['iperf3', '-s', '-1', '-p', String(port)], /listening/i)
  const r = spawnSync('ip', ['netns', 'exec', p.client, 'iperf3', '-c', p.serverIp, '-p', String(port), '-t', String(IPERF_SECONDS), '-J'], {encoding: 'utf8'})
  server.kill()
  if (r.status !== 0) throw new Error(`iperf3 ${p.name}: ${r.stdout.slice(0, 300)} ${r.stderr}`)
  return (JSON.parse(r.stdout).end.sum_received.bits_per_second as number) / 1e9
}

async function requestResponse(p: Pair, port: number): Promise<number> {
  const server = await startServer(p.server, [process.execPath, RR_JS, 'server', String(port)], /listening/)
  const r = spawnSync('ip', ['netns', 'exec', p.client, process.execPath, RR_JS, 'client', p.serverIp, String(port), String(RR_SECONDS)], {encoding: 'utf8'})
  server.kill()
  if (r.status !== 0) throw new Error(`rr ${p.name}: ${r.stderr}`)
  return JSON.parse(r.stdout).rate as number
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill()
  for (const n of nodes) {
    pn(['node', 'reset', '--state-dir', n.stateDir, '--json'], {netns: n.ns})
    rmSync(path.join(BPFFS, n.ns), {recursive: true, force: true})
  }
  cleanupNamespaces()
  for (const d of stateDirs) rmSync(d, {recursive: true, force: true})
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (it builds network namespaces)')
  ensureBpffs()
  const bpfPair = nodeWithPods('bdb', 'bpf', 181, true)
  const pairs: Pair[] = [bpfPair, nodeWithPods('bdr', 'host-routes', 182), vethPair(), {...bpfPair, name: 'bpf+monitor', monitor: nodes[0]},
    {...bpfPair, name: 'bpf ipv6', serverIp: 'fd00:181::11'}]
  for (const p of pairs) {
    const r = spawnSync('ip', ['netns', 'exec', p.client, 'ping', '-c', '2', '-W', '1', '-i', '0.2', p.serverIp])
    if (r.status !== 0) throw new Error(`${p.name}: client cannot reach ${p.serverIp}`)
  }
  const samples: Record<string, {gbps: number[]; rr: number[]}> = Object.fromEntries(pairs.map((p) => [p.name, {gbps: [], rr: []}]))
  let port = 5400
  for (let round = 0; round < ROUNDS; round++) {
    for (const p of pairs) {
      const stop = p.monitor ? await startMonitor(p.monitor) : undefined
      samples[p.name].gbps.push(await throughput(p, port++))
      samples[p.name].rr.push(await requestResponse(p, port++))
      await stop?.()
      process.stderr.write(`round ${round + 1} ${p.name}: ${samples[p.name].gbps.at(-1)!.toFixed(2)} Gbit/s, ${Math.round(samples[p.name].rr.at(-1)!)} rr/s\n`)
    }
  }
  const result = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, {tcpGbps: median(v.gbps), rrPerSec: median(v.rr), samples: v}]))
  const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000
  const report = {
    date: new Date().toISOString(),
    kernel: os.release(),
    cpus: os.cpus().length,
    rounds: ROUNDS,
    iperfSeconds: IPERF_SECONDS,
    rrSeconds: RR_SECONDS,
    results: result,
    ratios: {
      tcp: {bpfVsRouted: ratio(result.bpf.tcpGbps, result.routed.tcpGbps), bpfVsVeth: ratio(result.bpf.tcpGbps, result.veth.tcpGbps)},
      rr: {bpfVsRouted: ratio(result.bpf.rrPerSec, result.routed.rrPerSec), bpfVsVeth: ratio(result.bpf.rrPerSec, result.veth.rrPerSec)},
      ipv6: {tcpVsIpv4: ratio(result['bpf ipv6'].tcpGbps, result.bpf.tcpGbps), rrVsIpv4: ratio(result['bpf ipv6'].rrPerSec, result.bpf.rrPerSec)},
      monitor: {
        tcpTracedVsBpf: ratio(result['bpf+monitor'].tcpGbps, result.bpf.tcpGbps),
        rrTracedVsBpf: ratio(result['bpf+monitor'].rrPerSec, result.bpf.rrPerSec),
      },
    },
  }
  const out = path.join(REPO_ROOT, 'bench/results/datapath.json')
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(JSON.stringify({results: Object.fromEntries(Object.entries(result).map(([k, v]) => [k, {tcpGbps: +v.tcpGbps.toFixed(2), rrPerSec: Math.round(v.rrPerSec)}])), ratios: report.ratios, file: out}, null, 2) + '\n')
}

main()
  .catch((err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  })
  .finally(cleanup)
