/**
 * The real flows behind the protocol dispatcher, each loaded only when its command runs: a
 * runtime execs pn-cni once per call, so an ADD should not pay for parsing CHECK, GC and STATUS
 * (and the modules only they use) on the pod start-up path.
 */
import type {Handlers} from './protocol.js'

export const defaultHandlers: Handlers = {
  add: async (req) => (await import('./add.js')).cniAdd(req),
  del: async (req) => {
    await (await import('./del.js')).cniDel(req)
  },
  check: async (req) => {
    await (await import('./check.js')).cniCheck(req)
  },
  status: async (req) => {
    await (await import('./status.js')).cniStatus(req)
  },
  gc: async (req) => {
    await (await import('./gc.js')).cniGc(req)
  },
}
