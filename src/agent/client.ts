/** A Node-side client of the agent socket (`pn agent status`, tests). Runtimes use native/pn-cni.c. */
import net from 'node:net'
import {PnError} from '../errors.js'
import {decodeResponse, encodeRequest, type WireRequest, type WireResponse} from './wire.js'

/** Variable asking the agent about itself instead of running a CNI command. */
export const AGENT_OP_VAR = 'PN_AGENT_OP'

/** One request/response over the socket; PN_AGENT_NOT_RUNNING when nothing listens. */
export function callAgent(socket: string, req: WireRequest, timeoutMs = 60_000): Promise<WireResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const c = net.connect({path: socket, allowHalfOpen: true})
    const timer = setTimeout(() => {
      c.destroy()
      reject(new PnError('PN_AGENT_BUSY', `call agent ${socket}: no answer after ${timeoutMs} ms`, {hint: 'check the agent log'}))
    }, timeoutMs)
    c.once('connect', () => c.end(encodeRequest(req)))
    c.on('data', (d: Buffer) => chunks.push(d))
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new PnError('PN_AGENT_NOT_RUNNING', `call agent ${socket}: no agent listens (${err.code})`, {hint: 'start one: pn agent start'})
          : err,
      )
    })
    c.once('end', () => {
      clearTimeout(timer)
      try {
        resolve(decodeResponse(Buffer.concat(chunks)))
      } catch (err) {
        reject(new PnError('PN_AGENT_NOT_RUNNING', `call agent ${socket}: ${(err as Error).message}`, {hint: 'the agent closed the connection early; check its log'}))
      }
    })
  })
}
