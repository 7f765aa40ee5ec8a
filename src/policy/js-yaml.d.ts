// js-yaml ships no types and @types/js-yaml is not installed: the one call pn makes.
declare module 'js-yaml' {
  export const CORE_SCHEMA: unknown
  export function loadAll(text: string, iterator?: undefined, opts?: {schema?: unknown; filename?: string}): unknown[]
  export class YAMLException extends Error {
    reason: string
    mark?: {line: number; column: number}
  }
}
