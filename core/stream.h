/* The stream endpoint: token, validate_token, channels, then client_open. */
#ifndef TINYSSE_STREAM_H
#define TINYSSE_STREAM_H

struct worker;
struct evhttp_request;

void stream_request(struct worker *w, struct evhttp_request *req);

#endif
