/**
 * IPAM benchmark: `node dist/bench/ipam/run.js [--calls N]`.
 * 1. In-process: fill a /16 (65,534 addresses) through HostAllocator with each strategy; report the
 *    total and the mean cost per allocation around 0%, 50%, 90% and 99% fill.
 * 2. CLI: `pn ipam alloc` per call (one process per allocation) against the CNI reference
 *    `host-local` plugin on the same /16, measured in the same run; the ratio is pn/host-local.
 * Prints a table and writes bench/results/ipam.json.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {HostAllocator} from '../../src/ipam/host-allocator.js'
import type {Strategy} from '../../src/ipam/bitmap.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const PN_BIN = path.join(REPO, 'bin/run.js')
const HOST_LOCAL = process.env.PN_BENCH_HOST_LOCAL ?? '/usr/lib/cni/host-local'
const CIDR = '10.99.0.0/16'
const CAPACITY = 65534
const argCalls = process.argv.indexOf('--calls')
const CALLS = argCalls > 0 ? Number(process.argv[argCalls + 1]) : 30
const FILLS = [0, 0.5, 0.9, 0.99]
const WINDOW = 256

function inProcess(strategy: Strategy) {
  const a = new HostAllocator(HostAllocator.initialState([{cidr: CIDR}]))
  const n = CAPACITY - 1 // the router holds one
  const per = new Float64Array(n)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint()
    a.allocate({owner: `c${i}:eth0`, strategy})
    per[i] = Number(process.hrtime.bigint() - s)
  }
  const totalMs = Number(process.hrtime.bigint() - t0) / 1e6
  const at: Record<string, number> = {}
  for (const f of FILLS) {
    const start = Math.min(Math.floor(f * CAPACITY), n - WINDOW)
    // Median of a window of allocations starting at this fill: robust to a GC pause landing in it.
    const w = Array.from(per.subarray(start, start + WINDOW)).sort((x, y) => x - y)
    at[`${Math.round(f * 100)}%`] = w[WINDOW >> 1] / 1000 // µs
  }
  return {strategy, allocations: n, totalMs, usPerAllocAtFill: at}
}

function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b)
  const mean = s.reduce((x, y) => x + y, 0) / s.length
  return {calls: s.length, meanMs: mean, p50Ms: s[Math.floor(s.length / 2)], p90Ms: s[Math.floor(s.length * 0.9)], minMs: s[0]}
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

function pnCalls(stateDir: string, tag: string): number[] {
  const out: number[] = []
  for (let i = 0; i < CALLS; i++) {
    out.push(time(() => {
      const r = spawnSync(process.execPath, [PN_BIN, 'ipam', 'alloc', '--state-dir', stateDir, '--pod-cidr', CIDR, '--owner', `${tag}${i}:eth0`, '--json'], {encoding: 'utf8'})
      if (r.status !== 0) throw new Error(`pn ipam alloc failed: ${r.stdout}${r.stderr}`)
    }))
  }
  return out
}

function hostLocalCalls(dataDir: string): number[] {
  const conf = JSON.stringify({cniVersion: '1.0.0', name: 'pnbench', type: 'host-local', ipam: {type: 'host-local', subnet: CIDR, dataDir}})
  const out: number[] = []
  for (let i = 0; i < CALLS; i++) {
    out.push(time(() => {
      const r = spawnSync(HOST_LOCAL, [], {
        input: conf,
        encoding: 'utf8',
        env: {CNI_COMMAND: 'ADD', CNI_CONTAINERID: `bench${i}`, CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(HOST_LOCAL)},
      })
      if (r.status !== 0) throw new Error(`host-local failed: ${r.stdout}${r.stderr}`)
    }))
  }
  return out
}

function main() {
  inProcess('random') // warm-up: let the JIT compile the allocation path before measuring
  const fills = (['random', 'contiguous'] as Strategy[]).map(inProcess)

  const tmp = mkdtempSync(path.join(tmpdir(), 'pn-bench-ipam-'))
  try {
    // Warm the page cache for both binaries so the first call is not an outlier.
    spawnSync(process.execPath, [PN_BIN, '--version'])
    const haveHostLocal = existsSync(HOST_LOCAL)
    const pnEmpty = stats(pnCalls(path.join(tmp, 'pn-empty'), 'e'))
    // The same call against a half-full /16 (32,767 allocations in ipam.json): the load cost.
    const half = path.join(tmp, 'pn-half')
    const a = new HostAllocator(HostAllocator.initialState([{cidr: CIDR}]))
    for (let i = 0; i < CAPACITY / 2; i++) a.allocate({owner: `h${i}:eth0`})
    mkdirSync(half, {recursive: true})
    writeFileSync(path.join(half, 'ipam.json'), JSON.stringify(a.toState(), null, 2) + '\n')
    const pnHalf = stats(pnCalls(half, 'x'))
    const floor = stats(Array.from({length: CALLS}, () => time(() => spawnSync(process.execPath, [PN_BIN, '--version']))))
    const hl = haveHostLocal ? stats(hostLocalCalls(path.join(tmp, 'host-local'))) : undefined

    const result = {
      date: new Date().toISOString(),
      node: process.version,
      range: CIDR,
      inProcess: fills,
      cli: {
        pnIpamAlloc: pnEmpty,
        pnIpamAllocHalfFull: pnHalf,
        pnStartupFloor: floor,
        hostLocal: hl ?? null,
        ratioPnOverHostLocal: hl ? pnEmpty.meanMs / hl.meanMs : null,
        ratioPnHalfFullOverHostLocal: hl ? pnHalf.meanMs / hl.meanMs : null,
      },
    }

    const f = (x: number, d = 2) => x.toFixed(d)
    console.log(`In-process fill of ${CIDR} (${CAPACITY} addresses), HostAllocator`)
    console.log('strategy     total ms   median µs/alloc @0%   @50%    @90%    @99%')
    for (const r of fills) {
      const u = r.usPerAllocAtFill
      console.log(`${r.strategy.padEnd(11)}  ${f(r.totalMs, 1).padStart(8)}   ${f(u['0%']).padStart(19)}  ${f(u['50%']).padStart(6)}  ${f(u['90%']).padStart(6)}  ${f(u['99%']).padStart(6)}`)
    }
    console.log(`\nOne process per allocation, ${CALLS} calls each, ${CIDR}`)
    console.log('what                              mean ms   p50 ms   p90 ms')
    const row = (name: string, s: ReturnType<typeof stats>) =>
      console.log(`${name.padEnd(32)}  ${f(s.meanMs).padStart(7)}  ${f(s.p50Ms).padStart(7)}  ${f(s.p90Ms).padStart(7)}`)
    row('pn ipam alloc (empty state)', pnEmpty)
    row('pn ipam alloc (/16 half full)', pnHalf)
    row('pn --version (node+oclif floor)', floor)
    if (hl) row('host-local ADD (CNI reference)', hl)
    else console.log(`host-local not found at ${HOST_LOCAL} (apt-get install containernetworking-plugins)`)
    if (hl) {
      console.log(`\nratio pn/host-local: ${f(result.cli.ratioPnOverHostLocal!, 1)}x (empty), ${f(result.cli.ratioPnHalfFullOverHostLocal!, 1)}x (half full)`)
    }
    const dir = path.join(REPO, 'bench/results')
    mkdirSync(dir, {recursive: true})
    writeFileSync(path.join(dir, 'ipam.json'), JSON.stringify(result, null, 2) + '\n')
    console.log(`\nwrote ${path.join(dir, 'ipam.json')}`)
  } finally {
    rmSync(tmp, {recursive: true, force: true})
  }
}

main()
