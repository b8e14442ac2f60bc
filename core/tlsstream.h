/* HTTP/1.1 streams over TLS. The socket cannot leave evhttp as a plain
 * stream's does (OpenSSL holds the connection's state), so evhttp keeps the
 * connection, idle, and the stream writes through its bufferevent. */
#ifndef TINYSSE_TLSSTREAM_H
#define TINYSSE_TLSSTREAM_H

#include <stddef.h>

struct client_params;
struct clients;
struct evhttp_request;

/* Opens the stream of req (an evhttp request on a TLS connection) with head
 * (the answer's status line and headers) first: client_open()'s result. */
int tlsstream_open(struct clients *cs, struct evhttp_request *req, const char *head,
                   size_t head_len, struct client_params *p);

#endif
