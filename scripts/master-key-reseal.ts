// `npm run master-key:reseal`: after MASTER_KEY="k2:…,k1:…" is deployed, calls
// POST /admin/master-key/reseal on the running service until no row is left under an older key,
// so k1 can leave MASTER_KEY without waiting for the cron. The master key never leaves the
// Worker: this needs only the service's URL and ADMIN_TOKEN.
//   ISSUER=https://auth.example.com ADMIN_TOKEN=… npm run master-key:reseal [-- --limit 500]
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { limit: { type: 'string', default: '500' } }, strict: true })
const issuer = process.env.ISSUER?.replace(/\/+$/, '')
const token = process.env.ADMIN_TOKEN
if (issuer === undefined || issuer === '' || token === undefined || token === '') {
  console.error('usage: ISSUER=https://… ADMIN_TOKEN=… npm run master-key:reseal [-- --limit N]')
  process.exit(2)
}

interface Report {
  resealed: Record<string, number>
  remaining: Record<string, number>
  unreadable: Record<string, number>
  done: boolean
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)

for (let pass = 1; ; pass++) {
  const res = await fetch(`${issuer}/admin/master-key/reseal?limit=${encodeURIComponent(values.limit)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  })
  if (!res.ok) {
    console.error(`pass ${pass}: ${res.status} ${await res.text()}`)
    process.exit(1)
  }
  const report = (await res.json()) as Report
  console.log(
    `pass ${pass}: resealed ${JSON.stringify(report.resealed)}, remaining ${JSON.stringify(report.remaining)}`,
  )
  if (sum(report.unreadable) > 0) {
    console.warn(`rows under a key MASTER_KEY no longer lists: ${JSON.stringify(report.unreadable)}`)
  }
  if (report.done) {
    console.log('done: no value is sealed under an older key; the older keys may leave MASTER_KEY')
    break
  }
  if (sum(report.resealed) === 0) {
    console.error('no progress: some values do not open (see the service log, master_key_reseal_unopenable)')
    process.exit(1)
  }
}
