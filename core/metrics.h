/* Prometheus text exposition of the gateway's counters, summed over workers
 * (each worker writes only its own counters; readers load them relaxed). */
#ifndef TINYSSE_METRICS_H
#define TINYSSE_METRICS_H

#include <stddef.h>

struct gateway;
struct evbuffer;

void metrics_render(struct gateway *gw, struct evbuffer *out);
/* A worker_stats field (offsetof) summed over all workers. */
unsigned long metrics_sum(struct gateway *gw, size_t off);

#endif
