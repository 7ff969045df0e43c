import { html } from 'hono/html'
import { PAGE_HEADERS, renderPage } from './layout'

const TITLE = 'Temporarily unavailable'

/**
 * What a browser gets while the configuration is invalid: a readable page that names nothing
 * (no variable, no value); the operator finds the list in the log, /healthz or `npm run check`.
 */
export function configErrorPage(requestId: string | undefined): Response {
  const page = renderPage(
    TITLE,
    html`<h1>${TITLE}</h1>
      <p class="lead">This sign-in service is not configured correctly yet, so it cannot serve this page.</p>
      <p>Please try again later. If you run this service, <code>npm run check</code> lists what to fix.</p>
      ${requestId === undefined ? '' : html`<p class="muted">Reference: ${requestId}</p>`}`,
  )
  // Static content renders synchronously; a promise here would mean an async part crept in.
  const body = page instanceof Promise ? TITLE : String(page)
  return new Response(body, {
    status: 500,
    headers: { ...PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8' },
  })
}

/** A browser navigation (or form post) rather than an API call. */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /\btext\/html\b/.test(accept)
}
