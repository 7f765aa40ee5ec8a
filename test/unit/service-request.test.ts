/** The JSON service request a program sends to the agent (src/service/request.ts): shape checks. */
import assert from 'node:assert/strict'
import {parseServiceRequest} from '../../src/service/request.js'

describe('service request (JSON from a program)', () => {
  it('parses add, del and apply', () => {
    assert.deepEqual(parseServiceRequest('{"op":"add","frontend":"10.96.0.10:80/tcp","backends":["10.0.1.5:8080"],"stateDir":"/x"}'), {
      op: 'add', frontend: '10.96.0.10:80/tcp', backends: ['10.0.1.5:8080'],
    })
    assert.deepEqual(parseServiceRequest('{"op":"del","frontend":"10.96.0.10:80"}'), {op: 'del', frontend: '10.96.0.10:80'})
    assert.deepEqual(parseServiceRequest('{"op":"apply","services":[]}'), {op: 'apply', services: [], dryRun: false})
    assert.deepEqual(parseServiceRequest('{"op":"apply","services":[],"dryRun":true}'), {op: 'apply', services: [], dryRun: true})
  })

  it('refuses anything else with PN_SERVICE_INVALID and says what is wrong', () => {
    for (const [text, why] of [
      ['not json', /not JSON/],
      ['[]', /not a JSON object/],
      ['{"op":"move"}', /"op" must be/],
      ['{"op":"add","frontend":"10.96.0.10:80","backends":"10.0.1.5:80"}', /"backends" must be a list/],
      ['{"op":"add","backends":[]}', /"frontend" must be a non-empty string/],
      ['{"op":"del","frontend":""}', /"frontend" must be a non-empty string/],
      ['{"op":"apply","services":{}}', /"services" must be a list/],
      ['{"op":"apply","services":[],"dryRun":"yes"}', /"dryRun" must be true or false/],
    ] as const) {
      assert.throws(() => parseServiceRequest(text), (e: Error & {code?: string}) => e.code === 'PN_SERVICE_INVALID' && why.test(e.message), text)
    }
  })
})
