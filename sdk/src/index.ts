export type {
  AccessTokenClaims,
  AccessTokenFailure,
  AccessTokenVerification,
  VerifyAccessTokenOptions,
} from './access-tokens.js'
export {
  API_KEY_CODES,
  type ApiKeyCode,
  type ApiKeyVerification,
  type LimitState,
  type VerifiedApiKey,
  type VerifyApiKeyOptions,
} from './api-keys.js'
export { createPortcullis, type Portcullis, type PortcullisOptions } from './client.js'
export { bearerToken, type CallerCredentials, clientCredentials } from './credentials.js'
export { PortcullisError, type PortcullisErrorCode } from './errors.js'
export {
  type AuthenticateOptions,
  authenticateRequest,
  type PortcullisAuth,
  withPortcullis,
} from './fetch-handler.js'
export type { FetchLike } from './http.js'
