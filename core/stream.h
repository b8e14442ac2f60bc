/* The stream endpoint: token, validate_token, channels, then a client;
 * and shedding, the answer a browser survives when a stream cannot be
 * held for capacity or readiness. */
#ifndef TINYSSE_STREAM_H
#define TINYSSE_STREAM_H

#include "shared.h"

struct request;

void stream_request(struct request *r);
/* Refuses a stream request for capacity or readiness the way a browser
 * survives: 200 text/event-stream with a jittered retry: between
 * --busy-retry-min and --busy-retry-max, one tinysse.busy event naming the
 * reason, then a close. Counted in tinysse_shed_total{reason}. */
void stream_shed(struct request *r, enum shed_reason reason);

#endif
