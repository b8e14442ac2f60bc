/* The one way to publish, for POST /publish and tinysse.publish alike:
 * messages are checked by the rules of validate.h first (so no caller can
 * skip them), then go to the local broker, or to Redis in cluster mode,
 * whichever the gateway was started with; an Idempotency-Key is honoured
 * either way. */
#ifndef TINYSSE_PUBLISHER_H
#define TINYSSE_PUBLISHER_H

#include <stddef.h>

#include "message.h"

struct gateway;
struct redis_link;

/* Cluster mode's answer, later, on the sending worker's thread (see
 * publisher_send): status 200 (reason NULL, or "replayed"), 409
 * ("conflict"), or 503 with a reason; ids Redis confirmed are filled in. */
typedef void (*publish_done_fn)(void *arg, int status, char (*ids)[MESSAGE_ID_MAX], size_t n,
                                const char *reason);

struct publish_req {
  const struct pub_item *items;
  size_t n;
  int is_array;    /* the body was an array: part of what a key guards */
  const char *key; /* "<scope>:<Idempotency-Key>", or NULL */
  size_t max_data; /* largest payload (0: no limit) */
  publish_done_fn done; /* cluster mode only */
  void *arg;
};

#define PUBLISH_PENDING 0
struct publish_result {
  int replayed;              /* 200 for a repeat of a key: nothing was published */
  size_t nids;               /* ids filled (published, or replayed) */
  char (*ids)[MESSAGE_ID_MAX]; /* the caller's array of n */
  char field[48];            /* on 400: the field at fault */
  char message[300];         /* on an error: what is wrong */
};

/* Returns PUBLISH_PENDING (cluster mode: done(arg, ...) is called exactly
 * once later), or the outcome now: 200 (ids filled; replayed set for a
 * repeat), 400 (a message breaks a rule: field, message), 409 (the key was
 * used for another publish), 503 (Redis unreachable: nothing published),
 * 500 (out of memory: nids were published). link is the calling worker's
 * Redis connection (NULL without --redis). */
int publisher_send(struct gateway *gw, struct redis_link *link, const struct publish_req *rq,
                   struct publish_result *res);

#endif
