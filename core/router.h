/* The router: a table of paths, the methods each accepts, and the handler
 * each goes to; the checks every request gets first (header size, CORS,
 * preflight). Transport-neutral: a transport builds a struct request and
 * calls router_dispatch. */
#ifndef TINYSSE_ROUTER_H
#define TINYSSE_ROUTER_H

struct config;
struct request;

/* Is this a request for a stream (the stream endpoint or the status
 * page's)? Such requests are shed rather than refused for capacity. */
int router_is_stream(const struct config *cfg, const struct request *r);
void router_dispatch(struct request *r);

#endif
