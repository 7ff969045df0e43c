import { Hono } from 'hono'
import type { AppEnv } from '../env'
import { authorizeEndpoint, consentEndpoint } from './authorize'
import { deviceAuthorization } from './device-authorization'
import { endSessionEndpoint } from './end-session'
import { introspect } from './introspect'
import { parEndpoint } from './par'
import { register } from './register'
import { revoke } from './revoke'
import { token } from './token'
import { userinfoEndpoint } from './userinfo'

/** /oauth/*: the OAuth 2.1 endpoints, answering errors in RFC 6749 §5.2 form. */
export const oauth = new Hono<AppEnv>()
  .route('/authorize', authorizeEndpoint)
  .route('/consent', consentEndpoint)
  .route('/token', token)
  .route('/introspect', introspect)
  .route('/revoke', revoke)
  .route('/register', register)
  .route('/userinfo', userinfoEndpoint)
  .route('/device_authorization', deviceAuthorization)
  .route('/par', parEndpoint)
  .route('/logout', endSessionEndpoint)
