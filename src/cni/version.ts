/**
 * The VERSION answer, kept free of heavy imports: bin/pn-cni answers VERSION (which libcni
 * probes with arbitrary stdin and dummy env) without loading execa or any flow.
 */
import {isSupportedVersion, LATEST_VERSION, SUPPORTED_VERSIONS, type CniVersionResult} from './spec.js'

/** Echoes the request's cniVersion when pn supports it, else pn's latest; stdin may be garbage. */
export function versionResult(stdin: string): CniVersionResult {
  let requested: unknown
  try {
    requested = (JSON.parse(stdin) as {cniVersion?: unknown})?.cniVersion
  } catch {
    requested = undefined
  }
  const cniVersion = typeof requested === 'string' && isSupportedVersion(requested) ? requested : LATEST_VERSION
  return {cniVersion, supportedVersions: [...SUPPORTED_VERSIONS]}
}
