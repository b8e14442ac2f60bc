/* Taking a stream's socket out of evhttp's hands (HTTP/1.1). One per
 * worker, used on its thread. */
#ifndef TINYSSE_TAKEOVER_H
#define TINYSSE_TAKEOVER_H

struct event_base;
struct evhttp_request;
struct takeover;

/* NULL with errno set when the spare socket cannot be made. */
struct takeover *takeover_new(struct event_base *base);
void takeover_free(struct takeover *t); /* before evhttp goes; NULL is fine */
/* Returns a descriptor for req's connection that the caller owns
 * (TCP_NODELAY set), or -1 with errno (EMFILE when none is left); evhttp's
 * connection is freed soon after, outside its own callback. */
int takeover_socket(struct takeover *t, struct evhttp_request *req);

#endif
