import type { Context } from 'hono'
import { html } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'
import { listLoginProviders } from '../../db/queries/identity-providers'
import type { AppEnv } from '../env'

const TENANT_SLUG = /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/

/**
 * The tenant whose own providers /login also shows: `?tenant=<slug>` (a tenant links its users to
 * `/login?tenant=acme`). Anything that is not a slug is ignored.
 */
export function loginTenant(c: Context<AppEnv>): string | undefined {
  const slug = c.req.query('tenant')
  return slug !== undefined && TENANT_SLUG.test(slug) ? slug : undefined
}

/**
 * One "Continue with …" link per enabled provider (issue 13), carrying return_to through the flow:
 * the deployment's (GITHUB_*, OIDC_PROVIDERS), the platform's database providers, and those of
 * the tenant named by `?tenant=` (one round trip). Empty when there is none.
 */
export async function providerButtons(
  c: Context<AppEnv>,
  returnTo: string,
): Promise<HtmlEscapedString | Promise<HtmlEscapedString> | ''> {
  const stored = await listLoginProviders(c.var.db.http, loginTenant(c))
  const providers = [
    ...c.var.config.federation.providers.map((p) => ({ id: p.id, name: p.name })),
    ...stored.map((p) => ({ id: p.slug, name: p.name })),
  ]
  if (providers.length === 0) {
    return ''
  }
  return html`<style>
      .federated { display: grid; gap: 8px; margin-top: 18px; }
      a.provider { display: block; text-align: center; padding: 10px 14px; border: 1px solid var(--border);
        border-radius: 8px; color: inherit; text-decoration: none; font-weight: 600; }
    </style>
    <div class="federated">
    ${providers.map(
      (p) =>
        html`<a class="provider" href="/federated/${p.id}/start?return_to=${encodeURIComponent(returnTo)}">Continue with ${p.name}</a>`,
    )}
  </div>`
}
