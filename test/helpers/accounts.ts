import { eq } from 'drizzle-orm'
import { users } from '../../db/schema'
import { DEFAULT_TENANT_ID, type UserStatus } from '../../db/schema/constants'
import { hashPassword } from '../../functions/crypto/password'
import { testDb, unique } from './db'
import { postJson } from './worker'

export const STRONG_PASSWORD = 'Correct-Horse-Battery-9'
/** Cheap argon2id parameters for seeded users (a login rehashes them to the configured ones). */
const FAST_PARAMS = { memoryKib: 64, iterations: 1, parallelism: 1 }

export interface SeededUser {
  id: string
  email: string
  password: string
}

export function uniqueEmail(): string {
  return `${unique('user')}@example.test`
}

/** Inserts a user directly (no email, no audit). */
export async function seedUser(
  options: {
    status?: UserStatus
    verified?: boolean
    password?: string
    passwordHash?: string
    email?: string
  } = {},
): Promise<SeededUser> {
  const email = options.email ?? uniqueEmail()
  const password = options.password ?? STRONG_PASSWORD
  const [row] = await testDb()
    .insert(users)
    .values({
      tenantId: DEFAULT_TENANT_ID,
      email,
      passwordHash: options.passwordHash ?? hashPassword(password, FAST_PARAMS),
      status: options.status ?? 'active',
      emailVerifiedAt: options.verified === false ? null : new Date(),
    })
    .returning({ id: users.id })
  if (row === undefined) {
    throw new Error('seedUser: no row')
  }
  return { id: row.id, email, password }
}

export async function userRow(id: string) {
  const [row] = await testDb().select().from(users).where(eq(users.id, id))
  return row
}

/** The `portcullis_session` value from a response's Set-Cookie, or undefined. */
export function sessionCookieOf(res: Response): string | undefined {
  for (const cookie of res.headers.getSetCookie()) {
    const match = /^portcullis_session=([^;]*)/.exec(cookie)
    if (match !== null) {
      return match[1]
    }
  }
  return undefined
}

/** Signs in through the API; the `cookie` header value for later calls. */
export async function signIn(
  user: SeededUser,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  const res = await postJson('/auth/login', { email: user.email, password: user.password, ...extra }, headers)
  const token = sessionCookieOf(res)
  if (res.status !== 200 || token === undefined) {
    throw new Error(`signIn failed: ${res.status} ${await res.text()}`)
  }
  return `portcullis_session=${token}`
}
