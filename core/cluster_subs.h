/* Server-side subscriptions in cluster mode (see cluster_subs.c): a
 * change is appended to the shared Redis stream, in order with messages. */
#ifndef TINYSSE_CLUSTER_SUBS_H
#define TINYSSE_CLUSTER_SUBS_H

#include <stddef.h>

#include "subs.h"

struct cluster;
struct redis_link;

/* Sends c (checked already) on this worker's connection l. 0 when sent
 * (done is called later, exactly once, on l's thread: status 200 with the
 * entry's id, 400 past the channel limit, 503 store full or Redis
 * failed), -1 when l is down (done is not called; err says why). */
int cluster_subscribe(struct cluster *cl, struct redis_link *l, const struct subs_change *c,
                      subs_done_fn done, void *arg, char *err, size_t errlen);

#endif
