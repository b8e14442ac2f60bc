/* The live status page: GET /status (an HTML page built into the binary),
 * POST /status/token (publish-key holders get a short-lived token) and
 * GET /status/events (an SSE stream of the gateway's own numbers, one event
 * a second, fed by each worker's tick; never in the replay buffer). */
#ifndef TINYSSE_STATUS_H
#define TINYSSE_STATUS_H

struct front;
struct evhttp_request;

void status_page(struct front *f, struct evhttp_request *req);
void status_token_request(struct front *f, struct evhttp_request *req);
void status_stream_request(struct front *f, struct evhttp_request *req);
/* From the worker's tick: sends a status event to this worker's status
 * streams when a second has passed since the last. */
void status_tick(struct front *f, double now);

#endif
