import type { Context } from 'hono'
import { html, raw } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'
import { type Brand, DEFAULT_BRAND } from '../brand'
import type { AppEnv } from '../env'

/** Headers on every HTML page: no framing (clickjacking), no caching of forms with CSRF tokens. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    // script-src and connect-src 'self': /passkeys.js (no inline script) and its same-origin fetches.
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}

const STYLE = `
  :root { color-scheme: light dark; --accent: #4f46e5; --muted: #6b7280; --border: #d1d5db; --danger: #b91c1c; }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f3f4f6;
         font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; }
  @media (prefers-color-scheme: dark) { body { background: #0b0f19; color: #e5e7eb; } .card { background: #111827 !important; } }
  .card { width: min(420px, 92vw); background: #fff; border-radius: 14px; padding: 32px;
          box-shadow: 0 10px 30px rgba(0,0,0,.08); }
  .brand { display: flex; align-items: center; gap: 10px; font-weight: 700; font-size: 18px; margin-bottom: 18px; }
  .brand svg { width: 28px; height: 28px; }
  h1 { font-size: 22px; margin: 0 0 6px; }
  p.lead { color: var(--muted); margin: 0 0 20px; }
  label { display: block; font-weight: 600; margin: 14px 0 6px; }
  input[type=email], input[type=password], input[type=text] { width: 100%; padding: 10px 12px; font: inherit;
         border: 1px solid var(--border); border-radius: 8px; background: transparent; color: inherit; }
  input:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
  .row { display: flex; gap: 10px; margin-top: 22px; }
  button { flex: 1; padding: 11px 14px; font: inherit; font-weight: 600; border-radius: 8px; cursor: pointer;
           border: 1px solid var(--accent); background: var(--accent); color: #fff; }
  button.secondary { background: transparent; color: inherit; border-color: var(--border); }
  .check { display: flex; align-items: center; gap: 8px; margin-top: 14px; font-weight: 400; }
  .error { background: #fef2f2; color: var(--danger); border: 1px solid #fecaca; padding: 10px 12px; border-radius: 8px; margin-bottom: 12px; }
  ul.scopes { padding-left: 20px; } .muted { color: var(--muted); font-size: 13px; }
  a { color: var(--accent); } .links { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 8px; margin-top: 18px; font-size: 14px; }
  .notice { background: #ecfdf5; color: #065f46; border: 1px solid #a7f3d0; padding: 10px 12px; border-radius: 8px; margin-bottom: 12px; }
  @media (prefers-color-scheme: dark) { a { color: inherit; } .error { background: #2a1215; border-color: #7f1d1d; color: #fca5a5; }
    .notice { background: #052e1f; border-color: #065f46; color: #a7f3d0; } }
  .brand img { height: 28px; width: auto; } footer.support { margin-top: 22px; text-align: center; }
  h2 { font-size: 16px; margin: 26px 0 8px; padding-top: 14px; border-top: 1px solid var(--border); }
  ul.items { list-style: none; padding: 0; margin: 0; } ul.items li { display: flex; justify-content: space-between; align-items: center;
    gap: 12px; padding: 10px 0; border-bottom: 1px solid var(--border); } ul.items li:last-child { border-bottom: 0; }
  ul.items form { flex: none; } button.small { padding: 6px 10px; font-size: 13px; }
  code.secret { display: block; margin-top: 8px; padding: 8px; word-break: break-all; background: rgba(0,0,0,.06); border-radius: 6px; }
  .badge { font-size: 12px; background: var(--accent); color: #fff; border-radius: 999px; padding: 1px 8px; margin-left: 6px; }
`

/** The built-in mark in the accent colour (validated as a hex colour), or the configured logo. */
function logo(brand: Brand) {
  if (brand.logoUrl !== undefined) {
    return html`<img src="${brand.logoUrl}" alt="" />`
  }
  return raw(
    `<svg viewBox="0 0 32 32" aria-hidden="true"><rect x="3" y="3" width="26" height="26" rx="6" fill="${brand.accentColor}"/><path d="M9 23V11h14v12M13 11v12M19 11v12M9 16h14" stroke="#fff" stroke-width="2" fill="none"/></svg>`,
  )
}

/** A complete page around `body`; every interpolation in callers goes through hono/html escaping. */
export function renderPage(
  title: string,
  body: HtmlEscapedString | Promise<HtmlEscapedString>,
  brand: Brand = DEFAULT_BRAND,
) {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="no-referrer" />
        <title>${title} · ${brand.name}</title>
        <style>
          ${raw(STYLE)}
          :root { --accent: ${raw(brand.accentColor)}; }
        </style>
      </head>
      <body>
        <main class="card">
          <div class="brand">${logo(brand)}<span>${brand.name}</span></div>
          ${body}
          ${
            brand.supportEmail === undefined
              ? ''
              : html`<footer class="support muted">Need help? <a href="mailto:${brand.supportEmail}">${brand.supportEmail}</a></footer>`
          }
        </main>
      </body>
    </html>`
}

/** Sends a page with the framing and caching protections every page needs. */
export async function sendPage(
  c: Context<AppEnv>,
  title: string,
  body: HtmlEscapedString | Promise<HtmlEscapedString>,
  status: 200 | 400 | 401 | 403 | 404 | 409 | 429 = 200,
): Promise<Response> {
  return c.html(await renderPage(title, body, c.var.config.brand), status, PAGE_HEADERS)
}
