export type PortcullisErrorCode =
  /** The options given to a factory are unusable (thrown when it is built). */
  | 'invalid_options'
  /** Portcullis could not be reached, timed out, or answered 5xx: retry later (a 503 upstream). */
  | 'unavailable'
  /** Portcullis refused this service's own credentials (admin token, client secret). */
  | 'caller_unauthorized'
  /** Portcullis answered something this SDK does not understand. */
  | 'unexpected_response'

/** A failure of the SDK or of the call to Portcullis, never a verdict on the caller's credential. */
export class PortcullisError extends Error {
  override name = this.constructor.name
  readonly code: PortcullisErrorCode
  constructor(code: PortcullisErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
