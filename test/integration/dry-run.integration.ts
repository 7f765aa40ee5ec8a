/**
 * `--dry-run` on node init, veth create, bpf load and cni add: it reads the kernel, changes
 * nothing (no link, no address, no pin, no state file), and prints the exact commands the step
 * would run — which, run by hand, build the state pn would have built.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, readdirSync, rmSync} from 'node:fs'
import {cleanupNamespaces, createNamespace, inNs} from '../helpers/netns.js'
import {ensureBpffsMounted, makeNode} from './node-fixture.integration.js'

/** Run the printed commands by hand inside a netns (`cmd <<EOF … EOF` feeds the batch on stdin). */
function runByHand(ns: string, commands: string[]): void {
  for (const c of commands) {
    const m = /^([^\n]+?) <<EOF\n([\s\S]*)\nEOF$/.exec(c)
    const line = m ? m[1] : c
    const argv = line.split(' ')
    const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], {input: m ? m[2] + '\n' : '', encoding: 'utf8'})
    assert.equal(r.status, 0, `${line}: ${r.stderr}`)
  }
}

describe('--dry-run shows the commands and changes nothing', function () {
  this.timeout(180_000)
  let n: ReturnType<typeof makeNode>

  before(() => {
    ensureBpffsMounted()
    n = makeNode('dry')
  })
  after(() => {
    n.run(['node', 'reset'])
    cleanupNamespaces()
    rmSync(n.stateDir, {recursive: true, force: true})
  })

  it('node init --dry-run changes nothing; its commands by hand leave a real init nothing to do in the kernel', () => {
    const args = ['node', 'init', '--name', n.node, '--device', 'eth0', '--pod-cidr', '10.62.0.0/24', '--routing', 'host-routes', '--bpffs-root', n.bpffsRoot]
    const dry = n.run([...args, '--dry-run'])
    assert.equal(dry.status, 0, dry.stdout + dry.stderr)
    const {commands} = dry.json!.result as {commands: string[]}
    assert.ok(commands.some((c) => c.startsWith('ip -batch - <<EOF\nlink add name pn_host')), commands.join('\n'))
    assert.ok(commands.some((c) => c.includes('route replace 10.62.0.0/24 via 10.62.0.1 dev pn_host')), commands.join('\n'))
    assert.doesNotMatch(inNs(n.node, ['ip', '-o', 'link']), /pn_host|pn_net/, 'no device was created')
    assert.deepEqual(readdirSync(n.stateDir), [], 'no state file was written')
    assert.equal(existsSync(n.bpffsRoot), false, 'no bpffs folder was made')

    runByHand(n.node, commands)
    const real = n.run(args)
    assert.equal(real.status, 0, real.stdout + real.stderr)
    const kernelActions = (real.json!.result.actions as string[]).filter((a) => !/^(reserved router ip|wrote |created \/run\/pn)/.test(a))
    assert.deepEqual(kernelActions, [], 'the hand-run commands built the devices, address, route and sysctls')
  })

  it('veth create --dry-run changes nothing; its commands by hand give the pod the seed routing table', () => {
    const pod = createNamespace('dryp')
    const dry = n.run(['veth', 'create', '--container-id', 'dry1', '--netns', pod.path, '--ip', '10.62.0.7', '--dry-run'])
    assert.equal(dry.status, 0, dry.stdout + dry.stderr)
    assert.doesNotMatch(inNs(n.node, ['ip', '-o', 'link']), /lxc/)
    assert.equal(existsSync(`${n.stateDir}/endpoints/dry1:eth0.json`), false)
    runByHand(n.node, dry.json!.result.commands)
    assert.match(inNs(pod.name, ['ip', '-4', 'addr', 'show', 'dev', 'eth0']), /inet 10\.62\.0\.7\/32/)
    assert.match(inNs(pod.name, ['ip', 'route']), /default via 10\.62\.0\.1 dev eth0/)
  })

  it('bpf load --host --dry-run changes nothing; its commands by hand load and attach the node programs', () => {
    assert.equal(n.run(['bpf', 'compile']).status, 0) // the object is built once; a dry run shows no clang then
    const dry = n.run(['bpf', 'load', '--host', '--dry-run'])
    assert.equal(dry.status, 0, dry.stdout + dry.stderr)
    const commands = dry.json!.result.commands as string[]
    assert.ok(commands.some((c) => c.startsWith('bpftool prog loadall')), commands.join('\n'))
    assert.equal(existsSync(`${n.bpffsRoot}/progs`), false, 'nothing pinned')
    assert.doesNotMatch(inNs(n.node, ['tc', 'filter', 'show', 'dev', 'eth0', 'ingress']), /from_netdev/)
    runByHand(n.node, commands)
    const status = n.run(['bpf', 'status'])
    assert.equal(status.json!.result.loaded, true)
    const hooks = (status.json!.result.attachments as {device: string; direction: string; program: string; current: boolean}[])
      .map((a) => `${a.device}/${a.direction}/${a.program}/${a.current}`).sort()
    assert.deepEqual(hooks, ['eth0/egress/to-netdev/true', 'eth0/ingress/from-netdev/true', 'pn_host/egress/from-host/true', 'pn_host/ingress/to-host/true'])
  })

  it('cni add --dry-run lists the ADD and leaves no IP, veth or record', () => {
    const pod = createNamespace('dryc')
    const before = n.run(['ipam', 'list']).json!.result
    const dry = n.run(['cni', 'add', '--container-id', 'dry2', '--netns', pod.path, '--dry-run'])
    assert.equal(dry.status, 0, dry.stdout + dry.stderr)
    const commands = dry.json!.result.commands as string[]
    assert.ok(commands.some((c) => c.includes('type veth peer name eth0')), commands.join('\n'))
    assert.deepEqual(n.run(['ipam', 'list']).json!.result, before, 'no IP was taken')
    assert.doesNotMatch(inNs(pod.name, ['ip', '-o', 'link']), /eth0/)
    assert.equal(existsSync(`${n.stateDir}/endpoints/dry2:eth0.json`), false)
  })
})
