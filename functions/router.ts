import type { Result, Router } from 'hono/router'
import { TrieRouter } from 'hono/router/trie-router'

// The methods a request can arrive with that the app routes (HEAD is matched as GET by Hono).
// Any other method string is matched without the cache, so a client cannot grow it.
const CACHED_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/**
 * Hono's TrieRouter with the answer for each static route path kept per isolate.
 *
 * Our route table has static paths beside parameters at the same depth (`/api-keys/verify` and
 * `/api-keys/:id`), which RegExpRouter refuses; Hono's default SmartRouter then builds and throws
 * away a RegExpRouter on the first request and falls back to the trie, which walks its nodes and
 * builds the handler list again on every request: about a tenth of the Worker's CPU on an API-key
 * verify. The hot paths (verify, token, introspection, userinfo) are static, and a match depends
 * on nothing but the method and the path, so the trie's answer for them is computed once.
 *
 * Only paths registered without parameters or wildcards are kept, for the methods above: the
 * cache is bounded by the route table, whatever paths and methods clients send. Hono only reads
 * a match result, so one result can serve every request for its path.
 */
export class StaticPathCachingRouter<T> implements Router<T> {
  readonly name = 'StaticPathCachingRouter'
  readonly #trie = new TrieRouter<T>()
  readonly #staticPaths = new Set<string>()
  readonly #cache = new Map<string, Map<string, Result<T>>>()

  add(method: string, path: string, handler: T): void {
    this.#trie.add(method, path, handler)
    if (!path.includes(':') && !path.includes('*') && !path.includes('?')) {
      this.#staticPaths.add(path)
    }
    // A route added later can change any path's answer.
    this.#cache.clear()
  }

  /** How many method and path pairs the cache holds (bounded by the route table). */
  get cachedPaths(): number {
    let count = 0
    for (const byPath of this.#cache.values()) {
      count += byPath.size
    }
    return count
  }

  match(method: string, path: string): Result<T> {
    if (!this.#staticPaths.has(path) || !CACHED_METHODS.has(method)) {
      return this.#trie.match(method, path)
    }
    let byPath = this.#cache.get(method)
    if (byPath === undefined) {
      byPath = new Map()
      this.#cache.set(method, byPath)
    }
    let result = byPath.get(path)
    if (result === undefined) {
      result = this.#trie.match(method, path)
      byPath.set(path, result)
    }
    return result
  }
}
