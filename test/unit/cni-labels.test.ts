import assert from 'node:assert/strict'
import {LABELS_ANNOTATION, podLabels, POD_ANNOTATIONS_CAPABILITY} from '../../src/cni/labels.js'
import {labelKeyProblem, labelValueProblem} from '../../src/policy/labels.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import {PnError} from '../../src/errors.js'

const annotated = (text: string) => ({[POD_ANNOTATIONS_CAPABILITY]: {[LABELS_ANNOTATION]: text, other: 'x'}})

describe('pod labels on ADD (args.cni.labels, the pn.cni/labels annotation)', () => {
  it('reads the CONVENTIONS list and the annotation (JSON or k=v), the annotation winning, sorted by key', () => {
    assert.deepEqual(podLabels({cni: {labels: [{key: 'tier', value: 'db'}, {key: 'app', value: 'web'}]}}, undefined), {app: 'web', tier: 'db'})
    assert.deepEqual(podLabels(undefined, annotated('{"app":"api","example.com/team":"a"}')), {app: 'api', 'example.com/team': 'a'})
    assert.deepEqual(podLabels({cni: {labels: [{key: 'app', value: 'web'}, {key: 'x', value: ''}]}}, annotated('app=api, role=front')), {app: 'api', role: 'front', x: ''})
    assert.deepEqual(podLabels({cni: {ips: ['10.0.0.1']}}, {portMappings: []}), {})
  })

  it('refuses what Kubernetes refuses, naming the source and the label (code 7 through parseNetConf)', () => {
    const cases: [unknown, unknown, RegExp][] = [
      [{cni: {labels: {app: 'web'}}}, undefined, /args\.cni\.labels: label list must be a list/],
      [{cni: {labels: [{key: 'app'}]}}, undefined, /label "app" has no string value/],
      [{cni: {labels: [{key: '-app', value: 'x'}]}}, undefined, /args\.cni\.labels: label key "-app" is not a label name/],
      [{cni: {labels: [{key: 'Bad_Prefix/app', value: 'x'}]}}, undefined, /label key "Bad_Prefix\/app" has an invalid prefix \(a DNS subdomain, lowercase\)/],
      [{cni: {labels: [{key: 'app', value: 'a b'}]}}, undefined, /app="a b" has a bad value/],
      [undefined, annotated('app'), /"app" has no "="/],
      [undefined, annotated('{"app": 1}'), /"app" has no string value/],
      [undefined, annotated('{not json'), /is not JSON/],
    ]
    for (const [args, rc, re] of cases) {
      const conf = JSON.stringify({cniVersion: '1.0.0', name: 'n', type: 'pn', args, runtimeConfig: rc})
      let err: unknown
      try {
        parseNetConf(conf)
      } catch (e) {
        err = e
      }
      assert.ok(err instanceof PnError, String(re))
      assert.equal(err.code, 'PN_CNI_INVALID_CONFIG')
      assert.match(err.message, re)
    }
  })

  it('checks keys and values with the Kubernetes syntax', () => {
    assert.equal(labelKeyProblem('app'), undefined)
    assert.equal(labelKeyProblem('kubernetes.io/metadata.name'), undefined)
    assert.match(labelKeyProblem('a'.repeat(64)) ?? "", /1-63/)
    assert.match(labelKeyProblem('/app') ?? "", /prefix/)
    assert.equal(labelValueProblem(''), undefined)
    assert.equal(labelValueProblem('v1.2_x-y'), undefined)
    assert.match(labelValueProblem('x'.repeat(64)) ?? "", /63/)
    assert.deepEqual(parseNetConf(JSON.stringify({cniVersion: '1.0.0', name: 'n', type: 'pn', args: {cni: {labels: [{key: 'app', value: 'web'}]}}})).labels, {app: 'web'})
  })
})
