export type {
  AccessTokenClaims,
  AccessTokenFailure,
  AccessTokenVerification,
  VerifyAccessTokenOptions,
} from './access-tokens'
export {
  API_KEY_CODES,
  type ApiKeyCode,
  type ApiKeyVerification,
  type LimitState,
  type VerifiedApiKey,
  type VerifyApiKeyOptions,
} from './api-keys'
export { createPortcullis, type Portcullis, type PortcullisOptions } from './client'
export { bearerToken, type CallerCredentials, clientCredentials } from './credentials'
export { PortcullisError, type PortcullisErrorCode } from './errors'
export {
  type AuthenticateOptions,
  authenticateRequest,
  type PortcullisAuth,
  withPortcullis,
} from './fetch-handler'
export type { FetchLike } from './http'
