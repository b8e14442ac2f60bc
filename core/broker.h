/* The broker assigns ids, puts messages in the replay ring and hands them to
 * every worker, all under the ring lock, so every worker sees the same order
 * and a message is in the ring before its publish is acknowledged. */
#ifndef TINYSSE_BROKER_H
#define TINYSSE_BROKER_H

#include <stddef.h>

#include "gateway.h"
#include "message.h"

struct pub_item {
  const char *const *targets;
  size_t ntargets;
  int handler_id;
  const char *event; /* NULL when none */
  const char *json;  /* the payload, valid JSON */
  size_t json_len;
};

/* Publishes n items in order; writes each id to ids[i]. Returns the number
 * published (n unless memory ran out). */
size_t broker_publish(struct gateway *gw, const struct pub_item *items, size_t n,
                      char (*ids)[MESSAGE_ID_MAX]);

#endif
