// The little of oidc-provider's API the bench peer uses (the package ships no types).
declare module 'oidc-provider' {
  import type { Server } from 'node:http'

  interface ResourceServerInfo {
    scope: string
    audience?: string
    accessTokenFormat: 'opaque' | 'jwt'
    jwt?: { sign: { alg: string } }
  }

  interface ProviderConfiguration {
    clients: Record<string, unknown>[]
    jwks: { keys: Record<string, unknown>[] }
    scopes: string[]
    features: {
      devInteractions: { enabled: boolean }
      clientCredentials: { enabled: boolean }
      introspection: { enabled: boolean }
      resourceIndicators: {
        enabled: boolean
        defaultResource: () => string
        useGrantedResource: () => boolean
        getResourceServerInfo: (ctx: unknown, resource: string) => ResourceServerInfo
      }
    }
  }

  export default class Provider {
    constructor(issuer: string, configuration: ProviderConfiguration)
    listen(port: number, host: string): Server
    on(event: 'server_error', listener: (ctx: unknown, error: Error) => void): this
  }
}
