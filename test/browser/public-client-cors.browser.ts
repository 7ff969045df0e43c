import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BrowserContext } from './context'

/**
 * Issue 11: a public client running in a page on another loopback origin (127.0.0.1:<port>,
 * while Portcullis is localhost:<port>) registers itself, sends the user through code + PKCE
 * and exchanges the code, all by fetch from the page: only CORS lets it read those answers.
 * The page's own script is the client; the test plays the user (sign-in, consent).
 */
const CLIENT_PAGE = (issuer: string) => `<!doctype html>
<meta charset="utf-8"><title>SPA client</title>
<pre id="result">working</pre>
<script type="module">
const issuer = ${JSON.stringify(issuer)}
const show = (value) => { document.getElementById('result').textContent = JSON.stringify(value) }
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '')
const redirectUri = location.origin + '/callback'
try {
  if (location.pathname === '/') {
    const registered = await fetch(issuer + '/oauth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Browser SPA',
        redirect_uris: [redirectUri],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        scope: 'openid email',
      }),
    })
    if (registered.status !== 201) throw new Error('register: ' + registered.status + ' ' + await registered.text())
    const client = await registered.json()
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)))
    const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)))
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)))
    sessionStorage.setItem('pkce', JSON.stringify({ verifier, state, clientId: client.client_id }))
    location.assign(issuer + '/oauth/authorize?' + new URLSearchParams({
      response_type: 'code', client_id: client.client_id, redirect_uri: redirectUri, scope: 'openid email',
      state, code_challenge: challenge, code_challenge_method: 'S256',
    }))
  } else {
    const saved = JSON.parse(sessionStorage.getItem('pkce'))
    const params = new URLSearchParams(location.search)
    if (params.get('state') !== saved.state) throw new Error('state mismatch')
    const token = await fetch(issuer + '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: params.get('code'), code_verifier: saved.verifier,
        redirect_uri: redirectUri, client_id: saved.clientId,
      }),
    })
    const tokens = await token.json()
    if (token.status !== 200) throw new Error('token: ' + token.status + ' ' + JSON.stringify(tokens))
    const userinfo = await fetch(issuer + '/oauth/userinfo', { headers: { authorization: 'Bearer ' + tokens.access_token } })
    show({ ok: true, tokenType: tokens.token_type, idToken: Boolean(tokens.id_token), userinfo: await userinfo.json() })
  }
} catch (error) {
  show({ ok: false, error: String(error) })
}
</script>`

function serveClient(issuer: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://client').pathname
    if (path !== '/' && path !== '/callback') {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(CLIENT_PAGE(issuer))
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
    })
  })
}

export async function run({ baseUrl, browser }: BrowserContext): Promise<void> {
  const issuer = baseUrl.replace(/\/+$/, '')
  const email = `spa-${randomBytes(6).toString('hex')}@example.com`
  const password = `Spa-Passphrase-${randomBytes(8).toString('hex')}`
  const registered = await fetch(`${issuer}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, display_name: 'SPA User' }),
  })
  assert.ok(registered.status < 300, `sign-up: ${registered.status} ${await registered.text()}`)
  const { server, origin } = await serveClient(issuer)
  assert.notEqual(new URL(origin).origin, new URL(issuer).origin)
  const context = await browser.newContext()
  const page = await context.newPage()
  const corsAnswers: { url: string; allowOrigin: string | null; credentials: string | null }[] = []
  page.on('response', (response) => {
    const url = new URL(response.url())
    if (
      url.origin === issuer &&
      ['/oauth/register', '/oauth/token', '/oauth/userinfo'].includes(url.pathname)
    ) {
      corsAnswers.push({
        url: `${response.request().method()} ${url.pathname}`,
        allowOrigin: response.headers()['access-control-allow-origin'] ?? null,
        credentials: response.headers()['access-control-allow-credentials'] ?? null,
      })
    }
  })
  try {
    await page.goto(`${origin}/`)
    await page.waitForURL((url) => url.origin === issuer && url.pathname === '/login')
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await Promise.all([
      page.waitForURL((url) => url.pathname === '/oauth/authorize'),
      page.locator('form button[type="submit"], form input[type="submit"]').first().click(),
    ])
    assert.ok(await page.getByText('Browser SPA').first().isVisible(), 'consent names the client')
    await Promise.all([
      page.waitForURL((url) => url.origin === origin && url.pathname === '/callback'),
      page.locator('button[name="decision"][value="approve"]').click(),
    ])
    await page.locator('#result', { hasNotText: 'working' }).waitFor()
    const result = JSON.parse((await page.locator('#result').textContent()) ?? '{}') as {
      ok: boolean
      error?: string
      tokenType?: string
      idToken?: boolean
      userinfo?: { sub?: string; email?: string }
    }
    assert.equal(result.ok, true, `the page's client failed: ${result.error}`)
    assert.equal(result.tokenType, 'Bearer')
    assert.equal(result.idToken, true)
    assert.equal(result.userinfo?.email, email)
    // Every answer the page read carried CORS headers for any origin, never credentials.
    for (const path of ['POST /oauth/register', 'POST /oauth/token', 'GET /oauth/userinfo']) {
      const answer = corsAnswers.find((a) => a.url === path)
      assert.ok(answer, `the page made no ${path} (saw ${JSON.stringify(corsAnswers)})`)
      assert.ok(answer.allowOrigin === '*' || answer.allowOrigin === origin, `${path}: ${answer.allowOrigin}`)
      assert.equal(answer.credentials, null, `${path} allows credentials`)
    }
  } finally {
    await context.close()
    server.close()
  }
}
