/**
 * A real runtime: Debian's containerd 1.6 through `ctr run --cni`, against a pn node in a `pn-is…`
 * namespace. Nothing system-wide is used or written:
 * - containerd runs as its own daemon (root, state and socket under a temp dir, started and stopped
 *   by PID here, in the node's netns via nsenter so it keeps the host's cgroup mounts);
 * - the image is built by podman (its own storage under the temp dir) from Debian's busybox-static
 *   and loaded with `ctr image import`, no registry;
 * - `ctr` reads only /etc/cni/net.d and /opt/cni/bin and caches in /var/lib/cni, so it runs inside
 *   the node's netns in a private mount namespace (`unshare -m`) where those three are bind mounts
 *   or tmpfs over temp dirs; the real ones are never written.
 * The config is what `pn cni install` writes by default (cniVersion 1.0.0: libcni 1.1, vendored by
 * containerd 1.6/1.7, rejects 1.1.0 results). A wrapper in front of the plugin records the CNI
 * environment, so the test sees ADD with CNI_NETNS /proc/PID/ns/net and container id
 * `<namespace>-<id>`, and DEL (from --rm) with an empty CNI_NETNS.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {pn} from '../helpers/cli.js'
import {cleanupHarness, createNode, destroyNode, nodeLinks, pnState, type CniNode} from './cni-harness.js'

const CIDR = '10.64.21.0/24'
const GATEWAY = '10.64.21.1'
const IMAGE = 'localhost/pn-is-busybox:1'

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

describe('containerd 1.6 (ctr run --cni) with pn (root, netns)', function () {
  this.timeout(300_000)
  let node: CniNode
  let tmp: string
  let sock: string
  let daemon: ReturnType<typeof spawn> | undefined
  const ns = `pnis${process.pid}`
  const ran: string[] = []

  const ctr = (args: string[]) => spawnSync('ctr', ['--address', sock, '-n', ns, ...args], {encoding: 'utf8'})

  /** `ctr run --rm --cni` inside the node netns, with private CNI directories. */
  function ctrRun(id: string, script: string) {
    ran.push(id)
    // Every mkdir below happens on a tmpfs of this private mount namespace, never on the real disk
    // (podman ships /etc/cni/net.d; without podman, a tmpfs over /etc/cni stands in).
    const mounts = [
      `mount -t tmpfs pn-is /opt && mkdir -p /opt/cni/bin && mount --bind ${tmp}/bin /opt/cni/bin`,
      `mount -t tmpfs pn-is /var/lib && mkdir -p /var/lib/cni`,
      `{ [ -d /etc/cni/net.d ] || { [ -d /etc/cni ] && mount -t tmpfs pn-is /etc/cni && mkdir /etc/cni/net.d; }; }`,
      `mount --bind ${tmp}/netd /etc/cni/net.d`,
    ].join(' && ')
    const argv = ['ip', 'netns', 'exec', node.ns, 'unshare', '-m', '--propagation', 'private', 'sh', '-ec',
      `${mounts} && exec ctr --address ${sock} -n ${ns} run --rm --cni --snapshotter native ${IMAGE} ${id} /bin/sh -c '${script}'`]
    const child = spawn(argv[0], argv.slice(1))
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    return {child, done: new Promise<{code: number | null; out: string}>((resolve) => child.on('close', (code) => resolve({code, out})))}
  }

  before(async () => {
    node = createNode({podCidr: CIDR, routing: 'bpf', tag: 'isct'})
    tmp = mkdtempSync(path.join(tmpdir(), 'pn-is-containerd-'))
    sock = path.join(tmp, 'containerd.sock')

    // The image: busybox-static and a few applet links, imported by podman into its own storage.
    const rootfs = path.join(tmp, 'rootfs')
    mkdirSync(path.join(rootfs, 'bin'), {recursive: true})
    execFileSync('cp', ['/bin/busybox', path.join(rootfs, 'bin/busybox')])
    for (const a of ['sh', 'ip', 'ping', 'sleep', 'cat']) symlinkSync('busybox', path.join(rootfs, 'bin', a))
    execFileSync('tar', ['-C', rootfs, '-cf', path.join(tmp, 'rootfs.tar'), '.'])
    const podman = ['--root', path.join(tmp, 'podman'), '--runroot', path.join(tmp, 'podman-run'), '--storage-driver', 'vfs']
    execFileSync('podman', [...podman, 'import', path.join(tmp, 'rootfs.tar'), IMAGE], {stdio: 'ignore'})
    execFileSync('podman', [...podman, 'save', '-o', path.join(tmp, 'image.tar'), IMAGE], {stdio: 'ignore'})

    writeFileSync(path.join(tmp, 'config.toml'), [
      'version = 2',
      `root = "${tmp}/root"`,
      `state = "${tmp}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${sock}"`,
      '[ttrpc]',
      `  address = "${sock}.ttrpc"`,
      '',
    ].join('\n'))
    daemon = spawn('nsenter', [`--net=/run/netns/${node.ns}`, 'containerd', '--config', path.join(tmp, 'config.toml')], {stdio: ['ignore', 'ignore', 'pipe']})
    let log = ''
    daemon.stderr!.on('data', (d) => (log += d))
    for (let i = 0; i < 300 && !existsSync(sock); i++) await sleep(100)
    assert.ok(existsSync(sock), `containerd did not start: ${log.slice(-2000)}`)
    const imp = ctr(['image', 'import', '--snapshotter', 'native', path.join(tmp, 'image.tar')])
    assert.equal(imp.status, 0, imp.stdout + imp.stderr)

    // pn as the runtime would find it, with the default config; a wrapper records each call's environment.
    const inst = pn(['cni', 'install', '--bin-dir', path.join(tmp, 'bin'), '--conf-dir', path.join(tmp, 'netd'),
      '--state-dir', node.stateDir, '--log-file', path.join(tmp, 'cni.log'), '--json'])
    assert.equal(inst.json?.status, 'ok', inst.stdout + inst.stderr)
    renameSync(path.join(tmp, 'bin/pn'), path.join(tmp, 'bin/pn-real'))
    // The native client falls back to `<itself>.node` (the standalone path) when no agent answers.
    if (existsSync(path.join(tmp, 'bin/pn.node'))) renameSync(path.join(tmp, 'bin/pn.node'), path.join(tmp, 'bin/pn-real.node'))
    writeFileSync(path.join(tmp, 'bin/pn'), `#!/bin/sh\necho "$CNI_COMMAND|$CNI_CONTAINERID|$CNI_NETNS|$CNI_IFNAME" >> ${tmp}/env.log\nexec ${tmp}/bin/pn-real "$@"\n`)
    chmodSync(path.join(tmp, 'bin/pn'), 0o755)
    symlinkSync('/usr/lib/cni/loopback', path.join(tmp, 'bin/loopback')) // ctr --cni adds the loopback network too
  })

  after(async () => {
    if (sock && daemon) {
      for (const id of ran) {
        ctr(['task', 'kill', '-s', 'SIGKILL', id])
        ctr(['task', 'rm', '-f', id])
        ctr(['container', 'rm', id])
      }
      ctr(['image', 'rm', IMAGE])
      const exited = new Promise((r) => daemon!.once('exit', r))
      daemon.kill('SIGTERM')
      await Promise.race([exited, sleep(10_000)])
    }
    rmSync(`/run/containerd/runc/${ns}`, {recursive: true, force: true})
    if (tmp) rmSync(tmp, {recursive: true, force: true})
    if (node) destroyNode(node)
    cleanupHarness()
  })

  it('pn cni install writes cniVersion 1.0.0 by default (containerd 1.6/1.7 reject 1.1.0 results)', () => {
    const conf = JSON.parse(readFileSync(path.join(tmp, 'netd/10-pn.conflist'), 'utf8'))
    assert.equal(conf.cniVersion, '1.0.0')
  })

  it('ctr run --rm --cni: the pod gets its IP and route and reaches the router; after --rm nothing is left', async () => {
    const run = ctrRun('ct1', `ip -4 addr show eth0; ip -4 route; ping -c 1 -W 2 ${GATEWAY} && sleep 2`)
    // While it runs: pn's endpoint record names containerd's container id and the task's netns.
    let ep: {containerId: string; netns: string; ips: string[]} | undefined
    for (let i = 0; i < 600 && !ep && run.child.exitCode === null; i++) {
      const list = pn(['endpoint', 'list', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
      ep = (list.json?.result?.endpoints ?? list.json?.result ?? [])[0]
      if (!ep) await sleep(100)
    }
    const {code, out} = await run.done
    assert.equal(code, 0, out)
    assert.ok(ep, `an endpoint record existed while the container ran: ${out}`)
    assert.equal(ep!.containerId, `${ns}-ct1`)
    assert.match(ep!.netns, /^\/proc\/\d+\/ns\/net$/)
    const ip = ep!.ips[0]
    assert.match(out, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32 scope global eth0`))
    assert.match(out, new RegExp(`default via ${GATEWAY} dev eth0`))
    assert.match(out, /1 packets transmitted, 1 packets received/)

    // The runtime's view of the calls: ADD with /proc/PID/ns/net, DEL (from --rm) with an empty CNI_NETNS.
    const calls = readFileSync(path.join(tmp, 'env.log'), 'utf8').trim().split('\n').map((l) => l.split('|'))
    const addCall = calls.find((c) => c[0] === 'ADD')!
    const delCall = calls.find((c) => c[0] === 'DEL')!
    assert.deepEqual([addCall[1], addCall[3]], [`${ns}-ct1`, 'eth0'])
    assert.match(addCall[2], /^\/proc\/\d+\/ns\/net$/)
    assert.deepEqual(delCall, ['DEL', `${ns}-ct1`, '', 'eth0'])

    // Nothing left: no IP, no veth, no endpoint record, no container.
    assert.deepEqual(pnState(node), {owners: [], endpoints: []})
    assert.deepEqual(nodeLinks(node), [])
    assert.equal(ctr(['container', 'ls', '-q']).stdout.trim(), '')
    const ipam = pn(['ipam', 'show', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
    assert.equal(ipam.json?.result[0].used, 1, 'only the router holds an address')
  })
})
