/* HTTP connections while evhttp holds them, from accept until they close
 * or become streams: the --max-connections and --max-connections-per-peer
 * limits, the --request-timeout deadline for a whole request, and pausing
 * the listeners when accept() runs out of descriptors. One `struct conns`
 * per worker, used on that worker's thread only. */
#ifndef TINYSSE_CONN_H
#define TINYSSE_CONN_H

struct front;
struct evhttp;
struct evhttp_request;
struct evconnlistener;
struct conns;

/* Starts watching the connections the worker's evhttps accept: plain
 * listeners' and TLS listeners' (tls NULL when none). NULL on OOM. */
struct conns *conns_new(struct front *f, struct evhttp *plain, struct evhttp *tls);
/* Call after evhttp_free() of the same evhttps (their connections are gone
 * by then); releases the rest. NULL is fine. */
void conns_free(struct conns *cs);
/* Pauses l for a moment when accept() fails (EMFILE...) instead of letting
 * libevent retry it at once, forever. */
void conns_watch_listener(struct conns *cs, struct evconnlistener *l);
/* A whole request has arrived on req's connection: its deadline stops until
 * the answer has been written (and for good if it becomes a stream).
 * Returns CONNS_OK, or why the request must be refused: the connection was
 * accepted past --max-connections (a stream request is then shed, others
 * get 503), or, for a request that is not a stream, its client holds more
 * than --max-connections-per-peer such connections (503). Either way the
 * caller answers with Connection: close. */
enum { CONNS_OK, CONNS_OVER_LIMIT, CONNS_OVER_PEER_LIMIT };
int conns_request_started(struct conns *cs, struct evhttp_request *req, int is_stream);
/* The client's address for req (and its port, 0 when unknown): the TCP
 * peer, or, from a --trusted-proxy, the PROXY header's source and then
 * X-Forwarded-For's right-most untrusted hop. Valid until the next request
 * on the connection. */
const char *conns_peer(struct conns *cs, struct evhttp_request *req, unsigned *port);
/* Calls fn(req, NULL) once req's answer has been written (req's completion
 * callback belongs to this file). */
void conns_when_answered(struct conns *cs, struct evhttp_request *req,
                         void (*fn)(struct evhttp_request *, void *));
/* req's connection became a stream that stays in evhttp's hands (over
 * TLS): it no longer counts as a connection (the stream counts). */
void conns_stream_kept(struct conns *cs, struct evhttp_request *req);
/* req was kept for a hook that waits: fn(arg) when its connection closes
 * before the answer (fn NULL: no more). Nothing when it is gone already. */
void conns_on_gone(struct conns *cs, struct evhttp_request *req, void (*fn)(void *arg), void *arg);

#endif
