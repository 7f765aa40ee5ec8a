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
import {readFileSync} from 'node:fs'
import {pn} from '../helpers/cli.js'
import {podSandboxConfig, sandboxEndpoint, startCriContainerd, stopCriContainerd, type CriError, type CriRuntime} from '../helpers/cri.js'
import {cleanupHarness, createNode, destroyNode, mapIps, nodeLinks, pnState, type CniNode} from './cni-harness.js'

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
})
