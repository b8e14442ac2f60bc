/* What cluster.c (the follower, publishing) and cluster_subs.c
 * (subscription entries) share of cluster mode; nothing else includes
 * this. */
#ifndef TINYSSE_CLUSTER_IMPL_H
#define TINYSSE_CLUSTER_IMPL_H

#include <stdatomic.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "redis_link.h"

#define FOLLOW_BLOCK_MS 1000 /* XREAD BLOCK: well inside the link's 5 s watchdog */
#define FOLLOW_COUNT 1000    /* entries per XREAD */

struct cluster {
  struct gateway *gw;
  struct redis_url url;
  const char *key;
  /* "<--buffer>:<--buffer-age in ms>": Redis keeps as many messages as
   * each node, for as long (the scripts' ARGV[1], see CLUSTER_TRIM_LUA) */
  char bounds[48];
  size_t cap;
  /* the follower: worker 0's thread only */
  struct redis_link *follow;
  struct msgpos last; /* the newest id read */
  int synced;
  int subs_stale; /* a gap: reload the kept subscriptions */
  /* read from any thread */
  struct redis_link_stats links;
  atomic_int ready;
  atomic_ulong entries_read, bad_entries, gaps, publish_refused, publish_failed;
};

/* The start of each script that appends to the stream (ARGV[1] is
 * cl->bounds): `maxlen` for XADD's MAXLEN, and trim(), called after the
 * appends, which drops entries older than --buffer-age (XTRIM MINID, so
 * Redis's history is bounded by count and age as each node's is). */
#define CLUSTER_TRIM_LUA                                                                 \
  "local maxlen, age = string.match(ARGV[1], '^(%d+):(%d+)$')\n"                          \
  "local function trim()\n"                                                              \
  "  if tonumber(age) > 0 then\n"                                                        \
  "    local t = redis.call('TIME')\n"                                                   \
  "    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"          \
  "    redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', now - tonumber(age)))\n" \
  "  end\n"                                                                              \
  "end\n"

/* A field of a stream entry's [field, value, ...] list: its string
 * value, or NULL. */
const redisReply *cluster_field(const redisReply *fields, const char *name);

/* Subscription entries (cluster_subs.c). Is this entry one ("k" = "s")? */
int cluster_subs_is_entry(const redisReply *fields);
/* Applies it (the store, then every worker): NULL, or why it is refused. */
const char *cluster_subs_entry(struct cluster *cl, const redisReply *fields, char *why, size_t whylen);
/* At the follower's first start, and after a gap: loads the subscriptions
 * Redis keeps into this node's store (replacing it), then calls then(cl). */
void cluster_subs_load(struct cluster *cl, void (*then)(struct cluster *cl));

#endif
