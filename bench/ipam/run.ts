/**
 * IPAM benchmark: `node dist/bench/ipam/run.js [--calls N]`.
 * 1. In-process: fill a /16 (65,534 addresses) through HostAllocator with each strategy; report the
 *    total and the mean cost per allocation around 0%, 50%, 90% and 99% fill.
 * 2. Stored state, in process: one `allocateIp` + `releaseIp` on the ipam/ directory (lock included)
 *    with the /16 empty and half full (32,767 owners): the storage cost alone, without Node's start.
 * 3. CLI: `pn ipam alloc` per call (one process per allocation) against the CNI reference
 *    `host-local` plugin on the same /16, empty and half full, measured in the same run; ratios
 *    pn/host-local and half-full/empty.
 * Prints a table and writes bench/results/ipam.json.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {HostAllocator} from '../../src/ipam/host-allocator.js'
import {allocateIp, ipamDir, releaseIp} from '../../src/ipam/host.js'
import {writeIpamDir} from '../../src/ipam/host-store.js'
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

/** A half-full /16 in the stored format: 32,767 owners (+ the router). */
async function halfFull(stateDir: string): Promise<void> {
  const a = new HostAllocator(HostAllocator.initialState([{cidr: CIDR}]))
  for (let i = 0; i < CAPACITY / 2; i++) a.allocate({owner: `h${i}:eth0`})
  mkdirSync(stateDir, {recursive: true})
  await writeIpamDir(ipamDir(stateDir), a.toState())
}

/** host-local's half-full dataDir: one file per reserved IP, as it writes them. */
function hostLocalHalfFull(dataDir: string): void {
  const dir = path.join(dataDir, 'pnbench')
  mkdirSync(dir, {recursive: true})
  for (let i = 0; i < CAPACITY / 2; i++) {
    const v = 0x0a630000 + 2 + i * 2 // every other address from 10.99.0.2
    const ip = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')
    writeFileSync(path.join(dir, ip), `h${i}\r\neth0`)
  }
}

/** allocateIp + releaseIp in this process: the stored state's cost per call, lock included. */
async function libraryCalls(stateDir: string, tag: string): Promise<number[]> {
  const t = {stateDir, podCidrs: [CIDR]}
  const out: number[] = []
  for (let i = 0; i < CALLS; i++) {
    const t0 = process.hrtime.bigint()
    await allocateIp(t, {owner: `${tag}${i}:eth0`})
    out.push(Number(process.hrtime.bigint() - t0) / 1e6)
    await releaseIp(t, {owner: `${tag}${i}:eth0`})
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

async function main() {
  inProcess('random') // warm-up: let the JIT compile the allocation path before measuring
  const fills = (['random', 'contiguous'] as Strategy[]).map(inProcess)

  const tmp = mkdtempSync(path.join(tmpdir(), 'pn-bench-ipam-'))
  try {
    // Warm the page cache for both binaries so the first call is not an outlier.
    spawnSync(process.execPath, [PN_BIN, '--version'])
    const haveHostLocal = existsSync(HOST_LOCAL)
    const half = path.join(tmp, 'pn-half')
    await halfFull(half)
    const libEmpty = stats(await libraryCalls(path.join(tmp, 'lib-empty'), 'l'))
    const libHalf = stats(await libraryCalls(half, 'l'))
    const pnEmpty = stats(pnCalls(path.join(tmp, 'pn-empty'), 'e'))
    const pnHalf = stats(pnCalls(half, 'x'))
    const floor = stats(Array.from({length: CALLS}, () => time(() => spawnSync(process.execPath, [PN_BIN, '--version']))))
    let hl, hlHalf
    if (haveHostLocal) {
      hl = stats(hostLocalCalls(path.join(tmp, 'host-local')))
      hostLocalHalfFull(path.join(tmp, 'host-local-half'))
      hlHalf = stats(hostLocalCalls(path.join(tmp, 'host-local-half')))
    }

    const result = {
      date: new Date().toISOString(),
      node: process.version,
      range: CIDR,
      inProcess: fills,
      library: {allocEmpty: libEmpty, allocHalfFull: libHalf, ratioHalfOverEmpty: libHalf.p50Ms / libEmpty.p50Ms},
      cli: {
        pnIpamAlloc: pnEmpty,
        pnIpamAllocHalfFull: pnHalf,
        pnStartupFloor: floor,
        hostLocal: hl ?? null,
        hostLocalHalfFull: hlHalf ?? null,
        ratioPnHalfOverEmpty: pnHalf.p50Ms / pnEmpty.p50Ms,
        ratioPnOverHostLocal: hl ? pnEmpty.p50Ms / hl.p50Ms : null,
        ratioPnHalfFullOverHostLocalHalfFull: hl && hlHalf ? pnHalf.p50Ms / hlHalf.p50Ms : null,
      },
    }

    const f = (x: number, d = 2) => x.toFixed(d)
    console.log(`In-process fill of ${CIDR} (${CAPACITY} addresses), HostAllocator`)
    console.log('strategy     total ms   median µs/alloc @0%   @50%    @90%    @99%')
    for (const r of fills) {
      const u = r.usPerAllocAtFill
      console.log(`${r.strategy.padEnd(11)}  ${f(r.totalMs, 1).padStart(8)}   ${f(u['0%']).padStart(19)}  ${f(u['50%']).padStart(6)}  ${f(u['90%']).padStart(6)}  ${f(u['99%']).padStart(6)}`)
    }
    console.log(`\n${CALLS} calls each, ${CIDR}; empty vs half full (32,767 held)`)
    console.log('what                                        mean ms   p50 ms   p90 ms')
    const row = (name: string, s: ReturnType<typeof stats>) =>
      console.log(`${name.padEnd(42)}  ${f(s.meanMs).padStart(7)}  ${f(s.p50Ms).padStart(7)}  ${f(s.p90Ms).padStart(7)}`)
    row('allocateIp in process (empty)', libEmpty)
    row('allocateIp in process (half full)', libHalf)
    row('pn ipam alloc (empty)', pnEmpty)
    row('pn ipam alloc (half full)', pnHalf)
    row('pn --version (node+oclif floor)', floor)
    if (hl && hlHalf) {
      row('host-local ADD (empty)', hl)
      row('host-local ADD (half full)', hlHalf)
    } else console.log(`host-local not found at ${HOST_LOCAL} (apt-get install containernetworking-plugins)`)
    console.log(`\nratio half-full/empty (p50): in process ${f(result.library.ratioHalfOverEmpty)}x, pn ipam alloc ${f(result.cli.ratioPnHalfOverEmpty)}x` +
      (hl && hlHalf ? `, host-local ${f(hlHalf.p50Ms / hl.p50Ms)}x` : ''))
    if (hl && hlHalf) {
      console.log(`ratio pn/host-local (p50): ${f(result.cli.ratioPnOverHostLocal!, 1)}x empty, ${f(result.cli.ratioPnHalfFullOverHostLocalHalfFull!, 1)}x half full`)
    }
    const dir = path.join(REPO, 'bench/results')
    mkdirSync(dir, {recursive: true})
    writeFileSync(path.join(dir, 'ipam.json'), JSON.stringify(result, null, 2) + '\n')
    console.log(`\nwrote ${path.join(dir, 'ipam.json')}`)
  } finally {
    rmSync(tmp, {recursive: true, force: true})
  }
}

await main()
