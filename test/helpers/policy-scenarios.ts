/**
 * The truth-table scenarios of the upstream network policy e2e tests, as changes to a model world
 * (test/helpers/policy-model.ts): namespaces x, y, z with pods a, b, c, and three outside
 * addresses for ipBlock. The unit truth table runs them through resolution; the integration one
 * (test/integration/policy-truth-table.integration.ts) turns each step into pn commands on two
 * real nodes and probes the datapath.
 */
import type {ModelProtocol, ModelWorld} from './policy-model.js'

/** Addresses outside the pods (the ipBlock scenario): two in 192.0.2.0/24, one beyond. */
export const OUTSIDE = ['192.0.2.10', '192.0.2.200', '198.51.100.1']
export const PROBES: [ModelProtocol, number][] = [['TCP', 80], ['TCP', 81], ['UDP', 80]]

/** A NetworkPolicy object as a user writes it. */
export const np = (ns: string, name: string, spec: Record<string, unknown>) => ({apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: {namespace: ns, name}, spec})

export interface Step {
  name: string
  change: (w: ModelWorld) => void
}

/** Each scenario: its steps, and a few verdicts of the model after the first, worked out by hand from the spec. */
export const SCENARIOS: {name: string; steps: Step[]; spot: [string, boolean][]}[] = [
  {
    name: 'deny all ingress',
    steps: [{name: 'deny-ingress', change: (w) => w.policies.push(np('x', 'deny-ingress', {podSelector: {}, policyTypes: ['Ingress']}))}],
    spot: [['y/a -> x/a 80/TCP', false], ['x/b -> x/a 80/TCP', false], ['x/a -> y/a 80/TCP', true], ['192.0.2.10 -> x/c 80/TCP', false]],
  },
  {
    name: 'deny all egress',
    steps: [{name: 'deny-egress', change: (w) => w.policies.push(np('x', 'deny-egress', {podSelector: {}, policyTypes: ['Egress']}))}],
    spot: [['x/a -> y/a 80/TCP', false], ['x/a -> 198.51.100.1 80/TCP', false], ['y/a -> x/a 80/TCP', true]],
  },
  {
    name: 'allow from the same namespace',
    steps: [{name: 'same-ns', change: (w) => w.policies.push(np('x', 'same-ns', {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}))}],
    spot: [['x/b -> x/a 81/TCP', true], ['y/b -> x/a 80/TCP', false]],
  },
  {
    name: 'allow from a namespace by label, then relabel a namespace',
    steps: [
      {name: 'ns-label', change: (w) => w.policies.push(np('x', 'from-blue', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: 'blue'}}}]}]}))},
      {name: 'ns-relabel', change: (w) => (w.namespaces.z = {team: 'blue'})},
    ],
    spot: [['y/c -> x/a 80/TCP', true], ['z/c -> x/a 80/TCP', false], ['x/b -> x/a 80/TCP', false], ['x/a -> x/b 80/TCP', true]],
  },
  {
    name: 'pod and namespace selector in one peer',
    steps: [{name: 'one-peer', change: (w) => w.policies.push(np('x', 'one-peer', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: 'blue'}}, podSelector: {matchLabels: {pod: 'b'}}}]}]}))}],
    spot: [['y/b -> x/a 80/TCP', true], ['y/a -> x/a 80/TCP', false], ['x/b -> x/a 80/TCP', false]],
  },
  {
    name: 'pod and namespace selector as two peers',
    steps: [{name: 'two-peers', change: (w) => w.policies.push(np('x', 'two-peers', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: 'blue'}}}, {podSelector: {matchLabels: {pod: 'b'}}}]}]}))}],
    spot: [['y/b -> x/a 80/TCP', true], ['y/a -> x/a 80/TCP', true], ['x/b -> x/a 80/TCP', true], ['z/b -> x/a 80/TCP', false]],
  },
  {
    name: 'matchExpressions',
    steps: [{
      name: 'exprs',
      change: (w) => w.policies.push(np('x', 'exprs', {
        podSelector: {matchExpressions: [{key: 'pod', operator: 'In', values: ['a', 'b']}]},
        ingress: [{from: [
          {namespaceSelector: {matchExpressions: [{key: 'team', operator: 'Exists'}]}, podSelector: {matchExpressions: [{key: 'pod', operator: 'NotIn', values: ['c']}]}},
          {namespaceSelector: {matchExpressions: [{key: 'team', operator: 'DoesNotExist'}]}, podSelector: {matchLabels: {pod: 'c'}}},
        ]}],
      })),
    }],
    spot: [['y/a -> x/b 80/TCP', true], ['y/c -> x/b 80/TCP', false], ['z/c -> x/a 80/TCP', true], ['z/a -> x/a 80/TCP', false], ['z/a -> x/c 80/TCP', true]],
  },
  {
    name: 'ipBlock with except (egress and ingress, overlapping CIDRs)',
    steps: [{
      name: 'ipblock',
      change: (w) => {
        w.policies.push(np('x', 'to-net', {podSelector: {matchLabels: {pod: 'a'}}, policyTypes: ['Egress'], egress: [{to: [{ipBlock: {cidr: '192.0.2.0/24', except: ['192.0.2.128/25']}}]}]}))
        w.policies.push(np('y', 'from-world', {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: '0.0.0.0/0', except: ['192.0.2.0/24']}}]}]}))
      },
    }],
    spot: [['x/a -> 192.0.2.10 80/TCP', true], ['x/a -> 192.0.2.200 80/TCP', false], ['x/a -> 198.51.100.1 80/TCP', false], ['x/a -> x/b 80/TCP', false],
      ['198.51.100.1 -> y/a 80/TCP', true], ['192.0.2.10 -> y/a 80/TCP', false], ['192.0.2.200 -> y/a 80/TCP', false], ['x/b -> y/a 80/TCP', false]],
  },
  {
    name: 'ports with endPort',
    steps: [{
      name: 'ports',
      change: (w) => {
        w.policies.push(np('x', 'range', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 79, endPort: 80}]}]}))
        w.policies.push(np('x', 'udp-and-range', {podSelector: {matchLabels: {pod: 'b'}}, ingress: [{ports: [{protocol: 'UDP', port: 80}, {protocol: 'TCP', port: 81, endPort: 90}]}]}))
      },
    }],
    spot: [['y/a -> x/a 80/TCP', true], ['y/a -> x/a 81/TCP', false], ['y/a -> x/a 80/UDP', false], ['y/a -> x/b 80/TCP', false], ['y/a -> x/b 81/TCP', true], ['192.0.2.10 -> x/b 80/UDP', true]],
  },
  {
    name: 'two policies are a union; deleting one narrows it again',
    steps: [
      {name: 'first', change: (w) => w.policies.push(np('x', 'from-y', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: 'blue'}}}]}]}))},
      {name: 'union', change: (w) => w.policies.push(np('x', 'from-zc-81', {podSelector: {matchLabels: {pod: 'a'}}, policyTypes: ['Ingress', 'Egress'], ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: 'c'}}}], ports: [{port: 81}]}], egress: [{to: [{namespaceSelector: {}}]}]}))},
      {name: 'delete', change: (w) => w.policies.splice(w.policies.findIndex((p) => (p as {metadata: {name: string}}).metadata.name === 'from-zc-81'), 1)},
    ],
    spot: [['y/a -> x/a 80/TCP', true], ['z/c -> x/a 81/TCP', false]],
  },
  {
    name: 'a relabel that changes the verdict',
    steps: [
      {name: 'clients-only', change: (w) => w.policies.push(np('x', 'clients', {podSelector: {matchLabels: {pod: 'a'}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: 'client'}}}]}]}))},
      {name: 'relabel', change: (w) => (w.pods.find((p) => p.namespace === 'y' && p.name === 'b')!.labels.role = 'client')},
      {name: 'unlabel', change: (w) => delete w.pods.find((p) => p.namespace === 'y' && p.name === 'b')!.labels.role},
    ],
    spot: [['y/b -> x/a 80/TCP', false]],
  },
]
