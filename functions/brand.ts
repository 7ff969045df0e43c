/** What pages and mail call the product (issue 14): BRAND_* settings. */
export interface Brand {
  /** BRAND_NAME, e.g. "Acme Accounts"; default "Portcullis". */
  name: string
  /** BRAND_LOGO_URL: an https (or loopback http) image shown instead of the built-in mark. */
  logoUrl: string | undefined
  /** BRAND_ACCENT_COLOR: `#rgb` or `#rrggbb`, lower-cased; buttons, links, the mark. */
  accentColor: string
  /** BRAND_SUPPORT_EMAIL: shown on pages and in mail footers when set. */
  supportEmail: string | undefined
}

export const DEFAULT_BRAND: Brand = {
  name: 'Portcullis',
  logoUrl: undefined,
  accentColor: '#4f46e5',
  supportEmail: undefined,
}

const BRAND_NAME_MAX_LENGTH = 60
const HEX_COLOR = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/
// A deliberately plain address check: the value is shown, not delivered to by this code.
const SUPPORT_EMAIL = /^[^\s@<>"'&]+@[^\s@<>"'&]+\.[^\s@<>"'&]+$/

/**
 * Reads BRAND_*; every problem is reported (a bad value falls back to the default). The values
 * end up in HTML and CSS, so the colour is a strict hex colour and the name has no control
 * characters; HTML escaping does the rest.
 */
export function parseBrand(
  value: (name: string) => string | undefined,
  problem: (variable: string, reason: string) => void,
): Brand {
  const brand: Brand = { ...DEFAULT_BRAND }
  const name = value('BRAND_NAME')
  if (name !== undefined) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    if (name.length > BRAND_NAME_MAX_LENGTH || /[\u0000-\u001f\u007f]/.test(name)) {
      problem('BRAND_NAME', `must be at most ${BRAND_NAME_MAX_LENGTH} printable characters`)
    } else {
      brand.name = name
    }
  }
  const logo = value('BRAND_LOGO_URL')
  if (logo !== undefined) {
    const url = URL.canParse(logo) ? new URL(logo) : undefined
    const loopback = url !== undefined && /^(localhost|127\.0\.0\.1|\[::1\])$/.test(url.hostname)
    if (url === undefined || !(url.protocol === 'https:' || (url.protocol === 'http:' && loopback))) {
      problem('BRAND_LOGO_URL', 'must be an https URL')
    } else {
      brand.logoUrl = url.href
    }
  }
  const accent = value('BRAND_ACCENT_COLOR')?.toLowerCase()
  if (accent !== undefined) {
    if (!HEX_COLOR.test(accent)) {
      problem('BRAND_ACCENT_COLOR', 'must be a hex colour like #4f46e5')
    } else {
      brand.accentColor = accent
    }
  }
  const support = value('BRAND_SUPPORT_EMAIL')
  if (support !== undefined) {
    if (support.length > 254 || !SUPPORT_EMAIL.test(support)) {
      problem('BRAND_SUPPORT_EMAIL', 'must be an email address')
    } else {
      brand.supportEmail = support
    }
  }
  return brand
}
