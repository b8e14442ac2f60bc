/* A reconnecting connection to Redis on one event loop. The owner sends
 * commands on redis_link_ctx() while it is up and brackets each with
 * redis_link_awaiting() (before) and redis_link_answer() (in the reply
 * callback), which feed the watchdog: a connection that answers nothing
 * for 5 s is dropped and redialled. Used on its loop's thread only; the
 * counters in redis_link_stats are read from any thread. */
#ifndef TINYSSE_REDIS_LINK_H
#define TINYSSE_REDIS_LINK_H

#include <stdatomic.h>

#include "redis_url.h"

struct event_base;
struct redisAsyncContext;
struct redis_link;

/* Shared by the links of one owner (for /metrics and health). */
struct redis_link_stats {
  atomic_int links, links_up;
  atomic_ulong connects, disconnects;
};

/* Called each time the link comes up (after AUTH, SELECT and a PING). */
typedef void (*redis_link_up_fn)(struct redis_link *l, void *arg);

/* Starts connecting once base's loop runs. role and index name it in
 * logs; url and stats must outlive it. NULL on OOM. */
struct redis_link *redis_link_new(struct event_base *base, const struct redis_url *url,
                                  const char *role, int index, struct redis_link_stats *stats,
                                  redis_link_up_fn on_up, void *arg);
/* Closes it; answers still awaited come back empty (NULL reply). NULL ok. */
void redis_link_free(struct redis_link *l);
/* The connection, or NULL while down. */
struct redisAsyncContext *redis_link_ctx(const struct redis_link *l);
/* Up and usable (NULL is not). */
int redis_link_is_up(const struct redis_link *l);
/* A command was sent: its answer is awaited. */
void redis_link_awaiting(struct redis_link *l);
/* An answer came on ac (any answer, for the watchdog). */
void redis_link_progress(struct redis_link *l, const struct redisAsyncContext *ac);
/* In a reply callback: the reply r, or NULL when there is none to act on
 * (the connection went, or l has moved on to another one). */
void *redis_link_answer(struct redis_link *l, struct redisAsyncContext *ac, void *r);
/* Drops the connection on purpose (redialled after the backoff). */
void redis_link_drop(struct redis_link *l, const char *why);

#endif
