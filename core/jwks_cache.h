/* JWKS key sets fetched from URLs, one fetch per URL for the whole gateway
 * (every worker's Lua state shares it): tinysse.jwks("https://...") in a
 * script registers the URL; the set is fetched at once, every `refresh`
 * seconds, and early (at most once per JWKS_KID_MISS_INTERVAL) when a token
 * names a kid the set lacks (within a second). A failed fetch keeps the
 * last good set (logged, counted). Fetches run on one loop (worker 0's, the
 * thread that calls jwks_cache_start) with their own HTTP client; any
 * thread may ask for the newest set (a lock, no libevent call). */
#ifndef TINYSSE_JWKS_CACHE_H
#define TINYSSE_JWKS_CACHE_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct config;
struct jose_keyset;
struct jwks_cache;

#define JWKS_KID_MISS_INTERVAL 10.0 /* seconds between early refetches of one URL */
#define JWKS_MAX_URLS 64

struct jwks_cache *jwks_cache_new(void);
/* Starts fetching on base, from the thread that will run it (what was
 * asked before is fetched now). 0, or -1
 * with err (a --callout-ca-file that cannot be read). */
int jwks_cache_start(struct jwks_cache *jc, struct event_base *base, const struct config *cfg,
                     char *err, size_t errlen);
/* Stops fetching (before base goes) and frees. NULL is fine. */
void jwks_cache_free(struct jwks_cache *jc);
/* A new reference to url's newest set, NULL when none was fetched yet (or
 * url is not http(s)://, or too many URLs). Registers url on first use;
 * kid_missing asks for an early refetch. Any thread. */
struct jose_keyset *jwks_cache_get(struct jwks_cache *jc, const char *url, double refresh,
                                   int kid_missing);
/* tinysse_jwks_fetches_total{result} and tinysse_jwks_keys{url}. */
void jwks_cache_metrics(struct jwks_cache *jc, struct evbuffer *out);

#endif
