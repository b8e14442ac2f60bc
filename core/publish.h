/* POST /publish: authorisation (publish key or authorize_publish), the
 * Idempotency-Key, parsing (publish_parse.h), then the publisher. */
#ifndef TINYSSE_PUBLISH_H
#define TINYSSE_PUBLISH_H

struct request;

void publish_request(struct request *r);

#endif
