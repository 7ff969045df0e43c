import { scheduled } from '../scheduled'
import { createApp } from './app'
import type { Bindings } from './env'

const app = createApp()

// Default export: the Workers runtime looks for `fetch` and `scheduled` on the module's default.
export default {
  fetch: app.fetch,
  scheduled,
} satisfies ExportedHandler<Bindings>
