import assert from 'node:assert/strict'
import {isPnError} from '../../src/errors.js'
import {applyLabelChanges, labelSetKey, parseLabelChanges, podLabelSet, splitLabelSet} from '../../src/policy/labels.js'
import {describeSelector, selectorMatches} from '../../src/policy/selector.js'

describe('policy labels: Cilium label form and Kubernetes selectors', () => {
  it('a pod\'s label set names its labels, its namespace and the namespace\'s labels (with kubernetes.io/metadata.name), sorted', () => {
    const set = podLabelSet('x', {pod: 'a', app: 'web'}, {team: 'red'})
    assert.deepEqual(set, [
      'k8s:app=web',
      'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x',
      'k8s:io.cilium.k8s.namespace.labels.team=red',
      'k8s:io.kubernetes.pod.namespace=x',
      'k8s:pod=a',
    ])
    assert.deepEqual(splitLabelSet(set), {namespace: 'x', pod: {app: 'web', pod: 'a'}, nsLabels: {'kubernetes.io/metadata.name': 'x', team: 'red'}})
    // One key per set, whatever the order of the labels.
    assert.equal(labelSetKey([...set].reverse()), labelSetKey(set))
    assert.notEqual(labelSetKey(podLabelSet('y', {pod: 'a', app: 'web'}, {team: 'red'})), labelSetKey(set))
  })

  it('selectors: matchLabels and matchExpressions are ANDed; NotIn and DoesNotExist match a missing key', () => {
    const l = {app: 'web', tier: 'front'}
    assert.equal(selectorMatches({}, l), true)
    assert.equal(selectorMatches({matchLabels: {app: 'web'}}, l), true)
    assert.equal(selectorMatches({matchLabels: {app: 'web', tier: 'back'}}, l), false)
    assert.equal(selectorMatches({matchExpressions: [{key: 'tier', operator: 'In', values: ['front', 'mid']}]}, l), true)
    assert.equal(selectorMatches({matchExpressions: [{key: 'zone', operator: 'In', values: ['a']}]}, l), false)
    assert.equal(selectorMatches({matchExpressions: [{key: 'tier', operator: 'NotIn', values: ['front']}]}, l), false)
    assert.equal(selectorMatches({matchExpressions: [{key: 'zone', operator: 'NotIn', values: ['a']}]}, l), true)
    assert.equal(selectorMatches({matchExpressions: [{key: 'app', operator: 'Exists'}]}, l), true)
    assert.equal(selectorMatches({matchExpressions: [{key: 'zone', operator: 'Exists'}]}, l), false)
    assert.equal(selectorMatches({matchExpressions: [{key: 'zone', operator: 'DoesNotExist'}]}, l), true)
    assert.equal(selectorMatches({matchLabels: {app: 'web'}, matchExpressions: [{key: 'app', operator: 'DoesNotExist'}]}, l), false)
    assert.equal(describeSelector({matchLabels: {app: 'web'}, matchExpressions: [{key: 't', operator: 'In', values: ['a', 'b']}, {key: 'z', operator: 'DoesNotExist'}]}), 'app=web,t in (a,b),!z')
  })

  it('label changes as kubectl label takes them: key=value sets, key- removes; bad ones are named', () => {
    const c = parseLabelChanges(['app=web', 'example.com/tier=front', 'old-'], 'label pod x/a')
    assert.deepEqual(c, {set: {app: 'web', 'example.com/tier': 'front'}, remove: ['old']})
    assert.deepEqual(applyLabelChanges({old: '1', zone: 'a'}, c), {app: 'web', 'example.com/tier': 'front', zone: 'a'})
    const bad = (args: string[], cause: RegExp) => assert.throws(() => parseLabelChanges(args, 'label pod x/a'), (e: unknown) => isPnError(e, 'PN_INVALID_ARGUMENT') && cause.test(e.message) && Boolean(e.hint))
    bad([], /no label changes/)
    bad(['app'], /neither key=value nor key-/)
    bad(['app=we b'], /not a label value/)
    bad(['Bad.Prefix/app=x'], /invalid prefix/)
    bad(['app=a', 'app-'], /both set and removed/)
  })
})
