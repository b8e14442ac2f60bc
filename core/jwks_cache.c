/* Shared JWKS key sets (see jwks_cache.h). */
#include "jwks_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc.h"
#include "config.h"
#include "httpc.h"
#include "jose.h"
#include "log.h"

#define JWKS_MIN_REFRESH 1.0      /* seconds: a shorter refresh is raised to this */
#define JWKS_DEFAULT_REFRESH 300.0
#define JWKS_RETRY 5.0            /* seconds before retrying a URL with no set yet */
#define JWKS_TIMEOUT 10.0

struct entry {
  char *url;
  double refresh;
  struct jose_keyset *set;  /* the last good one */
  double fetched, due;      /* monotonic: last success; next fetch */
  double last_miss;         /* the last early refetch for an unknown kid */
  int fetching;
  struct httpc_call *call;
  struct jwks_cache *jc;
};

struct jwks_cache {
  pthread_mutex_t lock;
  struct entry e[JWKS_MAX_URLS];
  size_t n;
  unsigned long ok, failed;
  /* the fetching loop's (from jwks_cache_start) */
  struct httpc *http;
  struct event *wake, *tick;
};

static double mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct jwks_cache *jwks_cache_new(void)
{
  struct jwks_cache *jc = xcalloc(1, sizeof(*jc));
  pthread_mutex_init(&jc->lock, NULL);
  return jc;
}

/* url without credentials or query, for logs and metrics */
static const char *public_url(const char *url, char *out, size_t cap)
{
  const char *host = strstr(url, "://");
  host = host ? host + 3 : url;
  const char *at = strchr(host, '@'), *slash = strchr(host, '/');
  size_t scheme = (size_t)(host - url);
  if (at && (!slash || at < slash))
    host = at + 1;
  snprintf(out, cap, "%.*s%.*s", (int)scheme, url, (int)strcspn(host, "?#"), host);
  return out;
}

static void fetched(void *arg, const struct httpc_result *r)
{
  struct entry *e = arg;
  struct jwks_cache *jc = e->jc;
  char err[256] = "", q[600], q2[600], pub[512];
  struct jose_keyset *set = NULL;
  if (r->error)
    snprintf(err, sizeof(err), "%s: %s", r->error, r->detail);
  else if (r->status != 200)
    snprintf(err, sizeof(err), "HTTP status %d", r->status);
  else
    set = jose_keyset_parse(r->body, r->body_len, err, sizeof(err));
  double now = mono();
  pthread_mutex_lock(&jc->lock);
  e->fetching = 0;
  e->call = NULL;
  struct jose_keyset *old = NULL;
  if (set) {
    old = e->set;
    e->set = set;
    e->fetched = now;
    e->due = now + e->refresh;
    jc->ok++;
  } else {
    /* the last good set stays; no set yet: try again soon */
    e->due = now + (e->set ? e->refresh : JWKS_RETRY);
    jc->failed++;
  }
  size_t keys = set ? jose_keyset_count(set) : 0;
  pthread_mutex_unlock(&jc->lock);
  jose_keyset_unref(old);
  public_url(e->url, pub, sizeof(pub));
  if (set)
    log_event(LOG_INFO, "jwks_fetched", "url=%s keys=%zu", log_quote(q, sizeof(q), pub), keys);
  else
    log_event(LOG_WARN, "jwks_fetch_failed", "url=%s error=%s kept=%s",
              log_quote(q, sizeof(q), pub), log_quote(q2, sizeof(q2), err),
              e->set ? "last_good" : "none");
}

/* Starts the fetches that are due (on the fetching loop). */
static void fetch_due(struct jwks_cache *jc)
{
  double now = mono();
  pthread_mutex_lock(&jc->lock);
  for (size_t i = 0; i < jc->n; i++) {
    struct entry *e = &jc->e[i];
    if (e->fetching || e->due > now + 0.05) /* ticks come a second apart */
      continue;
    e->fetching = 1;
    const struct httpc_header accept[] = {{"Accept", "application/json"}};
    e->call = httpc_request(jc->http, "GET", e->url, accept, 1, NULL, 0, JWKS_TIMEOUT, fetched, e);
  }
  pthread_mutex_unlock(&jc->lock);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  fetch_due(arg);
}

int jwks_cache_start(struct jwks_cache *jc, struct event_base *base, const struct config *cfg,
                     char *err, size_t errlen)
{
  struct httpc_opts o = {.max_inflight = 4, .max_queue = JWKS_MAX_URLS, .max_body = 1 << 20,
                         .max_idle_per_host = 1, .idle_timeout = 30,
                         .ca_file = cfg->callout_ca_file};
  if (!(jc->http = httpc_new(base, &o, err, errlen)))
    return -1;
  jc->wake = event_new(base, -1, 0, on_wake, jc);
  jc->tick = event_new(base, -1, EV_PERSIST, on_wake, jc);
  if (!jc->wake || !jc->tick)
    alloc_failed(0);
  struct timeval one = {1, 0};
  event_add(jc->tick, &one);
  event_active(jc->wake, 0, 0); /* what the scripts named so far, at once (this thread runs base) */
  return 0;
}

void jwks_cache_free(struct jwks_cache *jc)
{
  if (!jc)
    return;
  if (jc->tick)
    event_free(jc->tick);
  if (jc->wake)
    event_free(jc->wake);
  for (size_t i = 0; i < jc->n; i++)
    if (jc->e[i].call)
      httpc_cancel(jc->e[i].call);
  httpc_free(jc->http);
  for (size_t i = 0; i < jc->n; i++) {
    jose_keyset_unref(jc->e[i].set);
    free(jc->e[i].url);
  }
  pthread_mutex_destroy(&jc->lock);
  free(jc);
}

struct jose_keyset *jwks_cache_get(struct jwks_cache *jc, const char *url, double refresh,
                                   int kid_missing)
{
  if (!jc || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
    return NULL;
  if (!(refresh > 0))
    refresh = JWKS_DEFAULT_REFRESH;
  if (refresh < JWKS_MIN_REFRESH)
    refresh = JWKS_MIN_REFRESH;
  struct jose_keyset *set = NULL;
  double now = mono();
  /* Only the lock is shared with the fetching loop: what is due is started
   * by its next tick (within a second), never from this thread. */
  pthread_mutex_lock(&jc->lock);
  struct entry *e = NULL;
  for (size_t i = 0; i < jc->n && !e; i++)
    if (strcmp(jc->e[i].url, url) == 0)
      e = &jc->e[i];
  if (!e && jc->n < JWKS_MAX_URLS) {
    e = &jc->e[jc->n++];
    *e = (struct entry){.url = xstrdup(url), .refresh = refresh, .due = 0, .jc = jc};
  }
  if (e) {
    if (refresh < e->refresh) /* two scripts, two refreshes: the shorter */
      e->refresh = refresh;
    if (kid_missing && !e->fetching && now - e->last_miss >= JWKS_KID_MISS_INTERVAL) {
      e->last_miss = now;
      e->due = now;
    }
    if (e->set)
      set = jose_keyset_ref(e->set);
  }
  pthread_mutex_unlock(&jc->lock);
  return set;
}

void jwks_cache_metrics(struct jwks_cache *jc, struct evbuffer *out)
{
  if (!jc)
    return;
  pthread_mutex_lock(&jc->lock);
  evbuffer_add_printf(out,
                      "# HELP tinysse_jwks_fetches_total JWKS fetches from tinysse.jwks URLs.\n"
                      "# TYPE tinysse_jwks_fetches_total counter\n"
                      "tinysse_jwks_fetches_total{result=\"ok\"} %lu\n"
                      "tinysse_jwks_fetches_total{result=\"error\"} %lu\n",
                      jc->ok, jc->failed);
  evbuffer_add_printf(out, "# HELP tinysse_jwks_keys Keys in the last good set of each JWKS URL "
                           "(0: none fetched yet).\n# TYPE tinysse_jwks_keys gauge\n");
  for (size_t i = 0; i < jc->n; i++) {
    char esc[512], pub[256];
    size_t k = 0;
    for (const char *p = public_url(jc->e[i].url, pub, sizeof(pub)); *p && k + 2 < sizeof(esc); p++) {
      if (*p == '"' || *p == '\\')
        esc[k++] = '\\';
      esc[k++] = *p == '\n' ? ' ' : *p;
    }
    esc[k] = 0;
    evbuffer_add_printf(out, "tinysse_jwks_keys{url=\"%s\"} %zu\n", esc,
                        jc->e[i].set ? jose_keyset_count(jc->e[i].set) : 0);
  }
  pthread_mutex_unlock(&jc->lock);
}
