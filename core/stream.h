/* The stream endpoint: token, validate_token, channels, then a client;
 * and shedding, the answer a browser survives when a stream cannot be
 * held for capacity or readiness. */
#ifndef TINYSSE_STREAM_H
#define TINYSSE_STREAM_H

#include "shared.h"

struct request;
struct req_view;
struct script_result;

void stream_request(struct request *r);
/* The stream token's owner and channels (validate_token, then channels or
 * the default ones): 0 with who and where filled (the caller frees them),
 * or -1: the request was answered (401, 500), or waits for a hook and its
 * handler runs again when that ends. */
int stream_identify(struct request *r, struct req_view *v, struct script_result *who,
                    struct script_result *where);
/* Refuses a stream request for capacity or readiness the way a browser
 * survives: 200 text/event-stream with a jittered retry: between
 * --busy-retry-min and --busy-retry-max, one tinysse.busy event naming the
 * reason, then a close. Counted in tinysse_shed_total{reason}. */
void stream_shed(struct request *r, enum shed_reason reason);

#endif
