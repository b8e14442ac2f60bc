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

struct gateway;
struct worker;
struct evbuffer;
struct pub_item;
struct cluster;
struct cluster_link;

struct redis_url {
  char host[256];
  int port, db;
  char user[128];     /* "" for the default user */
  char password[256]; /* "" when none; never logged */
};
/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. 0, or -1 with a one-line
 * reason (which never repeats the password). */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

/* Process-wide state. NULL with err when the URL or key is unusable. */
struct cluster *cluster_new(struct gateway *gw, char *err, size_t errlen);
void cluster_free(struct cluster *cl); /* after every worker's links are gone */

/* Per worker, from worker_new: its publishing connection (and, on worker 0,
 * the follower). Connecting starts once the worker's loop runs. 0/-1. */
int cluster_worker_init(struct worker *w);
/* From the worker's thread when it stops: closes its connections; publishes
 * still waiting for Redis are answered 503. */
void cluster_worker_stop(struct worker *w);

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
int cluster_publish(struct worker *w, const struct pub_item *items, size_t n,
                    const struct cluster_once *once, cluster_done_fn done, void *arg, char *err,
                    size_t errlen);

void cluster_metrics(const struct gateway *gw, struct evbuffer *out);

#endif
