import { eq } from 'drizzle-orm'
import { sessions, users } from '../../db/schema'
import { DEFAULT_TENANT_ID, type UserStatus } from '../../db/schema/constants'
import { sha256Hex } from '../../functions/crypto/hash'
import { hashPassword } from '../../functions/crypto/password'
import { randomToken } from '../../functions/crypto/random'
import { testDb, unique } from './db'
import { postJson } from './worker'

export const STRONG_PASSWORD = 'Correct-Horse-Battery-9'
/** Cheap argon2id parameters for seeded users (a login rehashes them to the configured ones). */
const FAST_PARAMS = { memoryKib: 64, iterations: 1, parallelism: 1 }

export interface SeededUser {
  id: string
  tenantId: string
  email: string
  password: string
  /** `portcullis_session=<token>` of a live session (empty without `session: true`). */
  cookie: string
  /** Request headers carrying that session cookie. */
  headers: Record<string, string>
}

export interface SeedUserOptions {
  status?: UserStatus
  verified?: boolean
  password?: string
  passwordHash?: string
  email?: string
  isAdmin?: boolean
  displayName?: string
  /** Also insert a live session (default false; the oauth and apikeys re-exports set it). */
  session?: boolean
}

export function uniqueEmail(): string {
  return `${unique('user')}@example.test`
}

/**
 * The suite's one seedUser: a user row written directly (no email, no audit, independent of
 * the accounts endpoints) with a known password, and a live session when asked.
 * test/helpers/oauth.ts and apikeys.ts re-export it.
 */
export async function seedUser(options: SeedUserOptions = {}): Promise<SeededUser> {
  const db = testDb()
  const email = options.email ?? uniqueEmail()
  const password = options.password ?? STRONG_PASSWORD
  const [row] = await db
    .insert(users)
    .values({
      tenantId: DEFAULT_TENANT_ID,
      email,
      passwordHash: options.passwordHash ?? hashPassword(password, FAST_PARAMS),
      status: options.status ?? 'active',
      isAdmin: options.isAdmin ?? false,
      displayName: options.displayName,
      emailVerifiedAt: options.verified === false ? null : new Date(),
    })
    .returning({ id: users.id, tenantId: users.tenantId })
  if (row === undefined) {
    throw new Error('seedUser: no row')
  }
  let cookie = ''
  if (options.session === true) {
    const token = randomToken(32)
    await db.insert(sessions).values({
      tokenHash: await sha256Hex(token),
      userId: row.id,
      expiresAt: new Date(Date.now() + 3_600_000),
    })
    cookie = `portcullis_session=${token}`
  }
  return { id: row.id, tenantId: row.tenantId, email, password, cookie, headers: cookie ? { cookie } : {} }
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
