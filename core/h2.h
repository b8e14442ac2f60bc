/* HTTP/2 (nghttp2): connections that chose h2 by ALPN on a TLS listener or
 * sent HTTP/2's preface to a plain one (h2c with prior knowledge). Each
 * request goes through the same transport-neutral handlers as HTTP/1.1
 * (request.h); SSE streams are many per connection, each with its own flow
 * control window, and a stream that cannot take its frames is reset as
 * slow past --max-queue without holding up the others. */
#ifndef TINYSSE_H2_H
#define TINYSSE_H2_H

struct front;
struct bufferevent;
struct evhttp_connection;

/* Takes over a connection evhttp accepted (evcon keeps it, idle, until the
 * HTTP/2 session ends; bytes already read stay in bev's input). */
void h2_accept(struct front *f, struct bufferevent *bev, struct evhttp_connection *evcon,
               const char *peer, unsigned port);
/* Shutdown: GOAWAY on every connection (streams already open go on until
 * they end). */
void h2_stop_accepting(struct front *f);
/* Closes every HTTP/2 connection of f at once. */
void h2_close_all(struct front *f);

#endif
