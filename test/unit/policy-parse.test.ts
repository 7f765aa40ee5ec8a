import assert from 'node:assert/strict'
import {isPnError} from '../../src/errors.js'
import {parsePolicies, policyManifest} from '../../src/policy/parse.js'

/** The parse fails with PN_POLICY_INVALID whose message names `path` and says `cause`. */
function rejects(text: string, path: string, cause: RegExp) {
  assert.throws(() => parsePolicies(text, 'p.yaml'), (e: unknown) => {
    assert.ok(isPnError(e, 'PN_POLICY_INVALID'), String(e))
    assert.ok(e.hint)
    assert.ok(e.message.startsWith('parse network policy '), e.message)
    assert.ok(e.message.includes(path ? `${path}: ` : ''), `${e.message} lacks ${path}`)
    assert.match(e.message, cause)
    return true
  })
}

const doc = (spec: string, meta = 'name: p\n  namespace: x') => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  ${meta}\nspec:\n${spec}`

describe('policy parse: networking.k8s.io/v1 NetworkPolicy in YAML or JSON', () => {
  it('reads one YAML object with every supported field', () => {
    const [p] = parsePolicies(doc(`  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [b, a]}, {key: legacy, operator: DoesNotExist}]
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchExpressions: [{key: role, operator: Exists}]}
    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}
    ports: [{port: 80}, {protocol: UDP, port: 53}, {protocol: SCTP, port: 3000, endPort: 3010}, {protocol: TCP}]
  egress: []
`), 'p.yaml')
    assert.deepEqual(p, {
      namespace: 'x', name: 'p',
      podSelector: {matchLabels: {app: 'web'}, matchExpressions: [{key: 'tier', operator: 'In', values: ['a', 'b']}, {key: 'legacy', operator: 'DoesNotExist'}]},
      policyTypes: ['ingress', 'egress'],
      ingress: [{
        peers: [
          {podSelector: {matchExpressions: [{key: 'role', operator: 'Exists'}]}, namespaceSelector: {matchLabels: {team: 'blue'}}},
          {ipBlock: {cidr: '192.0.2.0/24', except: ['192.0.2.128/25']}},
        ],
        ports: [{protocol: 'TCP', port: 80}, {protocol: 'UDP', port: 53}, {protocol: 'SCTP', port: 3000, endPort: 3010}, {protocol: 'TCP'}],
      }],
      egress: [],
    })
  })

  it('defaults policyTypes as Kubernetes does: Ingress always, Egress only when there are egress rules', () => {
    const types = (spec: string) => parsePolicies(doc(spec), 'p.yaml')[0].policyTypes
    assert.deepEqual(types('  podSelector: {}\n'), ['ingress'])
    assert.deepEqual(types('  podSelector: {}\n  egress: []\n'), ['ingress'])
    assert.deepEqual(types('  podSelector: {}\n  egress: [{}]\n'), ['ingress', 'egress'])
    assert.deepEqual(types('  podSelector: {}\n  policyTypes: [Egress]\n'), ['egress'])
    // An empty rule allows everything; no rule denies everything: both are kept apart.
    assert.deepEqual(parsePolicies(doc('  podSelector: {}\n  ingress: [{}]\n'), 'p.yaml')[0].ingress, [{peers: [], ports: []}])
    assert.deepEqual(parsePolicies(doc('  podSelector: {}\n'), 'p.yaml')[0].ingress, [])
  })

  it('reads several documents, a List, and JSON; the namespace defaults to default', () => {
    const two = parsePolicies(`${doc('  podSelector: {}\n')}\n---\n${doc('  podSelector: {}\n', 'name: q')}`, 'p.yaml')
    assert.deepEqual(two.map((p) => `${p.namespace}/${p.name}`), ['x/p', 'default/q'])
    const obj = (name: string) => ({apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: {name, namespace: 'y'}, spec: {podSelector: {}}})
    const list = parsePolicies(JSON.stringify({apiVersion: 'v1', kind: 'List', items: [obj('a'), obj('b')]}), 'l.json')
    assert.deepEqual(list.map((p) => p.name), ['a', 'b'])
    assert.equal(parsePolicies(JSON.stringify(obj('c')), 'c.json')[0].name, 'c')
  })

  it('the canonical manifest parses back to the same policy', () => {
    const [p] = parsePolicies(doc('  podSelector: {matchLabels: {a: b}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 81}]}]\n  egress: [{}]\n'), 'p.yaml')
    assert.deepEqual(parsePolicies(JSON.stringify(policyManifest(p)), 'back')[0], p)
  })

  it('names the field of everything it does not support or know', () => {
    rejects(doc('  podSelector: {}\n  ingress: [{ports: [{port: 80}, {port: http}]}]\n'), 'spec.ingress[0].ports[1].port', /named ports are not supported/)
    rejects(doc('  podSelector: {}\n  ingress: [{ports: [{port: "80"}]}]\n'), 'spec.ingress[0].ports[0].port', /named ports are not supported/)
    rejects(doc('  podSelector: {}\n  egress: [{ports: [{protocol: ICMP}]}]\n'), 'spec.egress[0].ports[0].protocol', /not one of TCP, UDP, SCTP/)
    rejects(doc('  podSelector: {}\n  egress: [{ports: [{port: 0}]}]\n'), 'spec.egress[0].ports[0].port', /1-65535/)
    rejects(doc('  podSelector: {}\n  egress: [{ports: [{endPort: 90}]}]\n'), 'spec.egress[0].ports[0].endPort', /without a numeric port/)
    rejects(doc('  podSelector: {}\n  egress: [{ports: [{port: 90, endPort: 80}]}]\n'), 'spec.egress[0].ports[0].endPort', /from port \(90\)/)
    rejects(doc('  podSelector: {}\n  ingress: [{from: [{}]}]\n'), 'spec.ingress[0].from[0]', /needs podSelector, namespaceSelector or ipBlock/)
    rejects(doc('  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]\n'), 'spec.ingress[0].from[0]', /cannot be combined/)
    rejects(doc('  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]\n'), 'spec.ingress[0].from[0].ipBlock.except[0]', /not strictly inside 10.0.0.0\/8/)
    rejects(doc('  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n'), 'spec.ingress[0].from[0].ipBlock.cidr', /not a CIDR/)
    rejects(doc('  podSelector: {matchExpressions: [{key: a, operator: Gt, values: ["1"]}]}\n'), 'spec.podSelector.matchExpressions[0].operator', /not one of In, NotIn, Exists, DoesNotExist/)
    rejects(doc('  podSelector: {matchExpressions: [{key: a, operator: In}]}\n'), 'spec.podSelector.matchExpressions[0].values', /must not be empty/)
    rejects(doc('  podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}\n'), 'spec.podSelector.matchExpressions[0].values', /must be empty/)
    rejects(doc('  podSelector: {matchLabels: {app: 1}}\n'), 'spec.podSelector.matchLabels.app', /must be a string/)
    rejects(doc('  podSelector: {matchLabels: {"bad key!": x}}\n'), 'spec.podSelector.matchLabels.bad key!', /not a label name/)
    rejects(doc('  podSelector: {}\n  ingres: []\n'), 'spec.ingres', /unknown field/)
    rejects(doc('  podSelector: {}\n  ingress: [{form: []}]\n'), 'spec.ingress[0].form', /unknown field/)
    rejects(doc('  podSelector: {}\n  policyTypes: [Both]\n'), 'spec.policyTypes[0]', /not Ingress or Egress/)
    rejects(doc('  podSelector: {}\n  policyTypes: [Ingress]\n  egress: [{}]\n'), 'spec.egress', /policyTypes does not list Egress/)
    rejects(doc('  policyTypes: [Ingress]\n'), 'spec.podSelector', /is required/)
    rejects(doc('  podSelector: {}\n', 'name: Bad_Name'), 'metadata.name', /not a DNS subdomain/)
    rejects(doc('  podSelector: {}\n', 'generateName: p-'), 'metadata.generateName', /unknown field/)
    rejects(doc('  podSelector: {}\n').replace('networking.k8s.io/v1', 'networking.k8s.io/v1beta1'), 'apiVersion', /is not networking.k8s.io\/v1/)
    rejects(doc('  podSelector: {}\n').replace('kind: NetworkPolicy', 'kind: Service'), 'kind', /is not NetworkPolicy/)
  })

  it('refuses bad documents as a whole: broken YAML, nothing in it, a name given twice', () => {
    rejects('a: [b', '', /not valid YAML or JSON at line/)
    rejects('', '', /no NetworkPolicy objects/)
    rejects(`${doc('  podSelector: {}\n')}\n---\n${doc('  podSelector: {}\n')}`, '', /x\/p is given twice/)
    // The path names the document and the item.
    rejects(`${doc('  podSelector: {}\n')}\n---\n${doc('  podSelector: {}\n  ingress: [{ports: [{port: x}]}]\n', 'name: q')}`, 'spec.ingress[0].ports[0].port', /default\/q \(p\.yaml document 2\)/)
  })
})
