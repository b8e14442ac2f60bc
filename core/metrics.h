/* Prometheus text exposition of the gateway's counters, summed over workers
 * (each worker writes only its own counters; readers load them relaxed). */
#ifndef TINYSSE_METRICS_H
#define TINYSSE_METRICS_H

struct gateway;
struct evbuffer;

void metrics_render(struct gateway *gw, struct evbuffer *out);

#endif
