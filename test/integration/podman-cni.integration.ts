/**
 * A real runtime as the client: Debian's podman 4.3 with its CNI backend runs containers on a
 * pn network. podman runs under `nsenter --net=<pn- node netns>` (not `ip netns exec`, whose
 * private mounts would hide podman's from the next call), with a private containers.conf
 * (CONTAINERS_CONF), private storage/runroot under a tmp dir, runc (crun refuses this
 * machine's hybrid cgroups), cgroupfs, file events and ulimits within the hard limit, so the
 * machine's own podman config is untouched. The image is busybox-static imported with
 * `podman import` (no registry is reachable).
 *
 * It runs twice: with pn standalone (the installed client finds no agent and execs its
 * fallback), and with `pn agent` running in the node (the client forwards every call to it).
 *
 * Needs: apt-get install -y --no-install-recommends podman runc busybox-static
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {cleanupNamespaces} from '../helpers/netns.js'
import {pn} from '../helpers/cli.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {cleanupHarness, createNode, mapIps, nodeLinks, pnState, type CniNode} from './cni-harness.js'

const IMAGE = 'localhost/pn-busybox:latest'
const NET = 'pnnet'
const CNI_CACHE = '/var/lib/cni'

/** IPv4 alone, and dual stack (an IPv4 and an IPv6 pod CIDR: each container gets one of each). */
const VARIANTS: {label: string; podCidr: string; podCidr6?: string; tag: string; agent?: boolean}[] = [
  {label: 'routing bpf', podCidr: '10.231.0.0/24', tag: 'cnpod'},
  {label: 'routing bpf, through pn agent', podCidr: '10.233.0.0/24', tag: 'agpod', agent: true},
  {label: 'routing bpf, dual stack', podCidr: '10.232.0.0/24', podCidr6: 'fd00:232::/112', tag: 'v6pod'},
]

for (const variant of VARIANTS) describe(`podman as a CNI client of pn (${variant.label})`, function () {
  this.timeout(300_000)
  const dual = variant.podCidr6 !== undefined
  const v4re = new RegExp(`^${variant.podCidr.replace(/\.0\/24$/, '').replaceAll('.', '\\.')}\\.\\d+$`)
  let node: CniNode
  let tmp: string
  let cacheExisted = true

  function podman(args: string[], timeoutMs = 90_000): {status: number; stdout: string; stderr: string} {
    const r = spawnSync('nsenter', [`--net=/run/netns/${node.ns}`, 'podman', '--root', path.join(tmp, 'storage'), '--runroot', path.join(tmp, 'runroot'),
      '--storage-driver', 'vfs', ...args], {encoding: 'utf8', timeout: timeoutMs, env: {...process.env, CONTAINERS_CONF: path.join(tmp, 'containers.conf')}})
    return {status: r.status ?? 1, stdout: (r.stdout ?? '').trim(), stderr: r.stderr ?? ''}
  }

  function ok(args: string[]): string {
    const r = podman(args)
    assert.equal(r.status, 0, `podman ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }

  before(() => {
    cacheExisted = existsSync(CNI_CACHE)
    node = createNode({kind: variant.agent ? 'pn-agent' : 'pn', podCidr: variant.podCidr, podCidr6: variant.podCidr6, routing: 'bpf', tag: variant.tag})
    tmp = mkdtempSync(path.join(tmpdir(), 'pn-podman-'))
    for (const d of ['bin', 'net.d', 'tmp', 'rootfs/bin', 'rootfs/www', 'rootfs/tmp']) mkdirSync(path.join(tmp, d), {recursive: true})
    const inst = pn(['cni', 'install', '--bin-dir', path.join(tmp, 'bin'), '--conf-dir', path.join(tmp, 'net.d'), '--name', NET,
      '--cni-version', '1.0.0', '--state-dir', node.stateDir, '--log-file', path.join(tmp, 'cni.log'), '--json'])
    assert.equal(inst.status, 0, inst.stdout + inst.stderr)
    writeFileSync(path.join(tmp, 'containers.conf'), [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = ["${path.join(tmp, 'bin')}", "/usr/lib/cni"]`,
      `network_config_dir = "${path.join(tmp, 'net.d')}"`,
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${path.join(tmp, 'events.log')}"`,
      `tmp_dir = "${path.join(tmp, 'tmp')}"`,
      '',
    ].join('\n'))
    copyFileSync('/usr/bin/busybox', path.join(tmp, 'rootfs/bin/busybox'))
    for (const a of ['sh', 'ping', 'wget', 'httpd', 'sleep', 'ip', 'cat']) symlinkSync('busybox', path.join(tmp, 'rootfs/bin', a))
    writeFileSync(path.join(tmp, 'rootfs/www/index.html'), 'hello from a pn pod\n')
    const tar = spawnSync('tar', ['-C', path.join(tmp, 'rootfs'), '-cf', path.join(tmp, 'rootfs.tar'), '.'])
    assert.equal(tar.status, 0)
    ok(['import', path.join(tmp, 'rootfs.tar'), IMAGE])
  })

  after(() => {
    if (tmp) {
      podman(['rm', '-af', '-t', '0'])
      const mounted = readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(tmp))
      if (mounted.length === 0) rmSync(tmp, {recursive: true, force: true})
    }
    // libcni's result cache dir is hard-wired in podman 4.3; remove it if this test created it and left it empty.
    if (!cacheExisted) {
      try {
        rmdirSync(path.join(CNI_CACHE, 'results'))
        rmdirSync(CNI_CACHE)
      } catch {
        // not empty or already gone: leave it
      }
    }
    cleanupNamespaces()
    cleanupHarness()
  })

  it('lists the pn network from the installed conflist', () => {
    const out = ok(['network', 'ls', '--format', '{{.Name}} {{.Driver}}'])
    assert.match(out, new RegExp(`^${NET} pn$`, 'm'))
  })

  it('runs containers with pn addresses that ping and fetch from each other; podman rm leaves nothing', () => {
    const web = ok(['run', '-d', '--name', 'pn-web', '--network', NET, '--cap-add', 'NET_RAW', IMAGE, 'httpd', '-f', '-p', '80', '-h', '/www'])
    const client = ok(['run', '-d', '--name', 'pn-client', '--network', NET, '--cap-add', 'NET_RAW', IMAGE, 'sleep', '3600'])
    const ipOf = (name: string) => ok(['inspect', '-f', `{{.NetworkSettings.Networks.${NET}.IPAddress}} {{.NetworkSettings.Networks.${NET}.Gateway}}`, name]).split(' ')
    const [webIp, gw] = ipOf('pn-web')
    const [clientIp] = ipOf('pn-client')
    assert.match(webIp, v4re)
    assert.match(clientIp, v4re)
    assert.notEqual(webIp, clientIp)
    assert.equal(gw, node.gateway)

    // pn's view: two endpoints (container id : eth0), two IPs, two lxc devices, map entries.
    const st = pnState(node)
    assert.deepEqual(st.endpoints.sort(), [`${web}:eth0`, `${client}:eth0`].sort())
    // One IP per family per container.
    const owners = [`${web}:eth0`, `${client}:eth0`]
    assert.deepEqual(st.owners.sort(), (dual ? [...owners, ...owners] : owners).sort())
    assert.deepEqual(nodeLinks(node).sort(), [hostIfnameFor(web, 'eth0'), hostIfnameFor(client, 'eth0')].sort())
    assert.ok(mapIps(node).includes(webIp) && mapIps(node).includes(clientIp))
    const addrs = ok(['exec', 'pn-client', 'ip', '-4', 'addr', 'show', 'dev', 'eth0'])
    assert.match(addrs, new RegExp(`inet ${clientIp.replaceAll('.', '\\.')}/32`))
    let webIp6 = ''
    if (dual) {
      const ip6Of = (name: string) => ok(['inspect', '-f', `{{.NetworkSettings.Networks.${NET}.GlobalIPv6Address}} {{.NetworkSettings.Networks.${NET}.IPv6Gateway}}`, name]).split(' ')
      const [w6, gw6] = ip6Of('pn-web')
      const [c6] = ip6Of('pn-client')
      webIp6 = w6
      assert.match(w6, /^fd00:232::[0-9a-f]+$/)
      assert.match(c6, /^fd00:232::[0-9a-f]+$/)
      assert.equal(gw6, node.gateway6)
      assert.ok(mapIps(node).includes(w6) && mapIps(node).includes(c6), 'no IPv6 map entries')
      assert.match(ok(['exec', 'pn-client', 'ip', '-6', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet6 ${c6}/128`))
      const ping6 = podman(['exec', 'pn-client', 'ping', '-6', '-c', '2', '-W', '2', w6])
      assert.equal(ping6.status, 0, ping6.stdout + ping6.stderr)
      assert.equal(podman(['exec', 'pn-client', 'ping', '-6', '-c', '1', '-W', '2', node.gateway6!]).status, 0)
    }

    const ping = podman(['exec', 'pn-client', 'ping', '-c', '2', '-W', '2', webIp])
    assert.equal(ping.status, 0, ping.stdout + ping.stderr)
    assert.equal(podman(['exec', 'pn-client', 'ping', '-c', '1', '-W', '2', node.gateway]).status, 0)
    const page = podman(['exec', 'pn-client', 'wget', '-q', '-O', '-', `http://${webIp}/`])
    assert.equal(page.status, 0, page.stderr)
    assert.equal(page.stdout, 'hello from a pn pod')
    if (dual) {
      const page6 = podman(['exec', 'pn-client', 'wget', '-q', '-O', '-', `http://[${webIp6}]/`])
      assert.equal(page6.status, 0, page6.stderr)
      assert.equal(page6.stdout, 'hello from a pn pod')
    }

    ok(['rm', '-f', '-t', '0', 'pn-web', 'pn-client'])
    const after = pnState(node)
    assert.deepEqual(after.endpoints, [])
    assert.deepEqual(after.owners, [])
    assert.deepEqual(nodeLinks(node), [])
    assert.deepEqual(mapIps(node).filter((ip) => ip !== node.gateway && ip !== node.gateway6), [])
    assert.deepEqual(mapIps(node, 'pn_ipcache'), [])
    const cached = existsSync(path.join(CNI_CACHE, 'results')) ? readdirSync(path.join(CNI_CACHE, 'results')).filter((f) => f.startsWith(`${NET}-`)) : []
    assert.deepEqual(cached, [], 'libcni result cache entries left behind')
    const log = readFileSync(path.join(tmp, 'cni.log'), 'utf8')
    assert.match(log, new RegExp(`ADD ${web}:eth0`))
    assert.match(log, new RegExp(`DEL ${web}:eth0`))
    // Who served the calls: the agent logs as pn-agent, the standalone path as pn-cni.
    assert.match(log, variant.agent ? /pn-agent\[\d+\] ADD/ : /pn-cni\[\d+\] ADD/)
    assert.doesNotMatch(log, variant.agent ? /pn-cni\[\d+\] ADD/ : /pn-agent\[\d+\] ADD/)
  })
})
