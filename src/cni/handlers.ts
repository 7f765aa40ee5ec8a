/** The real flows behind the protocol dispatcher. */
import {cniAdd} from './add.js'
import {cniCheck} from './check.js'
import {cniDel} from './del.js'
import {cniGc} from './gc.js'
import type {Handlers} from './protocol.js'
import {cniStatus} from './status.js'

export const defaultHandlers: Handlers = {
  add: (req) => cniAdd(req),
  del: async (req) => {
    await cniDel(req)
  },
  check: async (req) => {
    await cniCheck(req)
  },
  status: async (req) => {
    await cniStatus(req)
  },
  gc: async (req) => {
    await cniGc(req)
  },
}
