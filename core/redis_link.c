/* One reconnecting connection to Redis on an event loop (hiredis' async
 * API): AUTH and SELECT from the URL, backoff with jitter between
 * attempts, and a watchdog, since hiredis 0.14 has no timeouts. Knows
 * nothing of what the connection is used for: its owner gets on_up. */
#include "redis_link.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"

#define LINK_TIMEOUT 5.0 /* seconds to connect, or to get an answer */
#define BACKOFF_MIN 0.1  /* first reconnect delay; doubles up to ... */
#define BACKOFF_MAX 5.0

struct redis_link {
  struct event_base *base;
  const struct redis_url *url;
  struct redis_link_stats *stats;
  int index;
  const char *role; /* "publish" or "follow" */
  redisAsyncContext *ac; /* NULL while down */
  int up, stopping;
  double backoff;
  struct event *retry_ev, *watch_ev;
  int outstanding;      /* commands whose answer is awaited */
  double last_progress; /* when the last answer came (or the wait began) */
  redis_link_up_fn on_up;
  void *arg;
};

static double mono_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval to_tv(double s)
{
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
  return tv;
}

static void link_connect(struct redis_link *l);

static void link_schedule(struct redis_link *l)
{
  if (l->stopping)
    return;
  double d = l->backoff * (0.75 + 0.5 * ((double)random() / (double)RAND_MAX));
  l->backoff = l->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : l->backoff * 2;
  struct timeval tv = to_tv(d);
  evtimer_add(l->retry_ev, &tv);
}

/* The connection is gone (hiredis frees it, or the caller does). */
static void link_lost(struct redis_link *l, const char *why)
{
    char q[300];
  l->ac = NULL;
  l->outstanding = 0;
  if (l->up) {
    l->up = 0;
    atomic_fetch_sub(&l->stats->links_up, 1);
    atomic_fetch_add(&l->stats->disconnects, 1);
    log_event(LOG_WARN, "redis_down", "role=%s worker=%d reason=%s", l->role, l->index,
              log_quote(q, sizeof(q), why));
  } else if (!l->stopping) {
    log_event(LOG_WARN, "redis_connect_failed", "role=%s worker=%d addr=%s:%d reason=%s retry_in=%.1fs",
              l->role, l->index, l->url->host, l->url->port, log_quote(q, sizeof(q), why),
              l->backoff);
  }
  link_schedule(l);
}

/* Closes the connection on purpose; answers still awaited come back empty. */
void redis_link_drop(struct redis_link *l, const char *why)
{
  redisAsyncContext *ac = l->ac;
  if (!ac)
    return;
  char copy[256];
  snprintf(copy, sizeof(copy), "%s", why);
  link_lost(l, copy);
  redisAsyncFree(ac);
}

void redis_link_progress(struct redis_link *l, const redisAsyncContext *ac)
{
  if (l->ac == ac) {
    if (l->outstanding > 0)
      l->outstanding--;
    l->last_progress = mono_now();
  }
}

void redis_link_awaiting(struct redis_link *l)
{
  if (l->outstanding++ == 0)
    l->last_progress = mono_now();
}

/* The answer to a command of l, or NULL when there is none to act on (the
 * connection went, or l has moved on to another one). */
void *redis_link_answer(struct redis_link *l, redisAsyncContext *ac, void *r)
{
  redis_link_progress(l, ac);
  return l->ac == ac ? r : NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
  struct redis_link *l = ac->data;
  if (l && l->ac == ac && status != REDIS_OK)
    link_lost(l, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
  struct redis_link *l = ac->data;
  if (l && l->ac == ac)
    link_lost(l, status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
}

/* AUTH and SELECT: an error reply ends the attempt. */
static void on_setup(redisAsyncContext *ac, void *r, void *priv)
{
  struct redis_link *l = priv;
  redisReply *reply = redis_link_answer(l, ac, r);
  if (reply && reply->type == REDIS_REPLY_ERROR)
    redis_link_drop(l, reply->str);
}

static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
  struct redis_link *l = priv;
  redisReply *reply = redis_link_answer(l, ac, r);
    if (!reply)
    return;
  if (reply->type == REDIS_REPLY_ERROR) {
    redis_link_drop(l, reply->str);
    return;
  }
  l->up = 1;
  l->backoff = BACKOFF_MIN;
  atomic_fetch_add(&l->stats->links_up, 1);
  atomic_fetch_add(&l->stats->connects, 1);
  log_event(LOG_INFO, "redis_connected", "role=%s worker=%d addr=%s:%d db=%d", l->role,
            l->index, l->url->host, l->url->port, l->url->db);
  if (l->on_up)
    l->on_up(l, l->arg);
}

static void link_connect(struct redis_link *l)
{
  const struct redis_url *u = l->url;
  redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
  if (!ac) {
    link_lost(l, "out of memory");
    return;
  }
  if (ac->err) {
    char why[256];
    snprintf(why, sizeof(why), "%s", ac->errstr);
    redisAsyncFree(ac);
    link_lost(l, why);
    return;
  }
  ac->data = l;
  if (redisLibeventAttach(ac, l->base) != REDIS_OK) {
    redisAsyncFree(ac);
    link_lost(l, "cannot attach to the event loop");
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  l->ac = ac;
  l->outstanding = 0;
  if (u->user[0]) {
    redis_link_awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "AUTH %s %s", u->user, u->password);
  } else if (u->password[0]) {
    redis_link_awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "AUTH %s", u->password);
  }
  if (u->db) {
    redis_link_awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "SELECT %d", u->db);
  }
  redis_link_awaiting(l);
  redisAsyncCommand(ac, on_ready, l, "PING");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct redis_link *l = arg;
  if (!l->stopping && !l->ac)
    link_connect(l);
}

/* hiredis 0.14 has no timeouts: a connection that does not answer within
 * LINK_TIMEOUT (a paused or unreachable server) is dropped and redialled. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct redis_link *l = arg;
  if (l->ac && (l->outstanding > 0 || !l->up) && mono_now() - l->last_progress > LINK_TIMEOUT)
    redis_link_drop(l, l->up ? "no answer from Redis within 5 s" : "connect timed out after 5 s");
}

struct redis_link *redis_link_new(struct event_base *base, const struct redis_url *url,
                                  const char *role, int index, struct redis_link_stats *stats,
                                  redis_link_up_fn on_up, void *arg)
{
  struct redis_link *l = calloc(1, sizeof(*l));
  if (!l)
    return NULL;
  l->base = base;
  l->url = url;
  l->index = index;
  l->stats = stats;
  l->on_up = on_up;
  l->arg = arg;
  l->role = role;
  l->backoff = BACKOFF_MIN;
  l->retry_ev = evtimer_new(base, on_retry, l);
  l->watch_ev = event_new(base, -1, EV_PERSIST, on_watch, l);
  if (!l->retry_ev || !l->watch_ev) {
    if (l->retry_ev)
      event_free(l->retry_ev);
    if (l->watch_ev)
      event_free(l->watch_ev);
    free(l);
    return NULL;
  }
  struct timeval now = {0, 0}, second = {1, 0};
  evtimer_add(l->retry_ev, &now); /* connect once the loop runs */
  event_add(l->watch_ev, &second);
  atomic_fetch_add(&l->stats->links, 1);
  return l;
}

void redis_link_free(struct redis_link *l)
{
  if (!l)
    return;
  l->stopping = 1;
  if (l->ac) {
    redisAsyncContext *ac = l->ac;
    if (l->up)
      atomic_fetch_sub(&l->stats->links_up, 1);
    l->up = 0;
    l->ac = NULL;
    redisAsyncFree(ac); /* answers still awaited come back empty */
  }
  atomic_fetch_sub(&l->stats->links, 1);
  event_free(l->retry_ev);
  event_free(l->watch_ev);
  free(l);
}

redisAsyncContext *redis_link_ctx(const struct redis_link *l) { return l->ac; }
int redis_link_is_up(const struct redis_link *l) { return l && l->up && l->ac; }
