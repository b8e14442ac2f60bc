/* Server-side subscriptions from outside: POST /subscriptions (publishers
 * only: the publish key or authorize_publish) and tinysse.subscribe /
 * tinysse.unsubscribe, through one path that checks the change and hands
 * it to the local broker, or to Redis in cluster mode (in order with
 * publishes either way). */
#ifndef TINYSSE_SUBSCRIPTIONS_H
#define TINYSSE_SUBSCRIPTIONS_H

#include <stddef.h>

#include "subs.h"

struct gateway;
struct redis_link;
struct request;

void subscriptions_request(struct request *r);

/* Checks and sends c. Returns SUBS_PENDING (cluster mode: done(arg, ...)
 * is called exactly once later, on this worker's thread), or the status
 * with *o filled. link: the calling worker's Redis connection. */
int subscriptions_send(struct gateway *gw, struct redis_link *link, const struct subs_change *c,
                       subs_done_fn done, void *arg, struct subs_outcome *o);

#endif
