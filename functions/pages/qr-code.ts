import { encodeQR } from '@paulmillr/qr'
import { raw } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'

/** ISO/IEC 18004 §6.3.8: four modules of light margin around the symbol. */
export const QR_QUIET_ZONE_MODULES = 4

/**
 * `text` as a QR code in inline SVG, drawn on the server (no external service, no script): one
 * path of unit squares, dark on a light square in both colour schemes (scanners need the
 * contrast). Error correction `medium` (15%) keeps an otpauth URI at version 6-8. The text only
 * ever appears as module geometry and in `aria-label` (escaped), never as markup.
 */
export function qrCodeSvg(text: string, label: string): HtmlEscapedString {
  const modules = encodeQR(text, 'raw', { ecc: 'medium', border: 0 })
  const size = modules.length + 2 * QR_QUIET_ZONE_MODULES
  let path = ''
  modules.forEach((row, y) => {
    row.forEach((dark, x) => {
      if (dark) {
        path += `M${x + QR_QUIET_ZONE_MODULES} ${y + QR_QUIET_ZONE_MODULES}h1v1h-1z`
      }
    })
  })
  const escapedLabel = label.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)
  return raw(
    `<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" role="img" aria-label="${escapedLabel}" shape-rendering="crispEdges" data-modules="${modules.length}"><rect width="${size}" height="${size}" fill="#fff"/><path fill="#000" d="${path}"/></svg>`,
  )
}
