/**
 * containerd's CRI plugin as kubelet drives it, for the integration tests:
 * - `criClient(socket)`: a small gRPC client of the CRI RuntimeService (runtime.v1, the subset in
 *   test/fixtures/cri/api.proto) over containerd's unix socket; every call has a deadline;
 * - `buildSandboxImage`: a local sandbox ("pause") image, Debian's busybox-static with
 *   `sleep` as its command, made by podman in its own storage under a temp dir (no registry);
 * - `startCriContainerd`: containerd 1.6 with the CRI plugin, as its own daemon (root, state,
 *   socket, runc root and CNI directories under a temp dir), started by PID in a node's netns
 *   and in a private mount namespace where tmpfs covers /var/lib (libcni's result cache,
 *   /var/lib/cni, which containerd does not let one move) and /run/containerd (shim sockets);
 *   the CNI network is pn, installed by `pn cni install` for the node's state dir, with the
 *   `io.kubernetes.cri.pod-annotations` capability declared so containerd hands pn the pod's
 *   annotations in runtimeConfig. Nothing system-wide is written;
 * - `stopCriContainerd`: every sandbox stopped and removed through CRI, then containerd by PID.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {pn, REPO_ROOT} from './cli.js'

export const CRI_PROTO = path.join(REPO_ROOT, 'test/fixtures/cri/api.proto')
/** The containerd namespace the CRI plugin keeps its images and containers in. */
export const CRI_NAMESPACE = 'k8s.io'
export const POD_ANNOTATIONS_CAPABILITY = 'io.kubernetes.cri.pod-annotations'
const DEFAULT_DEADLINE_MS = 120_000

export interface PodSandboxMetadata {
  name: string
  uid: string
  namespace: string
  attempt?: number
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata
  hostname?: string
  log_directory?: string
  dns_config?: {servers?: string[]; searches?: string[]; options?: string[]}
  port_mappings?: {protocol?: 'TCP' | 'UDP' | 'SCTP'; container_port: number; host_port?: number; host_ip?: string}[]
  labels?: Record<string, string>
  annotations?: Record<string, string>
  linux?: {cgroup_parent?: string; security_context?: {namespace_options?: {network?: string; pid?: string; ipc?: string}}; sysctls?: Record<string, string>}
}

export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY'

export interface PodSandboxStatus {
  id: string
  metadata: PodSandboxMetadata
  state: PodSandboxState
  created_at: string
  network: {ip: string; additional_ips: {ip: string}[]} | null
  labels: Record<string, string>
  annotations: Record<string, string>
  runtime_handler: string
}

export interface PodSandbox {
  id: string
  metadata: PodSandboxMetadata
  state: PodSandboxState
  created_at: string
  labels: Record<string, string>
  annotations: Record<string, string>
  runtime_handler: string
}

/** A failed call: grpc's status code and details (the runtime's error text). */
export interface CriError extends Error {
  code: number
  details: string
}

export interface CriClient {
  version(): Promise<{version: string; runtime_name: string; runtime_version: string; runtime_api_version: string}>
  runPodSandbox(config: PodSandboxConfig, runtimeHandler?: string): Promise<string>
  podSandboxStatus(id: string, verbose?: boolean): Promise<{status: PodSandboxStatus; info: Record<string, string>}>
  stopPodSandbox(id: string): Promise<void>
  removePodSandbox(id: string): Promise<void>
  listPodSandbox(filter?: {id?: string; state?: {state: PodSandboxState}; label_selector?: Record<string, string>}): Promise<PodSandbox[]>
  close(): void
}

let runtimeService: grpc.ServiceClientConstructor | undefined

function service(): grpc.ServiceClientConstructor {
  if (!runtimeService) {
    // keepCase: the field names of the proto (pod_sandbox_id); enums as their names; int64 as strings.
    const def = protoLoader.loadSync(CRI_PROTO, {keepCase: true, enums: String, longs: String, defaults: true, oneofs: true})
    const pkg = grpc.loadPackageDefinition(def) as any
    runtimeService = pkg.runtime.v1.RuntimeService as grpc.ServiceClientConstructor
  }
  return runtimeService
}

/** A CRI RuntimeService client on `unix://<socket>`; each call fails after `deadlineMs`. */
export function criClient(socket: string, opts: {deadlineMs?: number} = {}): CriClient {
  const Ctor = service()
  const client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()) as any
  const deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS
  const call = <T>(method: string, req: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      client[method](req, {deadline: Date.now() + deadlineMs}, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)))
    })
  return {
    version: () => call('Version', {version: 'v1'}),
    runPodSandbox: async (config, runtimeHandler = '') => (await call<{pod_sandbox_id: string}>('RunPodSandbox', {config, runtime_handler: runtimeHandler})).pod_sandbox_id,
    podSandboxStatus: (id, verbose = false) => call('PodSandboxStatus', {pod_sandbox_id: id, verbose}),
    stopPodSandbox: async (id) => void (await call('StopPodSandbox', {pod_sandbox_id: id})),
    removePodSandbox: async (id) => void (await call('RemovePodSandbox', {pod_sandbox_id: id})),
    listPodSandbox: async (filter) => (await call<{items: PodSandbox[]}>('ListPodSandbox', filter ? {filter} : {})).items,
    close: () => client.close(),
  }
}

/**
 * A PodSandboxConfig as kubelet builds it for a pod: hostname = pod name, the pod network
 * namespace, and a cgroup parent per pod (kubelet's `/kubepods/<qos>/pod<uid>`; here under the
 * runtime's own `cgroupParent`, which stopCriContainerd removes).
 */
export function podSandboxConfig(pod: {name: string; namespace: string; uid: string; labels?: Record<string, string>; annotations?: Record<string, string>; attempt?: number; cgroupParent?: string}): PodSandboxConfig {
  return {
    metadata: {name: pod.name, namespace: pod.namespace, uid: pod.uid, attempt: pod.attempt ?? 0},
    hostname: pod.name,
    labels: {'io.kubernetes.pod.name': pod.name, 'io.kubernetes.pod.namespace': pod.namespace, 'io.kubernetes.pod.uid': pod.uid, ...pod.labels},
    annotations: {'kubernetes.io/config.source': 'api', ...pod.annotations},
    linux: {
      ...(pod.cgroupParent ? {cgroup_parent: `${pod.cgroupParent}/pod${pod.uid}`} : {}),
      security_context: {namespace_options: {network: 'POD', pid: 'CONTAINER', ipc: 'POD'}},
    },
  }
}

function alive(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/**
 * The sandbox image `ref`: busybox-static whose command sleeps (containerd 1.6 runs the sandbox
 * image's entrypoint and command as the pause process; it must keep running), imported by podman
 * into its own storage under `dir` and saved as an OCI archive. Returns the archive's path.
 */
export function buildSandboxImage(dir: string, ref: string): string {
  const rootfs = path.join(dir, 'pause-rootfs')
  mkdirSync(path.join(rootfs, 'bin'), {recursive: true})
  execFileSync('cp', ['/bin/busybox', path.join(rootfs, 'bin/busybox')])
  for (const a of ['sh', 'sleep']) symlinkSync('busybox', path.join(rootfs, 'bin', a))
  execFileSync('tar', ['-C', rootfs, '-cf', path.join(dir, 'pause-rootfs.tar'), '.'])
  const podman = ['--root', path.join(dir, 'podman'), '--runroot', path.join(dir, 'podman-run'), '--storage-driver', 'vfs']
  execFileSync('podman', [...podman, 'import', '--change', 'CMD ["/bin/sleep", "1000000000"]', path.join(dir, 'pause-rootfs.tar'), ref], {stdio: 'ignore'})
  const archive = path.join(dir, 'pause.tar')
  execFileSync('podman', [...podman, 'save', '-o', archive, ref], {stdio: 'ignore'})
  rmSync(path.join(dir, 'podman'), {recursive: true, force: true})
  return archive
}

export interface CriRuntime {
  /** The node's network namespace containerd runs in. */
  netns: string
  /** The temp dir holding everything (root, state, socket, CNI dirs, image). */
  dir: string
  socket: string
  pid: number
  daemon: ChildProcess
  image: string
  binDir: string
  confDir: string
  /** The conflist containerd reads (what `pn cni install` wrote, plus the capability). */
  conflist: string
  /** The pn CNI plugin's log file (the conflist's logFile). */
  cniLog: string
  client: CriClient
  /**
   * The cgroup (cgroupfs path) to put sandboxes under: pass it to podSandboxConfig. Without one,
   * runc uses `/k8s.io/<id>` and leaves `/k8s.io` behind in every controller.
   */
  cgroupParent: string
  /** containerd's stderr so far. */
  log(): string
  /** `ctr` against this containerd, in the CRI namespace. */
  ctr(args: string[]): {status: number | null; stdout: string; stderr: string}
}

export interface StartCriOptions {
  /** The node's netns name (`/run/netns/<name>`). */
  netns: string
  /** The node's pn state dir, for the conflist. */
  stateDir: string
  /** Sandbox image reference (default localhost/pn-cri-pause:1). */
  image?: string
  /** Change the installed conflist before containerd starts. */
  conflist?: (conf: any) => void
}

/** containerd with CRI and pn as its CNI network, in the node's netns; resolves once CRI answers Version. */
export async function startCriContainerd(opts: StartCriOptions): Promise<CriRuntime> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pn-cri-'))
  const socket = path.join(dir, 'containerd.sock')
  const binDir = path.join(dir, 'cni-bin')
  const confDir = path.join(dir, 'cni-conf')
  const cniLog = path.join(dir, 'cni.log')
  const image = opts.image ?? 'localhost/pn-cri-pause:1'
  const archive = buildSandboxImage(dir, image)

  // pn as `pn cni install` sets it up, plus the capability that makes containerd pass annotations.
  const inst = pn(['cni', 'install', '--bin-dir', binDir, '--conf-dir', confDir, '--state-dir', opts.stateDir, '--log-file', cniLog, '--json'])
  assert.equal(inst.json?.status, 'ok', inst.stdout + inst.stderr)
  const conflist = inst.json!.result.conflist as string
  const conf = JSON.parse(readFileSync(conflist, 'utf8'))
  // (pn cni install declares it already; kept so the test holds on a conflist written otherwise)
  conf.plugins[0].capabilities = {...conf.plugins[0].capabilities, [POD_ANNOTATIONS_CAPABILITY]: true}
  opts.conflist?.(conf)
  writeFileSync(conflist, JSON.stringify(conf, null, 2) + '\n')
  // The CRI plugin always adds the loopback network (go-cni's WithLoNetwork).
  symlinkSync('/usr/lib/cni/loopback', path.join(binDir, 'loopback'))

  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
    '[plugins."io.containerd.grpc.v1.cri"]',
    `  sandbox_image = "${image}"`,
    '  disable_apparmor = true',
    // The sandbox's oom_score_adj (-998) is not below containerd's own: lowering it needs
    // CAP_SYS_RESOURCE, which a test machine (a container itself) may not grant.
    '  restrict_oom_score_adj = true',
    '  netns_mounts_under_state_dir = true',
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '[plugins."io.containerd.grpc.v1.cri".containerd]',
    '  snapshotter = "native"',
    '  default_runtime_name = "runc"',
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '  runtime_type = "io.containerd.runc.v2"',
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    `  Root = "${dir}/runc"`,
    '[plugins."io.containerd.grpc.v1.cri".cni]',
    `  bin_dir = "${binDir}"`,
    `  conf_dir = "${confDir}"`,
    '  max_conf_num = 1',
    '',
  ].join('\n')
  writeFileSync(path.join(dir, 'config.toml'), config)

  // Each mkdir below happens on a tmpfs of the private mount namespace, never on the real disk.
  const mounts = [
    'mount -t tmpfs pn-cri /var/lib && mkdir /var/lib/cni',
    '{ [ ! -d /run/containerd ] || mount -t tmpfs pn-cri /run/containerd; }',
  ].join(' && ')
  const daemon = spawn('nsenter', [`--net=/run/netns/${opts.netns}`, 'unshare', '-m', '--propagation', 'private', 'sh', '-ec',
    `${mounts} && exec containerd --config ${dir}/config.toml`], {stdio: ['ignore', 'ignore', 'pipe']})
  let log = ''
  daemon.stderr!.on('data', (d) => (log = (log + d).slice(-200_000)))
  const ctr = (args: string[]) => spawnSync('ctr', ['--address', socket, '-n', CRI_NAMESPACE, ...args], {encoding: 'utf8'})
  const client = criClient(socket)
  const cgroupParent = `/${path.basename(dir)}`
  const rt: CriRuntime = {netns: opts.netns, dir, socket, pid: daemon.pid!, daemon, image, binDir, confDir, conflist, cniLog, cgroupParent, client, log: () => log, ctr}
  try {
    for (let i = 0; i < 600 && !existsSync(socket) && alive(daemon); i++) await sleep(100)
    assert.ok(existsSync(socket), `containerd did not start: ${log.slice(-3000)}`)
    let version: Awaited<ReturnType<CriClient['version']>> | undefined
    let lastErr: unknown
    for (let i = 0; i < 120 && !version; i++) {
      version = await client.version().catch((e) => void (lastErr = e))
      if (!version) await sleep(500)
    }
    assert.ok(version, `CRI did not answer Version: ${String(lastErr)} ${log.slice(-3000)}`)
    const imp = ctr(['image', 'import', '--snapshotter', 'native', archive])
    assert.equal(imp.status, 0, imp.stdout + imp.stderr)
  } catch (err) {
    await stopCriContainerd(rt)
    throw err
  }
  return rt
}

/** Mount points under `dir` in process `pid`'s mount namespace, deepest first. */
function mountsUnder(pid: number, dir: string): string[] {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
  } catch {
    return []
  }
  return text.split('\n').map((l) => l.split(' ')[4]).filter((m) => m && (m === dir || m.startsWith(dir + '/'))).sort((a, b) => b.length - a.length)
}

/**
 * Stop and remove every sandbox through CRI (kubelet's order), kill what is left with ctr, stop
 * containerd by PID and remove the temp dir. Safe to call twice and after a failed start.
 */
export async function stopCriContainerd(rt: CriRuntime): Promise<void> {
  if (alive(rt.daemon) && existsSync(rt.socket)) {
    const items = await rt.client.listPodSandbox().catch(() => [] as PodSandbox[])
    for (const s of items) {
      await rt.client.stopPodSandbox(s.id).catch(() => undefined)
      await rt.client.removePodSandbox(s.id).catch(() => undefined)
    }
    // Anything CRI did not clean (a sandbox it lost track of): its task and container, by id.
    for (const id of rt.ctr(['container', 'ls', '-q']).stdout.split('\n').filter(Boolean)) {
      rt.ctr(['task', 'kill', '-s', 'SIGKILL', id])
      rt.ctr(['task', 'rm', '-f', id])
      rt.ctr(['container', 'rm', id])
    }
    rt.ctr(['image', 'rm', rt.image])
    // Mounts CRI made under the temp dir (netns, shm) die with the private mount namespace, but unmount any left.
    for (const m of mountsUnder(rt.pid, rt.dir)) spawnSync('nsenter', [`--mount=/proc/${rt.pid}/ns/mnt`, 'umount', '-l', m])
  }
  rt.client.close()
  if (alive(rt.daemon)) {
    const exited = new Promise((r) => rt.daemon.once('exit', r))
    rt.daemon.kill('SIGTERM')
    await Promise.race([exited, sleep(15_000)])
    if (alive(rt.daemon)) {
      rt.daemon.kill('SIGKILL')
      await Promise.race([exited, sleep(5_000)])
    }
  }
  // The runtime's cgroups, deepest first (rmdir removes only empty ones).
  for (const controller of readdirSync('/sys/fs/cgroup')) {
    const top = path.join('/sys/fs/cgroup', controller, rt.cgroupParent)
    if (existsSync(top)) spawnSync('find', [top, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';'])
  }
  rmSync(rt.dir, {recursive: true, force: true})
}

/** pn's endpoint record for a sandbox (container id = sandbox id, eth0), or undefined. */
export function sandboxEndpoint(node: {ns: string; stateDir: string}, sandboxId: string): any {
  const r = pn(['endpoint', 'show', '--container-id', sandboxId, '--state-dir', node.stateDir, '--json'], {netns: node.ns})
  return r.status === 0 ? r.json?.result : undefined
}
