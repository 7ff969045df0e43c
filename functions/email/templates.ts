import type { Brand } from '../brand'

export type EmailTemplate =
  | 'verify_email'
  | 'password_reset'
  | 'tenant_invitation'
  | 'email_change'
  | 'email_changed_notice'

export interface RenderedEmail {
  template: EmailTemplate
  subject: string
  text: string
  html: string
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
}

function describeDuration(seconds: number): string {
  if (seconds % 86_400 === 0) {
    const days = seconds / 86_400
    return days === 1 ? '24 hours' : `${days} days`
  }
  if (seconds % 3600 === 0) {
    const hours = seconds / 3600
    return hours === 1 ? '1 hour' : `${hours} hours`
  }
  const minutes = Math.max(1, Math.round(seconds / 60))
  return minutes === 1 ? '1 minute' : `${minutes} minutes`
}

function supportLine(brand: Brand): string {
  return brand.supportEmail === undefined ? '' : ` Questions? Write to ${brand.supportEmail}.`
}

function htmlBody(
  brand: Brand,
  heading: string,
  intro: string,
  link: string,
  action: string,
  footer: string,
): string {
  const safeLink = escapeHtml(link)
  // The accent colour is validated as #rgb/#rrggbb by the config, so it is safe in a style.
  const accent = brand.accentColor
  const mark =
    brand.logoUrl === undefined
      ? escapeHtml(brand.name)
      : `<img src="${escapeHtml(brand.logoUrl)}" alt="" height="28" style="vertical-align:middle;margin-right:8px">${escapeHtml(brand.name)}`
  return `<!doctype html><html><body style="margin:0;background:#f3f4f6;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111827">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center" style="padding:32px 12px">
<table role="presentation" width="480" cellpadding="0" cellspacing="0" style="background:#fff;border-radius:12px;padding:32px">
<tr><td style="font-weight:700;font-size:18px;padding-bottom:16px">${mark}</td></tr>
<tr><td><h1 style="font-size:20px;margin:0 0 12px">${escapeHtml(heading)}</h1>
<p style="margin:0 0 20px;line-height:1.5">${escapeHtml(intro)}</p>
<p style="margin:0 0 20px"><a href="${safeLink}" style="display:inline-block;background:${accent};color:#fff;text-decoration:none;padding:11px 18px;border-radius:8px;font-weight:600">${escapeHtml(action)}</a></p>
<p style="margin:0 0 8px;font-size:13px;color:#6b7280">Or paste this link into your browser:<br><span style="word-break:break-all">${safeLink}</span></p>
<p style="margin:16px 0 0;font-size:13px;color:#6b7280">${escapeHtml(footer + supportLine(brand))}</p></td></tr>
</table></td></tr></table></body></html>`
}

/** The message asking a new user to confirm their address; `link` carries the raw token. */
export function renderVerificationEmail(link: string, ttlSeconds: number, brand: Brand): RenderedEmail {
  const expires = `The link expires in ${describeDuration(ttlSeconds)}. If you did not create an account, ignore this message.`
  return {
    template: 'verify_email',
    subject: 'Confirm your email address',
    text: `Confirm your email address\n\nOpen this link to confirm the address for your ${brand.name} account:\n\n${link}\n\n${expires}${supportLine(brand)}\n`,
    html: htmlBody(
      brand,
      'Confirm your email address',
      `Confirm the address for your ${brand.name} account.`,
      link,
      'Confirm email address',
      expires,
    ),
  }
}

/** The password-reset message; `link` carries the raw token. */
export function renderPasswordResetEmail(link: string, ttlSeconds: number, brand: Brand): RenderedEmail {
  const expires = `The link expires in ${describeDuration(ttlSeconds)} and works once. If you did not ask for a reset, ignore this message: your password stays as it is.`
  return {
    template: 'password_reset',
    subject: 'Reset your password',
    text: `Reset your password\n\nSomeone (hopefully you) asked to reset the password of your ${brand.name} account. Open this link to choose a new one:\n\n${link}\n\n${expires}${supportLine(brand)}\n`,
    html: htmlBody(
      brand,
      'Reset your password',
      `Someone (hopefully you) asked to reset the password of your ${brand.name} account.`,
      link,
      'Choose a new password',
      expires,
    ),
  }
}

/** The invitation to join a tenant; `link` carries the raw token. */
export function renderInvitationEmail(
  tenantName: string,
  role: string,
  link: string,
  ttlSeconds: number,
  brand: Brand,
): RenderedEmail {
  const expires = `The invitation expires in ${describeDuration(ttlSeconds)} and works once, for the account with this address. If you did not expect it, ignore this message.`
  const intro = `You are invited to join ${tenantName} on ${brand.name} as ${role === 'admin' ? 'an' : 'a'} ${role}.`
  return {
    template: 'tenant_invitation',
    subject: `Join ${tenantName}`,
    text: `Join ${tenantName}\n\n${intro} Sign in with this address, then open this link:\n\n${link}\n\n${expires}${supportLine(brand)}\n`,
    html: htmlBody(brand, `Join ${tenantName}`, intro, link, 'Accept the invitation', expires),
  }
}

/** Sent to the new address of an email change; `link` carries the raw token. */
export function renderEmailChangeEmail(link: string, ttlSeconds: number, brand: Brand): RenderedEmail {
  const expires = `The link expires in ${describeDuration(ttlSeconds)} and works once. If you did not ask for this, ignore this message: nothing changes.`
  const intro = `Someone asked to use this address for their ${brand.name} account. It changes only when you confirm it.`
  return {
    template: 'email_change',
    subject: 'Confirm your new email address',
    text: `Confirm your new email address\n\n${intro} Open this link to confirm:\n\n${link}\n\n${expires}${supportLine(brand)}\n`,
    html: htmlBody(brand, 'Confirm your new email address', intro, link, 'Confirm new address', expires),
  }
}

/** Sent to the old address once the change is confirmed: no link, a warning and where to get help. */
export function renderEmailChangedNotice(newEmail: string, brand: Brand, issuer: string): RenderedEmail {
  const intro = `The email address of your ${brand.name} account was changed to ${newEmail}. From now on you sign in with that address.`
  const footer = 'If you did not make this change, reset your password and contact support at once.'
  return {
    template: 'email_changed_notice',
    subject: 'Your email address was changed',
    text: `Your email address was changed\n\n${intro}\n\n${footer}${supportLine(brand)}\n`,
    html: htmlBody(
      brand,
      'Your email address was changed',
      intro,
      `${issuer}/forgot-password`,
      'Reset your password',
      footer,
    ),
  }
}
