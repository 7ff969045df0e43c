const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** True for a textual UUID: what may be compared with a `uuid` column without a cast error. */
export function isUuid(text: string): boolean {
  return UUID.test(text)
}
