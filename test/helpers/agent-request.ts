/**
 * A test's stand-in for the native client that still carries the test hooks: it sends one CNI
 * call to the node's agent with every CNI_* and PN_* variable of its environment (the native
 * client forwards only CNI_* and pn's settings, never PN_TEST_* or PN_CNI_FAIL_AFTER), prints the
 * answer and exits with its code. Tests run it as the plugin (`node dist/test/helpers/agent-request.js`)
 * where a request to the agent must carry a hook; the agent honours hooks only when it was
 * started for tests.
 */
import {readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {callAgent} from '../../src/agent/client.js'

const stdin = readFileSync(0, 'utf8')
let stateDir = process.env.PN_STATE_DIR || '/var/lib/pn'
try {
  const conf = JSON.parse(stdin) as {stateDir?: unknown}
  if (typeof conf.stateDir === 'string' && conf.stateDir !== '') stateDir = conf.stateDir
} catch {
  // not JSON: the agent answers with the CNI decode error
}
const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => /^(CNI|PN)_/.test(e[0]) && e[1] !== undefined))
const r = await callAgent(path.join(stateDir, 'agent.sock'), {netnsIno: String(statSync('/proc/self/ns/net').ino), env, stdin})
process.stdout.write(r.stdout)
process.stderr.write(r.stderr)
process.exitCode = r.exitCode
