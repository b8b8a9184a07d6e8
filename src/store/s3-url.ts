/** S3 repository addresses (issue 18): `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`. Apart from s3.ts so that the CLI checks one without loading the store. */
import { checkKey, type S3Location } from './store.js'

const URL_RE = /^s3:(https?):\/\/([^/?#]+)\/([^/?#]+)(?:\/([^?#]*))?$/
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

/** `s3:http://HOST:PORT/BUCKET/PREFIX` → location; TypeError (one line) if it is not one. */
export function parseS3Url(s: string): S3Location {
  const m = URL_RE.exec(s)
  if (!m) throw new TypeError(`${s}: not an S3 repository address (s3:http://HOST:PORT/BUCKET[/PREFIX] or s3:https://…)`)
  const [, scheme, host, bucket, rawPrefix] = m
  if (!BUCKET_RE.test(bucket!)) throw new TypeError(`${s}: ${JSON.stringify(bucket)} is not a valid bucket name`)
  const prefix = (rawPrefix ?? '').replace(/\/+$/, '')
  if (prefix !== '') checkKey(prefix)
  return { endpoint: `${scheme}://${host}`, bucket: bucket!, prefix }
}

export const isS3Url = (s: string): boolean => s.startsWith('s3:')
