/** etcd pool locations, and the promise that only an etcd:// location ever loads the etcd client. */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {isPnError} from '../../src/errors.js'
import {isEtcdLocation, openPoolStore, resolvePoolLocation} from '../../src/ipam/pool.js'
import {EtcdPool} from '../../src/ipam/pool-etcd.js'
import {checkEtcdTls, parseEtcdLocation} from '../../src/state/etcd-store.js'
import {REPO_ROOT} from '../helpers/cli.js'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f)
    if (statSync(p).isDirectory()) return sources(p)
    return p.endsWith('.ts') ? [p] : []
  })
}

describe('etcd pool locations', () => {
  it('parses etcd://HOST:PORT[,HOST:PORT…][/PREFIX]', () => {
    assert.deepEqual(parseEtcdLocation('etcd://10.0.0.5:2379'), {hosts: ['http://10.0.0.5:2379'], prefix: '/pn', tls: false})
    assert.deepEqual(parseEtcdLocation('etcd://a:1,b.example:2379,[fd00::1]:2379/team/pool/'), {
      hosts: ['http://a:1', 'http://b.example:2379', 'http://[fd00::1]:2379'],
      prefix: '/team/pool',
      tls: false,
    })
    assert.deepEqual(parseEtcdLocation('etcds://a:1,b:2/p'), {hosts: ['https://a:1', 'https://b:2'], prefix: '/p', tls: true})
    for (const bad of ['etcd://', 'etcd://host', 'etcd://host:0', 'etcd://host:65536', 'etcd://h:1/a b', 'etcd://h:1,/x', 'http://h:1', 'etcdss://h:1']) {
      assert.throws(() => parseEtcdLocation(bad), (e) => isPnError(e, 'PN_INVALID_ARGUMENT'), bad)
    }
  })

  it('keeps an etcd location as it is where a file path would be resolved', () => {
    assert.equal(resolvePoolLocation('/var/lib/pn', 'etcd://h:2379/p'), 'etcd://h:2379/p')
    assert.equal(resolvePoolLocation('/var/lib/pn', 'pool.json'), path.resolve('pool.json'))
    assert.equal(resolvePoolLocation('/var/lib/pn'), '/var/lib/pn/cluster-pool.json')
    assert.equal(isEtcdLocation('/tmp/etcd:/x'), false)
    assert.equal(isEtcdLocation('etcds://h:2379'), true)
    const store = openPoolStore('etcd://h:2379/p')
    assert.ok(store instanceof EtcdPool)
    assert.equal(store.keyOf('cidrs', '10.0.0.0/24'), '/p/pool/v1/cidrs/10.0.0.0/24')
    assert.equal(store.keyOf('nodes', 'n1'), '/p/pool/v1/nodes/n1')
    assert.equal(store.keyOf('config'), '/p/pool/v1/config')
    assert.equal(openPoolStore('/tmp/pool.json').location, '/tmp/pool.json')
  })

  it('TLS: etcds:// takes a CA and a client cert+key (both or neither); etcd:// takes none and is warned about', () => {
    const bad = (f: () => unknown, re: RegExp) => assert.throws(f, (e) => isPnError(e, 'PN_INVALID_ARGUMENT') && re.test((e as Error).message))
    assert.match(checkEtcdTls('etcd://h:1') ?? '', /^pool over plain http: etcd:\/\/h:1/)
    assert.deepEqual(openPoolStore('etcd://h:1').warnings.length, 1)
    assert.deepEqual(openPoolStore('etcds://h:1', {etcdTls: {ca: '/x/ca.pem'}}).warnings, [])
    assert.equal(checkEtcdTls('etcds://h:1', {ca: 'ca', cert: 'c', key: 'k'}), undefined)
    bad(() => openPoolStore('etcd://h:1', {etcdTls: {ca: 'ca.pem'}}), /--etcd-ca given for a plain-http etcd:\/\/ location/)
    bad(() => openPoolStore('etcds://h:1', {etcdTls: {cert: 'c.pem'}}), /--etcd-cert without --etcd-key/)
    bad(() => openPoolStore('etcds://h:1', {etcdTls: {key: 'k.pem'}}), /--etcd-key without --etcd-cert/)
    bad(() => openPoolStore('/tmp/pool.json', {etcdTls: {ca: 'ca.pem'}}), /apply to an etcds:\/\/ pool, not a file/)
  })

  it('loads the etcd3 client lazily, from src/state/etcd-store.ts only (pn-cni never pays for it)', () => {
    const files = [...sources(path.join(REPO_ROOT, 'src')), ...sources(path.join(REPO_ROOT, 'commands')), path.join(REPO_ROOT, 'bin/pn-cni')]
    const offenders = files.filter((f) => /from 'etcd3'|require\('etcd3'\)/.test(readFileSync(f, 'utf8')) || (/import\('etcd3'\)/.test(readFileSync(f, 'utf8')) && !f.endsWith('src/state/etcd-store.ts')))
    assert.deepEqual(offenders.map((f) => path.relative(REPO_ROOT, f)), [])
    assert.match(readFileSync(path.join(REPO_ROOT, 'src/state/etcd-store.ts'), 'utf8'), /await import\('etcd3'\)/)
  })
})
