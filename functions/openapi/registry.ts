import { toJsonSchema } from '@valibot/to-json-schema'
import type { GenericSchema } from 'valibot'

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete'
export type SecurityScheme =
  | 'adminToken'
  | 'bearerToken'
  | 'sessionCookie'
  | 'clientBasic'
  | 'serviceKey'
  | 'dpop'

export interface RouteDoc {
  method: HttpMethod
  /** OpenAPI path template, e.g. `/api-keys/{id}`. */
  path: string
  summary: string
  tags: readonly string[]
  security?: readonly SecurityScheme[]
  requestBody?: { schema: GenericSchema; contentTypes?: readonly string[] }
  query?: GenericSchema
  /** Request headers the operation reads (e.g. RFC 9449 `DPoP`). */
  headers?: readonly { name: string; description: string }[]
  responses: Readonly<Record<number, { description: string; schema?: GenericSchema; contentType?: string }>>
}

const routes: RouteDoc[] = []

/** Registers an operation for `/openapi.json`; called at module scope next to the handler. */
export function documentRoute(doc: RouteDoc): void {
  routes.push(doc)
}

type JsonObject = Record<string, unknown>

function schemaOf(schema: GenericSchema): JsonObject {
  const { $schema: _ignored, ...rest } = toJsonSchema(schema, {
    target: 'draft-2020-12',
    errorMode: 'ignore',
    typeMode: 'input',
  }) as JsonObject
  return rest
}

const PROBLEM_SCHEMA = {
  type: 'object',
  required: ['type', 'title', 'status', 'detail', 'code'],
  properties: {
    type: { type: 'string', format: 'uri-reference' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    instance: { type: 'string' },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { field: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
}

const OAUTH_ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'string' }, error_description: { type: 'string' } },
}

/** An OpenAPI 3.1 document of every registered operation. */
export function buildOpenApiDocument(issuer: string): JsonObject {
  const paths: Record<string, Record<string, JsonObject>> = {}
  for (const route of routes) {
    const isOAuth = route.path.startsWith('/oauth/')
    const operation: JsonObject = {
      summary: route.summary,
      tags: route.tags,
      operationId: `${route.method}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, ch: string | undefined) => (ch ?? '').toUpperCase())}`,
      responses: Object.fromEntries(
        Object.entries(route.responses).map(([status, response]) => [
          status,
          {
            description: response.description,
            ...(response.schema === undefined
              ? {}
              : {
                  content: {
                    [response.contentType ?? 'application/json']: { schema: schemaOf(response.schema) },
                  },
                }),
          },
        ]),
      ),
    }
    const parameters = [...route.path.matchAll(/\{([^}]+)\}/g)].map(([, name]) => ({
      name,
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }))
    if (route.query !== undefined) {
      const query = schemaOf(route.query) as { properties?: Record<string, unknown>; required?: string[] }
      for (const [name, schema] of Object.entries(query.properties ?? {})) {
        parameters.push({
          name,
          in: 'query',
          required: query.required?.includes(name) ?? false,
          schema,
        } as never)
      }
    }
    for (const header of route.headers ?? []) {
      parameters.push({
        name: header.name,
        in: 'header',
        required: false,
        schema: { type: 'string' },
        description: header.description,
      } as never)
    }
    if (parameters.length > 0) {
      operation.parameters = parameters
    }
    if (route.requestBody !== undefined) {
      const schema = schemaOf(route.requestBody.schema)
      operation.requestBody = {
        required: true,
        content: Object.fromEntries(
          (route.requestBody.contentTypes ?? ['application/json']).map((type) => [type, { schema }]),
        ),
      }
    }
    if (route.security !== undefined) {
      // Every route that takes a bearer access token takes it as `Authorization: DPoP` with a proof.
      const schemes: readonly SecurityScheme[] =
        route.security.includes('bearerToken') && !route.security.includes('dpop')
          ? [...route.security, 'dpop']
          : route.security
      operation.security = schemes.map((name) => ({ [name]: [] }))
    }
    ;(operation.responses as JsonObject).default = {
      description: isOAuth ? 'OAuth error (RFC 6749 §5.2)' : 'Problem (RFC 9457)',
      content: isOAuth
        ? { 'application/json': { schema: { $ref: '#/components/schemas/OAuthError' } } }
        : { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    }
    paths[route.path] ??= {}
    const entry = paths[route.path]
    if (entry !== undefined) {
      entry[route.method] = operation
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Portcullis',
      version: '0.1.0',
      description: 'OAuth 2.1 authorization server, user accounts and API keys.',
    },
    servers: [{ url: issuer }],
    paths,
    components: {
      schemas: { Problem: PROBLEM_SCHEMA, OAuthError: OAUTH_ERROR_SCHEMA },
      securitySchemes: {
        adminToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'ADMIN_TOKEN or an access token with scope admin',
        },
        bearerToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        sessionCookie: {
          type: 'apiKey',
          in: 'cookie',
          // session-cookie.ts cookieName: __Host- prefixed with an https issuer.
          name: issuer.startsWith('https://') ? '__Host-portcullis_session' : 'portcullis_session',
        },
        clientBasic: { type: 'http', scheme: 'basic' },
        serviceKey: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'psk_live_… / psk_test_…',
          description:
            'A service key (issue 10) issued under /admin/service-keys or /tenants/{id}/service-keys',
        },
        dpop: {
          type: 'http',
          scheme: 'DPoP',
          bearerFormat: 'JWT',
          description:
            'RFC 9449: `Authorization: DPoP <access token>` with a `DPoP` header holding a fresh proof ' +
            '(typ dpop+jwt; htm, htu, iat, jti, ath = base64url SHA-256 of the token) signed by the key ' +
            'whose RFC 7638 thumbprint is the token’s cnf.jkt. A DPoP-bound token is refused as Bearer. ' +
            'When DPOP_NONCE_REQUIRED is set, a proof without the current nonce gets 401 use_dpop_nonce ' +
            'and a DPoP-Nonce header.',
        },
      },
    },
  }
}
