/**
 * Service changes as one JSON request, for a program that drives pn (a controller syncing
 * Kubernetes services) rather than a person: the node agent serves it on its socket, so a change
 * costs no process start, and `pn-cni` runs the same request in-process when no agent answers.
 *
 *   {"stateDir": "/var/lib/pn", "op": "add",   "frontend": "10.96.0.10:80/tcp", "backends": ["10.0.1.5:8080"]}
 *   {"stateDir": "/var/lib/pn", "op": "del",   "frontend": "10.96.0.10:80/tcp"}
 *   {"stateDir": "/var/lib/pn", "op": "apply", "services": [{"frontend": …, "backends": […]}, …], "dryRun": false}
 *
 * sent with `PN_AGENT_OP=service` through the client (`<bin>/pn` or dist/native/pn-cni). The
 * answer is the `--json` envelope of the matching `pn service` command.
 */
import {PnError, toPnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {addService, applyServices, deleteService, type ApplyOptions} from './index.js'

/** The PN_AGENT_OP value that marks a service request. */
export const SERVICE_OP = 'service'

export type ServiceRequest =
  | {op: 'add'; frontend: string; backends: string[]}
  | {op: 'del'; frontend: string}
  | {op: 'apply'; services: unknown[]; dryRun: boolean}

function invalid(message: string): PnError {
  return new PnError('PN_SERVICE_INVALID', `service request: ${message}`, {
    hint: 'send {"op": "add"|"del"|"apply", …} as JSON (docs/SERVICES.md, "Changes from a program")',
  })
}

/** Parse and check the request's shape (addresses and ports are checked by the service model). */
export function parseServiceRequest(text: string): ServiceRequest {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw invalid(`not JSON (${(err as Error).message})`)
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid('not a JSON object')
  const b = body as Record<string, unknown>
  const str = (k: string) => {
    if (typeof b[k] !== 'string' || b[k] === '') throw invalid(`"${k}" must be a non-empty string`)
    return b[k] as string
  }
  switch (b.op) {
    case 'add': {
      if (!Array.isArray(b.backends) || b.backends.some((x) => typeof x !== 'string')) throw invalid('"backends" must be a list of "IP:PORT" strings')
      return {op: 'add', frontend: str('frontend'), backends: b.backends as string[]}
    }
    case 'del':
      return {op: 'del', frontend: str('frontend')}
    case 'apply': {
      if (!Array.isArray(b.services)) throw invalid('"services" must be a list')
      if (b.dryRun !== undefined && typeof b.dryRun !== 'boolean') throw invalid('"dryRun" must be true or false')
      return {op: 'apply', services: b.services, dryRun: b.dryRun === true}
    }
    default:
      throw invalid(`"op" must be "add", "del" or "apply" (got ${JSON.stringify(b.op)})`)
  }
}

/** Run a parsed request: the same library calls as `pn service add|del|apply`. */
export async function runServiceRequest(runner: Runner, stateDir: string, req: ServiceRequest, opts: ApplyOptions = {}): Promise<unknown> {
  switch (req.op) {
    case 'add':
      return addService(runner, stateDir, req.frontend, req.backends, opts)
    case 'del':
      return deleteService(runner, stateDir, req.frontend, opts)
    case 'apply':
      return applyServices(runner, stateDir, {file: '-', text: JSON.stringify(req.services)}, {...opts, dryRun: req.dryRun})
  }
}

/**
 * The whole exchange: request text in, `pn service --json` envelope out, with the exit code the
 * CLI would give. Never throws (a bad request is an error envelope).
 */
export async function answerServiceRequest(runner: Runner, stateDir: string, text: string, opts: ApplyOptions = {}): Promise<{exitCode: number; stdout: string}> {
  try {
    const result = (await runServiceRequest(runner, stateDir, parseServiceRequest(text), opts)) as {warnings?: string[]}
    return {exitCode: 0, stdout: JSON.stringify({status: 'ok', result, warnings: result.warnings ?? []}) + '\n'}
  } catch (err) {
    const pe = toPnError(err, 'run a service request')
    return {exitCode: pe.exitCode, stdout: JSON.stringify({status: 'error', error: pe.toJSON()}) + '\n'}
  }
}
