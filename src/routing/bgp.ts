/**
 * `pn bgp up / down / status`: announce the node's pod CIDRs to routers with bird2, the way a
 * Cilium cluster in a data centre makes pod IPs routable with the node as next hop.
 *
 * One bird per node, run in the node's network namespace (pn itself runs there, under
 * `ip netns exec NODE`), owned through `<state-dir>/bgp/bird.pid` and reached through its own
 * control socket `<state-dir>/bgp/bird.ctl`, so several lab nodes on one machine never see each
 * other's bird. Every change happens under the lock `<state-dir>/bgp.lock`.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {canonicalIp, formatCidr, parseCidr, tryParseIp, type Family} from '../cidr/cidr.js'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {applyOne} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'
import {HOST_DEVICE, requireNodeContext, type NodeContext} from '../node/context.js'
import {ensureDir, renameDurable, withLock, writeFileAtomic} from '../state/files.js'
import {peerProtocolName, renderBirdConfig, type BgpPeer, type BirdConfigSpec} from './bird-config.js'
import {runningBirdPid, stopBird, waitFor, type BirdFiles} from './bird-process.js'
import {birdcError, parseBirdProtocols, parseBirdRoutes} from './birdc.js'

/** How long a birdc call or bird start may take before pn gives up (never hang on a stuck bird). */
const BIRD_TIMEOUT_MS = 15_000
/** Longest unix socket path (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107

export function birdFiles(stateDir: string): BirdFiles {
  const dir = path.join(stateDir, 'bgp')
  return {
    dir,
    config: path.join(dir, 'bird.conf'),
    socket: path.join(dir, 'bird.ctl'),
    pidFile: path.join(dir, 'bird.pid'),
    log: path.join(dir, 'bird.log'),
  }
}

function lockTarget(stateDir: string): string {
  return path.join(stateDir, 'bgp')
}

// ---------------------------------------------------------------------------------------------
// Validation (pure)

/**
 * An AS number: 1..4294967294 (RFC 6793 4-byte), not 23456 (AS_TRANS, a placeholder on the
 * wire). asdot ("1.10") is not accepted; write the plain number (65546).
 */
export function parseAsn(value: string | number, what = 'AS number'): number {
  const text = String(value).trim()
  const n = /^\d{1,10}$/.test(text) ? Number(text) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 4294967294 || n === 23456) {
    throw new PnError('PN_INVALID_ARGUMENT', `check ${what} ${JSON.stringify(String(value))}: not a usable AS number (1-4294967294, not 23456)`, {
      hint: 'use a private AS number such as 64512-65534 (2-byte) or 4200000000-4294967294 (4-byte)',
    })
  }
  return n
}

/** Peers from `--peer IP` (repeatable) and `--peer-as N` (once for all, or once per peer). */
export function parsePeers(peers: string[], peerAs: (string | number)[]): BgpPeer[] {
  if (peers.length === 0) {
    throw new PnError('PN_INVALID_ARGUMENT', 'check peers: no --peer given', {hint: 'pass --peer IP --peer-as N (repeat --peer for more routers)'})
  }
  if (peerAs.length !== 1 && peerAs.length !== peers.length) {
    throw new PnError('PN_INVALID_ARGUMENT', `check peers: ${peers.length} --peer but ${peerAs.length} --peer-as`, {
      hint: 'give --peer-as once (the same AS for every peer) or once per --peer, in the same order',
    })
  }
  const out: BgpPeer[] = []
  peers.forEach((text, i) => {
    const ip = tryParseIp(text)
    if (!ip) {
      throw new PnError('PN_INVALID_IP', `check peer ${JSON.stringify(text)}: not an IPv4 or IPv6 address`, {hint: 'write the router address, e.g. --peer 10.99.0.1'})
    }
    const address = canonicalIp(text)
    if (out.some((p) => p.address === address)) {
      throw new PnError('PN_INVALID_ARGUMENT', `check peer ${address}: given twice`, {hint: 'give each router once'})
    }
    out.push({address, family: ip.family, as: parseAsn(peerAs.length === 1 ? peerAs[0] : peerAs[i], `peer AS of ${address}`), name: peerProtocolName(address)})
  })
  return out
}

/** A BGP router id is a 32-bit number written as an IPv4 address (not 0.0.0.0). */
export function parseRouterId(text: string): string {
  const ip = tryParseIp(text)
  if (!ip || ip.family !== 4 || ip.value === 0n) {
    throw new PnError('PN_INVALID_IP', `check router id ${JSON.stringify(text)}: not a non-zero IPv4 address`, {
      hint: 'a router id is written like an IPv4 address, e.g. --router-id 10.99.0.2 (the uplink IPv4 address is the default)',
    })
  }
  return canonicalIp(text)
}

export interface BgpSpecInput {
  node: Pick<NodeContext, 'name' | 'podCidrs'>
  localAs: string | number
  peers: string[]
  peerAs: (string | number)[]
  routerId?: string
  importRoutes?: boolean
  /** The uplink's global addresses per family. */
  uplinkAddresses: Partial<Record<Family, string>>
  logFile: string
}

/** Flags + node + uplink addresses → the bird config spec (pure; every argument error here). */
export function buildBirdSpec(input: BgpSpecInput): {spec: BirdConfigSpec; warnings: string[]} {
  const localAs = parseAsn(input.localAs, 'local AS')
  const peers = parsePeers(input.peers, input.peerAs)
  const warnings: string[] = []
  const routerId = input.routerId ? parseRouterId(input.routerId) : input.uplinkAddresses[4]
  if (!routerId) {
    throw new PnError('PN_INVALID_ARGUMENT', `announce pod cidrs of node ${input.node.name}: no router id (the uplink has no IPv4 address)`, {
      hint: 'pass --router-id A.B.C.D',
    })
  }
  for (const p of peers) {
    const own = input.uplinkAddresses[p.family]
    if (!own) {
      throw new PnError('PN_INVALID_ARGUMENT', `check peer ${p.address}: the uplink has no IPv${p.family} address to peer from`, {
        hint: `add an IPv${p.family} address to the node's uplink, or peer over the family it has`,
      })
    }
    if (own === p.address) throw new PnError('PN_INVALID_ARGUMENT', `check peer ${p.address}: that is this node's own uplink address`, {hint: 'peer with the router (ToR) address'})
  }
  const podCidrs = input.node.podCidrs.map((c) => {
    const {cidr} = parseCidr(c)
    return {cidr: formatCidr(cidr), family: cidr.family}
  })
  for (const c of podCidrs) {
    if (!peers.some((p) => p.family === c.family)) warnings.push(`pod cidr ${c.cidr} is announced to no one: no IPv${c.family} peer`)
  }
  return {
    spec: {
      node: input.node.name,
      routerId,
      localAs,
      peers,
      podCidrs,
      nextHops: input.uplinkAddresses,
      importRoutes: input.importRoutes ?? false,
      logFile: input.logFile,
    },
    warnings,
  }
}

// ---------------------------------------------------------------------------------------------
// Kernel and bird (through the runner)

/** The uplink's first global IPv4 and IPv6 addresses (the BGP source and next hop). */
export async function uplinkAddresses(runner: Runner, uplink: string): Promise<Partial<Record<Family, string>>> {
  // An absent device has no addresses: no entry at all (a device without addresses has one).
  const {links} = await applyOne(kernelFor(runner), {kind: 'addr.list', dev: uplink})
  if (links.length === 0) {
    throw new PnError('PN_LINK_NOT_FOUND', `read addresses of uplink ${uplink}: no such device`, {
      hint: 'run pn inside the node\'s network namespace (ip netns exec NODE pn bgp …)',
    })
  }
  const out: Partial<Record<Family, string>> = {}
  for (const a of links[0]?.addr_info ?? []) {
    if (a.scope !== 'global' || !a.local) continue
    const f: Family = a.family === 'inet6' ? 6 : 4
    out[f] ??= a.local
  }
  return out
}

/** `birdc -s SOCK …`: stdout, or PN_BGP_FAILED with bird's own words. */
async function birdc(runner: Runner, files: BirdFiles, args: string[], readOnly = true): Promise<string> {
  const r = await runner.run('birdc', ['-s', files.socket, ...args], {readOnly, allowFailure: true, timeoutMs: BIRD_TIMEOUT_MS})
  const err = r.exitCode !== 0 ? r.stdout.trim() || r.stderr.trim() || `exit code ${r.exitCode}` : birdcError(r.stdout)
  if (err) {
    throw new PnError('PN_BGP_FAILED', `run birdc ${args.join(' ')}: ${err.split('\n').slice(-2).join('; ')}`, {
      hint: `see ${files.log}; pn bgp status shows the sessions`,
      details: {argv: r.argv, stdout: r.stdout},
    })
  }
  return r.stdout
}

/** `bird -p`: parse the config only, so a config bird rejects is never installed. */
async function checkConfig(runner: Runner, file: string): Promise<void> {
  const r = await runner.run('bird', ['-p', '-c', file], {readOnly: true, allowFailure: true, timeoutMs: BIRD_TIMEOUT_MS})
  if (r.exitCode !== 0) {
    throw new PnError('PN_BGP_FAILED', `check bird config ${file}: ${(r.stderr || r.stdout).trim()}`, {
      hint: 'this is a bug in the pn renderer or an unsupported bird version (pn needs bird 2.0)',
      details: {argv: r.argv},
    })
  }
}

/** Who listens on TCP 179 in this network namespace (another BGP speaker), as ss prints it. */
async function bgpListener(runner: Runner): Promise<string | undefined> {
  const r = await runner.run('ss', ['-Hltnp', 'sport = :179'], {readOnly: true, allowFailure: true})
  const line = r.stdout.split('\n').find((l) => l.trim() !== '')
  return line?.trim().replace(/\s+/g, ' ')
}

function birdMissingHint(err: unknown): never {
  if (err instanceof PnError && err.code === 'PN_TOOL_MISSING') {
    throw new PnError('PN_TOOL_MISSING', `run bird: bird2 is not installed`, {hint: 'apt-get install bird2 (or run scripts/bootstrap.sh)'})
  }
  throw err
}

// ---------------------------------------------------------------------------------------------
// up / down / status

export interface BgpUpOptions {
  stateDir: string
  localAs: string | number
  peers: string[]
  /** Once for every peer, or once per peer. */
  peerAs: (string | number)[]
  routerId?: string
  /** Install learned routes into the node's kernel table. */
  importRoutes?: boolean
}

export interface BgpUpResult {
  changed: boolean
  /** started: a new bird; reconfigured: birdc configure on the running one; unchanged: nothing to do. */
  action: 'started' | 'reconfigured' | 'unchanged'
  node: string
  pid: number
  routerId: string
  localAs: number
  peers: {address: string; as: number; protocol: string}[]
  /** The prefixes this node announces (its pod CIDRs). */
  announces: string[]
  importRoutes: boolean
  config: string
  socket: string
  sessions: BgpSession[]
  warnings?: string[]
}

/**
 * Render the config and make the node's bird run it: start one (checking nobody else speaks BGP
 * here), reconfigure the running one when the config changed (bird keeps the sessions whose
 * protocol text did not change), or do nothing.
 */
export async function bgpUp(runner: Runner, opts: BgpUpOptions): Promise<BgpUpResult> {
  const node = await requireNodeContext(opts.stateDir)
  const files = birdFiles(opts.stateDir)
  if (files.socket.length > MAX_SOCKET_PATH || /["\n\\]/.test(files.dir)) {
    throw new PnError('PN_INVALID_ARGUMENT', `start bird for node ${node.name}: state dir ${opts.stateDir} makes an unusable control socket path`, {
      hint: `use a state dir path under ${MAX_SOCKET_PATH - 13} characters without quotes or backslashes`,
    })
  }
  // Validate the flags before touching the kernel, then make sure we are in the node's netns.
  parseAsn(opts.localAs, 'local AS')
  parsePeers(opts.peers, opts.peerAs)
  if (opts.routerId) parseRouterId(opts.routerId)
  const {link: host} = await applyOne(kernelFor(runner), {kind: 'link.get', name: HOST_DEVICE})
  if (!host) {
    throw new PnError('PN_LINK_NOT_FOUND', `start bird for node ${node.name}: ${HOST_DEVICE} is not in this network namespace`, {
      hint: "run pn in the node's network namespace (ip netns exec NODE pn bgp up …), after pn node init",
    })
  }
  const {spec, warnings} = buildBirdSpec({
    node,
    localAs: opts.localAs,
    peers: opts.peers,
    peerAs: opts.peerAs,
    routerId: opts.routerId,
    importRoutes: opts.importRoutes,
    uplinkAddresses: await uplinkAddresses(runner, node.uplink),
    logFile: files.log,
  })
  const text = renderBirdConfig(spec)

  return withLock(lockTarget(opts.stateDir), async () => {
    await ensureDir(files.dir)
    let pid = await runningBirdPid(files)
    const current = await fs.readFile(files.config, 'utf8').catch(() => undefined)
    let action: BgpUpResult['action']
    if (pid !== undefined && current === text) {
      action = 'unchanged'
    } else {
      const candidate = `${files.config}.new`
      await writeFileAtomic(candidate, text)
      try {
        await checkConfig(runner, candidate).catch(birdMissingHint)
        if (pid !== undefined) {
          await renameDurable(candidate, files.config)
          try {
            await reconfigure(runner, files)
          } catch (err) {
            // bird still runs the old config: put its text back, so a rerun is not "unchanged".
            if (current !== undefined) await writeFileAtomic(files.config, current)
            else await fs.rm(files.config, {force: true})
            throw err
          }
          action = 'reconfigured'
        } else {
          await assertNoOtherSpeaker(runner, files, node.name)
          await renameDurable(candidate, files.config)
          pid = await startBird(runner, files, node.name)
          action = 'started'
        }
      } finally {
        await fs.rm(candidate, {force: true})
      }
    }
    const status = await readSessions(runner, files, spec.peers.map((p) => p.name))
    return {
      changed: action !== 'unchanged',
      action,
      node: node.name,
      pid: pid!,
      routerId: spec.routerId,
      localAs: spec.localAs,
      peers: spec.peers.map((p) => ({address: p.address, as: p.as, protocol: p.name})),
      announces: spec.podCidrs.map((c) => c.cidr),
      importRoutes: spec.importRoutes,
      config: files.config,
      socket: files.socket,
      sessions: status,
      ...(warnings.length ? {warnings} : {}),
    }
  })
}

async function reconfigure(runner: Runner, files: BirdFiles): Promise<void> {
  const out = await birdc(runner, files, ['configure'], false)
  if (!/Reconfigured|Reconfiguration in progress|queueing new config/i.test(out)) {
    throw new PnError('PN_BGP_FAILED', `reconfigure bird ${files.socket}: ${out.trim().split('\n').slice(-1)[0] ?? 'no answer'}`, {hint: `see ${files.log}`})
  }
}

/** A second pn bird for the same node, or any other speaker on port 179 here, is refused. */
async function assertNoOtherSpeaker(runner: Runner, files: BirdFiles, node: string): Promise<void> {
  const probe = await runner.run('birdc', ['-s', files.socket, 'show', 'status'], {readOnly: true, allowFailure: true, timeoutMs: BIRD_TIMEOUT_MS}).catch(birdMissingHint)
  if (probe.exitCode === 0 && /BIRD .* ready/.test(probe.stdout)) {
    throw new PnError('PN_BGP_CONFLICT', `start bird for node ${node}: a bird already answers on ${files.socket} but ${files.pidFile} does not name it`, {
      hint: 'another pn bird for this node is running without its pid file; stop it (birdc -s SOCKET down) and rerun',
      details: {socket: files.socket},
    })
  }
  const listener = await bgpListener(runner)
  if (listener) {
    throw new PnError('PN_BGP_CONFLICT', `start bird for node ${node}: another BGP speaker listens on port 179 in this network namespace (${listener})`, {
      hint: 'one BGP speaker per node: stop the other one (pn bgp down --state-dir OTHER), or use pn bgp up with the state dir that owns it',
      details: {listener},
    })
  }
}

/** Start bird (it daemonises), then wait for its pid file and control socket. */
async function startBird(runner: Runner, files: BirdFiles, node: string): Promise<number> {
  await fs.rm(files.pidFile, {force: true})
  await fs.rm(files.socket, {force: true})
  const r = await runner
    .run('bird', ['-c', files.config, '-s', files.socket, '-P', files.pidFile], {allowFailure: true, timeoutMs: BIRD_TIMEOUT_MS})
    .catch(birdMissingHint)
  if (r.exitCode !== 0) {
    throw new PnError('PN_BGP_FAILED', `start bird for node ${node}: ${(r.stderr || r.stdout).trim() || `exit code ${r.exitCode}`}`, {
      hint: `see ${files.log}`,
      details: {argv: r.argv},
    })
  }
  let pid: number | undefined
  const up = await waitFor(async () => {
    pid = await runningBirdPid(files)
    return pid !== undefined && (await fs.stat(files.socket).then(() => true, () => false))
  }, 5000)
  if (!up || pid === undefined) {
    const log = await fs.readFile(files.log, 'utf8').catch(() => '')
    throw new PnError('PN_BGP_FAILED', `start bird for node ${node}: it exited or wrote no pid file (${log.trim().split('\n').slice(-1)[0] || 'no log'})`, {
      hint: `see ${files.log}`,
    })
  }
  return pid
}

export interface BgpRoute {
  prefix: string
  nextHops: string[]
  asPath?: string
}

export interface BgpSession {
  /** bird protocol name (peer_<address>). */
  protocol: string
  peer?: string
  peerAs?: number
  localAs?: number
  /** bird's protocol state: up, start, down. */
  state: string
  /** BGP FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established. */
  bgpState: string
  established: boolean
  /** When the protocol entered its state (ISO), and how long ago (seconds). */
  since?: string
  uptimeSeconds?: number
  lastError?: string
  announced: string[]
  received: BgpRoute[]
}

async function readSessions(runner: Runner, files: BirdFiles, only?: string[], now = Date.now()): Promise<BgpSession[]> {
  const protocols = parseBirdProtocols(await birdc(runner, files, ['show', 'protocols', 'all'])).filter(
    (p) => p.proto === 'BGP' && (!only || only.includes(p.name)),
  )
  const sessions: BgpSession[] = []
  for (const p of protocols) {
    const established = p.bgp?.state === 'Established'
    const sinceSec = /^\d+$/.test(p.since) ? Number(p.since) : undefined
    const announced = established ? parseBirdRoutes(await birdc(runner, files, ['show', 'route', 'export', p.name])).map((r) => r.prefix) : []
    const received = established
      ? parseBirdRoutes(await birdc(runner, files, ['show', 'route', 'protocol', p.name])).map((r) => ({prefix: r.prefix, nextHops: r.nextHops, ...(r.asPath ? {asPath: r.asPath} : {})}))
      : []
    sessions.push({
      protocol: p.name,
      ...(p.bgp?.neighborAddress ? {peer: p.bgp.neighborAddress} : {}),
      ...(p.bgp?.neighborAs ? {peerAs: p.bgp.neighborAs} : {}),
      ...(p.bgp?.localAs ? {localAs: p.bgp.localAs} : {}),
      state: p.state,
      bgpState: p.bgp?.state ?? (p.info.split(/\s+/)[0] || p.state),
      established,
      ...(sinceSec !== undefined ? {since: new Date(sinceSec * 1000).toISOString(), uptimeSeconds: Math.max(0, Math.round(now / 1000 - sinceSec))} : {}),
      ...(p.bgp?.lastError ? {lastError: p.bgp.lastError} : {}),
      announced: [...new Set(announced)],
      received,
    })
  }
  return sessions
}

export interface BgpStatusResult {
  node: string
  running: boolean
  pid?: number
  config: string
  socket: string
  sessions: BgpSession[]
  /** Union of what the sessions announce. */
  announced: string[]
  /** Union of what the sessions received. */
  received: BgpRoute[]
  warnings?: string[]
}

/** Sessions (state, uptime), announced and received prefixes of the node's bird. */
export async function bgpStatus(runner: Runner, opts: {stateDir: string; now?: () => number}): Promise<BgpStatusResult> {
  const node = await requireNodeContext(opts.stateDir)
  const files = birdFiles(opts.stateDir)
  const pid = await runningBirdPid(files)
  const base = {node: node.name, config: files.config, socket: files.socket}
  if (pid === undefined) {
    const stale = await fs.stat(files.pidFile).then(() => true, () => false)
    return {
      ...base,
      running: false,
      sessions: [],
      announced: [],
      received: [],
      ...(stale ? {warnings: [`${files.pidFile} names no running bird of this node (it died?); run pn bgp up again`]} : {}),
    }
  }
  const sessions = await readSessions(runner, files, undefined, (opts.now ?? Date.now)())
  const received = new Map<string, BgpRoute>()
  for (const s of sessions) for (const r of s.received) received.set(`${r.prefix} ${r.nextHops.join(',')}`, r)
  return {
    ...base,
    running: true,
    pid,
    sessions,
    announced: [...new Set(sessions.flatMap((s) => s.announced))].sort(),
    received: [...received.values()],
  }
}

export interface BgpDownResult {
  changed: boolean
  node?: string
  /** The pid of the bird that was stopped. */
  stopped?: number
  removed: string[]
}

/**
 * Stop the node's bird by its pid (the peers withdraw its routes) and remove its files.
 * Idempotent; works without node.json, which is why node reset can call it at any point.
 */
export async function stopBgp(stateDir: string): Promise<BgpDownResult> {
  const files = birdFiles(stateDir)
  // Nothing of ours here (never ran, or already down): do not create a lock file in passing.
  if (!(await fs.stat(files.dir).then(() => true, () => false))) return {changed: false, removed: []}
  return withLock(lockTarget(stateDir), async () => {
    const stopped = await stopBird(files)
    const existed = await fs.stat(files.dir).then(() => true, () => false)
    await fs.rm(files.dir, {recursive: true, force: true})
    return {changed: stopped !== undefined || existed, ...(stopped !== undefined ? {stopped} : {}), removed: existed ? [files.dir] : []}
  })
}

/** `pn node reset`'s BGP step: stop the node's bird first, so the routers withdraw its pod CIDR. */
export function bgpResetStep(stateDir: string): {title: string; run: () => Promise<string[]>} {
  return {
    title: 'Stop BGP (the routers withdraw the pod CIDR)',
    run: async () => {
      const r = await stopBgp(stateDir)
      if (r.stopped !== undefined) return [`bird (pid ${r.stopped})`]
      return r.changed ? r.removed : []
    },
  }
}

export async function bgpDown(opts: {stateDir: string}): Promise<BgpDownResult> {
  const node = await requireNodeContext(opts.stateDir).catch(() => undefined)
  return {...(node ? {node: node.name} : {}), ...(await stopBgp(opts.stateDir))}
}
