import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { addAllowlistEntry, listAllowlist, removeAllowlistEntry } from '../../db/queries/federation'
import { ALLOWLIST_KINDS, type AllowlistKind } from '../../db/schema/federation'
import { isUuid } from '../../db/uuid'
import type { AppEnv } from '../env'
import { invalidField, ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { jsonBody } from '../validation/json-body'
import { foldAllowlistValue } from './allowlist'

const NO_STORE = { 'cache-control': 'no-store' }

const AddEntryBody = v.object({
  kind: v.picklist(ALLOWLIST_KINDS),
  value: v.pipe(v.string(), v.minLength(1), v.maxLength(254)),
})

const EntrySchema = v.object({
  id: v.string(),
  kind: v.picklist(ALLOWLIST_KINDS),
  value: v.string(),
  created_at: v.string(),
})

function entryJson(row: { id: string; kind: AllowlistKind; value: string; createdAt: Date }) {
  return { id: row.id, kind: row.kind, value: row.value, created_at: row.createdAt.toISOString() }
}

function actor(c: Context<AppEnv>): string {
  return c.var.principal.kind === 'user' ? `user:${c.var.principal.userId}` : 'admin'
}

documentRoute({
  method: 'get',
  path: '/admin/identity-allowlist',
  summary: 'Who may sign up through a provider when FEDERATION_ALLOWLIST is on',
  tags: ['admin'],
  security: ['adminToken'],
  responses: {
    200: { description: '{ entries: [...] }', schema: v.object({ entries: v.array(EntrySchema) }) },
  },
})
documentRoute({
  method: 'post',
  path: '/admin/identity-allowlist',
  summary: 'Add an entry: github_id, github_login, github_org, email or email_domain (audited)',
  tags: ['admin'],
  security: ['adminToken'],
  requestBody: { schema: AddEntryBody },
  responses: {
    201: { description: 'Added', schema: EntrySchema },
    400: { description: 'The value cannot be of that kind' },
    409: { description: 'Already listed' },
  },
})
documentRoute({
  method: 'delete',
  path: '/admin/identity-allowlist/{id}',
  summary: 'Remove an entry (audited); accounts already created keep their status',
  tags: ['admin'],
  security: ['adminToken'],
  responses: { 204: { description: 'Removed' }, 404: { description: 'No such entry' } },
})

/** `/admin/identity-allowlist`: entries that let a federated sign-up in without approval. */
export const allowlistAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .get('/', async (c) => {
    const rows = await listAllowlist(c.var.db.http)
    return c.json({ entries: rows.map(entryJson) }, 200, NO_STORE)
  })
  .post('/', jsonBody(AddEntryBody), async (c) => {
    const body = c.req.valid('json')
    const value = foldAllowlistValue(body.kind, body.value)
    if (value === undefined) {
      throw invalidField('value', `is not a valid ${body.kind}`)
    }
    const row = await addAllowlistEntry(
      c.var.db.http,
      { kind: body.kind, value, now: new Date() },
      { actor: actor(c), ip: clientIp(c) },
    )
    if (row === undefined) {
      throw new ProblemError('conflict', { detail: `${body.kind} ${value} is already listed` })
    }
    return c.json(entryJson(row), 201, NO_STORE)
  })
  .delete('/:id', async (c) => {
    const id = c.req.param('id')
    const row = isUuid(id)
      ? await removeAllowlistEntry(c.var.db.http, id, { actor: actor(c), ip: clientIp(c) })
      : undefined
    if (row === undefined) {
      throw new ProblemError('not_found', { detail: 'No such allowlist entry' })
    }
    return c.body(null, 204, NO_STORE)
  })
