import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import type { BrowserContext } from './context'
import { clickThroughRedirect } from './redirect'

const REDIRECT_URI = 'https://app.example.com/callback'

/**
 * Issue 13: inside an OAuth authorization request, a signed-out visitor clicks "Continue with
 * GitHub" on /login, goes through the (fake, loopback) GitHub, comes back signed in to consent,
 * approves, and the client gets its code, which exchanges for tokens.
 */
export async function run({ baseUrl, browser, adminToken }: BrowserContext): Promise<void> {
  const created = await fetch(`${baseUrl}/admin/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Federated Browser App',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      scope: 'openid email',
    }),
  })
  assert.equal(created.status, 201, await created.clone().text())
  const client = (await created.json()) as { client_id: string; client_secret: string }
  const verifier = randomBytes(32).toString('base64url')
  const challenge = createHash('sha256').update(verifier).digest('base64url')
  const authorizeUrl = `${baseUrl}/oauth/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email',
    state: 'federated-state',
    code_challenge: challenge,
    code_challenge_method: 'S256',
  })}`

  const context = await browser.newContext()
  const page = await context.newPage()
  try {
    await page.goto(authorizeUrl)
    assert.equal(new URL(page.url()).pathname, '/login', `expected the login page, got ${page.url()}`)
    await Promise.all([
      page.waitForURL((url) => url.pathname === '/oauth/authorize'),
      page.getByText('Continue with GitHub').click(),
    ])
    assert.ok(await page.getByText('Federated Browser App').first().isVisible(), 'no consent page')
    const callback = await clickThroughRedirect(
      page,
      'button[name="decision"][value="approve"]',
      REDIRECT_URI,
    )
    assert.equal(callback.searchParams.get('state'), 'federated-state')
    const code = callback.searchParams.get('code')
    assert.ok(code)
    const token = await fetch(`${baseUrl}/oauth/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URI,
      }),
    })
    assert.equal(token.status, 200, await token.clone().text())
  } finally {
    await context.close()
  }
}
