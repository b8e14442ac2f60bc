/* The stream endpoint: token, validate_token, channels, then client_open. */
#ifndef TINYSSE_STREAM_H
#define TINYSSE_STREAM_H

struct front;
struct evhttp_request;

#include "shared.h"

void stream_request(struct front *f, struct evhttp_request *req);
/* Refuses a stream request for capacity or readiness the way a browser
 * survives: 200 text/event-stream with a jittered retry: between
 * --busy-retry-min and --busy-retry-max, one tinysse.busy event naming the
 * reason, then a close. Counted in tinysse_shed_total{reason}. */
void stream_shed(struct front *f, struct evhttp_request *req, enum shed_reason reason);

#endif
