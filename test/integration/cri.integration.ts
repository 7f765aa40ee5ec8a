/**
 * The runtime kubelet uses: Debian's containerd 1.6 with its CRI plugin, driven over gRPC as
 * kubelet drives it (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox,
 * ListPodSandbox), with pn as the node's CNI network (test/helpers/cri.ts: containerd as its own
 * daemon in the node's netns, a local busybox sandbox image, nothing system-wide written).
 * A pod's metadata reaches pn through CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID) and
 * its labels through the `pn.cni/labels` annotation, which containerd passes in
 * runtimeConfig["io.kubernetes.cri.pod-annotations"] because the conflist declares that capability.
 */
import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {PN_BIN, pn} from '../helpers/cli.js'
import {podSandboxConfig, sandboxEndpoint, startCriContainerd, stopCriContainerd, type CriError, type CriRuntime} from '../helpers/cri.js'
import {cleanupHarness, createNode, destroyNode, mapIps, nodeLinks, pnState, stopNodeAgent, type CniNode} from './cni-harness.js'

const CIDR = '10.64.22.0/24'
const LABELS_ANNOTATION = 'pn.cni/labels'

function inCidr(ip: string, cidr: string): boolean {
  const [net, len] = cidr.split('/')
  const n = (s: string) => s.split('.').reduce((a, o) => a * 256 + Number(o), 0)
  const size = 2 ** (32 - Number(len))
  return Math.floor(n(ip) / size) === Math.floor(n(net) / size)
}

describe('containerd 1.6 CRI (as kubelet drives it) with pn (root, netns)', function () {
  this.timeout(600_000)
  let node: CniNode | undefined
  let rt: CriRuntime | undefined

  const ipam = () => {
    const r = pn(['ipam', 'list', '--state-dir', node!.stateDir, '--json'], {netns: node!.ns})
    assert.equal(r.status, 0, r.stdout + r.stderr)
    return r.json!.result as {ip: string; owner: string; state: string}[]
  }

  before(async () => {
    node = createNode({podCidr: CIDR, routing: 'bpf', tag: 'iscri'})
    rt = await startCriContainerd({netns: node.ns, stateDir: node.stateDir})
  })

  after(async () => {
    if (rt) await stopCriContainerd(rt)
    if (node) destroyNode(node)
    cleanupHarness()
  })

  it('answers Version on runtime.v1 and runs with the conflist pn cni install wrote, plus the pod-annotations capability', async () => {
    const v = await rt!.client.version()
    assert.equal(v.runtime_name, 'containerd')
    assert.equal(v.runtime_api_version, 'v1')
    const conf = JSON.parse(readFileSync(rt!.conflist, 'utf8'))
    assert.equal(conf.cniVersion, '1.0.0')
    assert.deepEqual(conf.plugins[0].capabilities, {'io.kubernetes.cri.pod-annotations': true})
  })

  it('RunPodSandbox → Ready with an IP of the pod CIDR; pn holds the pod, its labels, veth and IP; Stop releases them, Remove leaves nothing', async () => {
    const uid = randomUUID()
    const config = podSandboxConfig({
      name: 'web-1',
      namespace: 'shop',
      uid,
      labels: {app: 'web'},
      annotations: {[LABELS_ANNOTATION]: '{"app":"web","tier":"front"}'},
      cgroupParent: rt!.cgroupParent,
    })
    const id = await rt!.client.runPodSandbox(config)
    assert.match(id, /^[0-9a-f]{64}$/)

    // The runtime's view: Ready, with the IP the CNI result gave.
    const {status, info} = await rt!.client.podSandboxStatus(id, true)
    assert.equal(status.state, 'SANDBOX_READY')
    assert.deepEqual([status.metadata.name, status.metadata.namespace, status.metadata.uid], ['web-1', 'shop', uid])
    const ip = status.network?.ip ?? ''
    assert.ok(inCidr(ip, CIDR), `sandbox IP ${ip} in ${CIDR}`)
    assert.equal(status.annotations[LABELS_ANNOTATION], '{"app":"web","tier":"front"}')
    const listed = await rt!.client.listPodSandbox({id})
    assert.deepEqual(listed.map((s) => [s.id, s.state]), [[id, 'SANDBOX_READY']])

    // pn's view: one endpoint for the sandbox, with the pod's namespace, name, uid and the annotation's labels.
    const ep = sandboxEndpoint(node!, id)
    assert.ok(ep, `pn has an endpoint for sandbox ${id}: ${pnState(node!).endpoints}`)
    assert.equal(ep.id, `${id}:eth0`)
    assert.deepEqual([ep.podNamespace, ep.podName, ep.podUid], ['shop', 'web-1', uid])
    assert.deepEqual(ep.labels, {app: 'web', tier: 'front'})
    assert.deepEqual(ep.ips, [ip])
    assert.equal(ep.bpfAttached, true)
    // The netns pn configured is the sandbox's (containerd's verbose info names its path).
    const sandboxInfo = JSON.parse(info.info ?? '{}')
    assert.equal(ep.netns, sandboxInfo.runtimeSpec?.linux?.namespaces?.find((n: {type: string}) => n.type === 'network')?.path)
    assert.deepEqual(pnState(node!), {owners: [`${id}:eth0`], endpoints: [`${id}:eth0`]})
    assert.deepEqual(nodeLinks(node!), [ep.hostIfname])
    assert.ok(mapIps(node!).includes(ip), `${ip} in pn_endpoints`)
    assert.deepEqual(ipam().filter((a) => a.owner !== 'router').map((a) => [a.ip, a.owner, a.state]), [[ip, `${id}:eth0`, 'confirmed']])

    // StopPodSandbox (kubelet may repeat it): the network is torn down, the sandbox stays listed, not ready.
    await rt!.client.stopPodSandbox(id)
    await rt!.client.stopPodSandbox(id)
    assert.equal(sandboxEndpoint(node!, id), undefined)
    assert.deepEqual(pnState(node!), {owners: [], endpoints: []})
    assert.deepEqual(nodeLinks(node!), [])
    assert.ok(!ipam().some((a) => a.ip === ip), `${ip} released`)
    assert.ok(!mapIps(node!).includes(ip), `${ip} gone from pn_endpoints`)
    assert.equal((await rt!.client.podSandboxStatus(id)).status.state, 'SANDBOX_NOTREADY')

    // RemovePodSandbox: the runtime forgets it; pn holds nothing of it.
    await rt!.client.removePodSandbox(id)
    assert.deepEqual(await rt!.client.listPodSandbox({id}), [])
    await assert.rejects(rt!.client.podSandboxStatus(id), (err: CriError) => err.code === 5) // NOT_FOUND
    assert.deepEqual(pnState(node!), {owners: [], endpoints: []})
    assert.deepEqual(nodeLinks(node!), [])
    assert.equal(rt!.ctr(['container', 'ls', '-q']).stdout.trim(), '')
  })

  it('a bad label in the annotation fails RunPodSandbox with pn\'s error and leaves nothing behind, in pn or in containerd', async () => {
    const config = podSandboxConfig({name: 'bad-1', namespace: 'shop', uid: randomUUID(), annotations: {[LABELS_ANNOTATION]: '{"app":"a b"}'}, cgroupParent: rt!.cgroupParent})
    await assert.rejects(rt!.client.runPodSandbox(config), (err: CriError) => {
      assert.match(err.details, /plugin type="pn" failed \(add\)/)
      assert.match(err.details, /read network config: runtimeConfig\["io\.kubernetes\.cri\.pod-annotations"\]\["pn\.cni\/labels"\]: label app="a b" has a bad value/)
      return true
    })
    // pn refused the ADD before doing anything, and the DEL containerd sends after a failed ADD
    // (same netconf, same annotation) succeeded, so containerd removed the sandbox itself. A DEL
    // that failed on the label too would leave it listed, not ready, and unremovable.
    assert.deepEqual(pnState(node!), {owners: [], endpoints: []})
    assert.deepEqual(nodeLinks(node!), [])
    assert.deepEqual(ipam().filter((a) => a.owner !== 'router'), [])
    assert.deepEqual(await rt!.client.listPodSandbox(), [])
    assert.equal(rt!.ctr(['container', 'ls', '-q']).stdout.trim(), '')
  })

  it('with the node\'s agent in a cluster: each sandbox gets the identity of its labels and namespace, a NetworkPolicy applies to it, and a relabel moves it', async () => {
    const store = mkdtempSync(path.join(tmpdir(), 'pn-cri-cluster-'))
    const servers: ChildProcess[] = []
    const ids: string[] = []
    const pnc = (args: string[]) => {
      const r = pn([...args, '--cluster', store, '--json'], {netns: node!.ns})
      assert.equal(r.status, 0, `pn ${args.join(' ')}: ${r.stdout}${r.stderr}`)
      return r.json!.result
    }
    const until = async (what: string, ok: () => boolean, ms = 20_000) => {
      const end = Date.now() + ms
      while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    // TCP to IP:8080 from the sandbox's netns (1 s): reached or not.
    const reaches = (netns: string, ip: string) => spawnSync('nsenter', [`--net=${netns}`, 'timeout', '1', 'bash', '-c', `exec 3<>/dev/tcp/${ip}/8080`]).status === 0
    try {
      pnc(['cluster', 'init'])
      // The agent must see the sandboxes' netns files, which containerd mounts in its own (private,
      // for this test) mount namespace: it runs there, in the node's netns, as it would share
      // /run/netns with containerd on a real node.
      const start = spawnSync('nsenter', [`--mount=/proc/${rt!.pid}/ns/mnt`, `--net=/run/netns/${node!.ns}`, process.execPath, PN_BIN, 'agent', 'start', '--state-dir', node!.stateDir,
        '--cluster', store, '--node-ip', '192.0.2.22', '--json'], {encoding: 'utf8'})
      assert.equal(start.status, 0, start.stdout + start.stderr)
      const run = async (name: string, app: string) => {
        const id = await rt!.client.runPodSandbox(podSandboxConfig({name, namespace: 'shop', uid: randomUUID(), annotations: {[LABELS_ANNOTATION]: JSON.stringify({app})}, cgroupParent: rt!.cgroupParent}))
        ids.push(id)
        const ep = sandboxEndpoint(node!, id)
        assert.ok(ep, `pn has an endpoint for ${name}`)
        // The sandbox's netns file lives in containerd's mount namespace: reach it through its pause process.
        const pid = JSON.parse((await rt!.client.podSandboxStatus(id, true)).info.info ?? '{}').pid as number
        assert.ok(pid > 0, `the pause process of ${name}`)
        return {id, ip: ep.ips[0] as string, netns: `/proc/${pid}/ns/net`}
      }
      const web = await run('web-2', 'web')
      const client = await run('client-2', 'client')
      const identities = () => pnc(['identity', 'list']) as {id: number; labels: string[]; endpoints?: unknown[]}[]
      const identityOf = (app: string) => identities().find((i) => i.labels.includes(`k8s:app=${app}`) && i.labels.includes('k8s:io.kubernetes.pod.namespace=shop'))
      await until('both sandboxes published with their identities', () => Boolean(identityOf('web') && identityOf('client')))
      assert.notEqual(identityOf('web')!.id, identityOf('client')!.id)
      assert.ok(identityOf('web')!.id >= 256)

      const child = spawn('nsenter', [`--net=${web.netns}`, 'python3', '-c', "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(64)\nwhile True:\n  c, _ = s.accept(); c.close()"], {stdio: 'ignore'})
      servers.push(child)
      await until('the web sandbox serving 8080', () => reaches(client.netns, web.ip))

      // Only pods labelled app=allowed may reach app=web: the client sandbox is cut off.
      const file = path.join(store, 'web-policy.json')
      writeFileSync(file, JSON.stringify({apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: {namespace: 'shop', name: 'web-from-allowed'},
        spec: {podSelector: {matchLabels: {app: 'web'}}, ingress: [{from: [{podSelector: {matchLabels: {app: 'allowed'}}}], ports: [{port: 8080}]}]}}))
      pnc(['policy', 'apply', file])
      await until('the policy enforced on the web sandbox', () => !reaches(client.netns, web.ip))
      const trace = pnc(['policy', 'trace', '--from', 'shop/client-2', '--to', 'shop/web-2', '--port', '8080/tcp'])
      assert.equal(trace.verdict, 'denied')

      // kubectl label pod client-2 app=allowed, the pn way: the sandbox moves to that identity and gets in.
      pnc(['endpoint', 'label', 'shop/client-2', 'app=allowed'])
      await until('the relabelled client reaching the web sandbox', () => reaches(client.netns, web.ip))
      assert.equal(pnc(['policy', 'trace', '--from', 'shop/client-2', '--to', 'shop/web-2', '--port', '8080/tcp']).verdict, 'allowed')
    } finally {
      for (const c of servers) c.kill('SIGKILL')
      for (const id of ids) {
        await rt!.client.stopPodSandbox(id)
        await rt!.client.removePodSandbox(id)
      }
      stopNodeAgent(node!)
      rmSync(store, {recursive: true, force: true})
    }
    assert.deepEqual(pnState(node!), {owners: [], endpoints: []})
    assert.deepEqual(nodeLinks(node!), [])
  })
})
