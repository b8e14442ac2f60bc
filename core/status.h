/* The live status page: the HTML page, its short-lived tokens, and its SSE
 * stream of gateway numbers (a private channel: never in the replay ring,
 * in /channels or the Lua hooks), sent by each worker about once a second
 * to its own status streams. Each stream's first event also carries the
 * last 10 minutes of samples (history.h), taken once a second by the ticks. */
#ifndef TINYSSE_STATUS_H
#define TINYSSE_STATUS_H

struct front;
struct request;

void status_page(struct request *r);
void status_token_request(struct request *r);
void status_stream_request(struct request *r);
void status_tick(struct front *f, double now);

#endif
