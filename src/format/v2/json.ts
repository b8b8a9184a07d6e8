import { FormatError } from '../errors.js'

/** Helpers for the JSON records of format 2: parse, and check fields with one message shape. */

export type Json = Record<string, unknown>

export function parseJsonObject(payload: Buffer, what: string, kind: string): Json {
  let v: unknown
  try {
    v = JSON.parse(payload.toString('utf8'))
  } catch {
    throw new FormatError('BAD_VALUE', `${what}: ${kind} is not valid JSON`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError('BAD_VALUE', `${what}: ${kind} is not a JSON object`)
  return v as Json
}

/** Field checkers bound to one record: each returns the value or throws "<kind> field 'f' is missing or invalid". */
export function fields(o: Json, what: string, kind: string) {
  const bad = (f: string): never => {
    throw new FormatError('BAD_VALUE', `${what}: ${kind} field '${f}' is missing or invalid`)
  }
  const int = (f: string, min = 0, max = Number.MAX_SAFE_INTEGER): number => {
    const v = o[f]
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) bad(f)
    return v as number
  }
  const str = (f: string, re?: RegExp): string => {
    const v = o[f]
    if (typeof v !== 'string' || (re && !re.test(v))) bad(f)
    return v as string
  }
  const time = (f: string): string => {
    const v = str(f)
    if (!ISO_RE.test(v) || Number.isNaN(Date.parse(v))) bad(f)
    return v
  }
  const bool = (f: string): boolean => {
    const v = o[f]
    if (typeof v !== 'boolean') bad(f)
    return v as boolean
  }
  const oneOf = <T extends string>(f: string, values: readonly T[]): T => {
    const v = o[f]
    if (typeof v !== 'string' || !values.includes(v as T)) bad(f)
    return v as T
  }
  const strings = (f: string): string[] => {
    const v = o[f]
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) bad(f)
    return [...(v as string[])]
  }
  const optional = (f: string): boolean => o[f] !== undefined
  return { bad, int, str, time, bool, oneOf, strings, optional }
}

/** ISO 8601 UTC as Date.prototype.toISOString writes it. */
export const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/
export const HEX32_RE = /^[0-9a-f]{32}$/
export const HEX64_RE = /^[0-9a-f]{64}$/
export const RAND16_RE = /^[0-9a-f]{16}$/

/** Strict base64 (what Buffer.toString('base64') writes). */
export function base64(v: unknown, what: string, field: string, kind: string): Buffer {
  if (typeof v !== 'string' || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(v)) {
    throw new FormatError('BAD_VALUE', `${what}: ${kind} field '${field}' is missing or invalid`)
  }
  return Buffer.from(v, 'base64')
}
