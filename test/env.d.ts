import type { Bindings } from '../functions/env'

declare global {
  namespace Cloudflare {
    interface Env extends Bindings {
      DATABASE_URL: string
      DB_GATEWAY_URL: string
      TEST_REAL_POSTGRES: string
      MASTER_KEY: string
      ADMIN_TOKEN: string
    }
  }
}
