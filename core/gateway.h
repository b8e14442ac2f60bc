/* Assembling a gateway from its final config (ids, secret, publish key,
 * cluster, replay ring, presence, idempotency keys, workers with their
 * front, the broker's sinks) and taking it apart: one place, used by
 * main() and by the HTTP fuzz target. */
#ifndef TINYSSE_GATEWAY_H
#define TINYSSE_GATEWAY_H

#include <stddef.h>

#include "shared.h"

struct config;
struct worker_front_ops;

/* Fills *gw (zeroed first) from cfg, which must outlive it; front is what
 * each worker serves with (NULL: none). 0, or -1 with a one-line reason in
 * err; either way gateway_teardown() releases what was made. Workers are
 * made but not started. */
int gateway_init(struct gateway *gw, struct config *cfg, const struct worker_front_ops *front,
                 char *err, size_t errlen);
/* After every worker's loop has stopped. */
void gateway_teardown(struct gateway *gw);

#endif
