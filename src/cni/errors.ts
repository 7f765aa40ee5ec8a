/**
 * PnError → CNI error body. The code comes from ERROR_CODES (`cni` column), so spec codes 1–11
 * and 50 mean what the spec says and pn's own failures are ≥ 100; the PN_* code and the hint go
 * into `details`, which the spec reserves for the long form.
 */
import {PnError, toPnError} from '../errors.js'
import type {CniErrorBody} from './spec.js'

export function toCniError(err: unknown, cniVersion?: string): CniErrorBody {
  const pe: PnError = toPnError(err, 'run pn cni')
  const details = [`${pe.code}`, pe.hint ? `hint: ${pe.hint}` : '', undoDetails(pe)].filter(Boolean).join('; ')
  return {
    ...(cniVersion ? {cniVersion} : {}),
    code: pe.cniCode,
    msg: pe.message,
    details,
  }
}

function undoDetails(pe: PnError): string {
  const failed = pe.details?.rollbackErrors
  if (!Array.isArray(failed) || failed.length === 0) return ''
  return `undo failed: ${failed.map((f: {step: string; message: string}) => `${f.step}: ${f.message}`).join(', ')}`
}
