/* Cluster mode (--redis): gateways share one Redis stream.
 *
 * A publish is an XADD (MAXLEN --buffer, in a small Redis script that also
 * records the id of the entry before it) on the receiving worker's own
 * Redis connection; the id Redis assigns is the message's id everywhere.
 * Worker 0 follows the stream (XREAD BLOCK from the last id it read) and
 * hands what it reads to the broker exactly as a local publish would, so
 * each node reads each message once and fans it out to its own clients.
 * Every connection lives on its worker's libevent loop (hiredis' async API),
 * reconnects with backoff, and has a watchdog (hiredis 0.14 has no timeouts).
 * Without --redis none of this exists. */
#ifndef TINYSSE_CLUSTER_H
#define TINYSSE_CLUSTER_H

#include <stddef.h>

#include "message.h"
#include "redis_url.h"

struct gateway;
struct evbuffer;
struct pub_item;
struct cluster;
struct redis_link;
struct event_base;

/* Process-wide state. NULL with err when the URL or key is unusable. */
struct cluster *cluster_new(struct gateway *gw, char *err, size_t errlen);
void cluster_free(struct cluster *cl); /* after every worker's links are gone */

/* Per worker, on its event base: its publishing connection (and, for
 * index 0, the follower too). Connecting starts once the loop runs. NULL
 * on OOM. */
struct redis_link *cluster_attach(struct cluster *cl, struct event_base *base, int index);
/* From that loop's thread when it stops: closes its connections; publishes
 * still waiting for Redis are answered 503. */
void cluster_detach(struct cluster *cl, struct redis_link *l, int index);

/* Has this node read the stream at least once (it can serve resumes)? */
int cluster_ready(const struct gateway *gw);
/* Are all of this node's Redis connections up? */
int cluster_healthy(const struct gateway *gw);

/* Answers for cluster_publish, on the worker's thread: status 200 with the
 * ids (reason NULL, or "replayed" when an idempotency key had already
 * published them), 409 when the key was used for something else (reason
 * "conflict"), or 503 with a reason (nothing, or possibly everything,
 * stored: the reason says which; ids Redis confirmed are filled in). */
typedef void (*cluster_done_fn)(void *arg, int status, char (*ids)[MESSAGE_ID_MAX], size_t n,
                                const char *reason);
/* An Idempotency-Key for cluster_publish: key is the scope and key as
 * text (kept in Redis as <redis-key>:idem:<key> for --idempotency-window),
 * digest the publish's digest in hex. */
struct cluster_once {
  const char *key, *digest;
};
/* Appends n messages to the stream in one Redis script, so they are
 * consecutive and all-or-nothing for Redis' part; with once, the key is
 * checked and recorded in the same step. 0 when sent (done is called
 * later, exactly once), -1 when this worker's connection is down (done is
 * not called; err says why). */
int cluster_publish(struct cluster *cl, struct redis_link *l, const struct pub_item *items,
                    size_t n, const struct cluster_once *once, cluster_done_fn done, void *arg,
                    char *err, size_t errlen);

void cluster_metrics(const struct gateway *gw, struct evbuffer *out);

#endif
