import type { Hono } from 'hono'
import { TrieRouter } from 'hono/router/trie-router'

/**
 * For a path that no route of this method matches: the methods that do match it, for a 405
 * with `Allow` (RFC 9110 §15.5.6). Built once from the app's route table.
 */
export function allowedMethodsFinder(app: Hono<never>): (path: string) => string[] {
  let router: TrieRouter<string> | undefined
  let methods: string[] = []
  return (path) => {
    if (router === undefined) {
      router = new TrieRouter<string>()
      const seen = new Set<string>()
      for (const route of app.routes) {
        if (route.method !== 'ALL') {
          router.add(route.method, route.path, route.method)
          seen.add(route.method)
        }
      }
      methods = [...seen]
    }
    const found = router
    const allowed = methods.filter((method) => found.match(method, path)[0].length > 0)
    if (allowed.includes('GET') && !allowed.includes('HEAD')) {
      allowed.push('HEAD')
    }
    return allowed
  }
}
