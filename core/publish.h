/* POST /publish: authorisation, body parsing (object, array, or the raw
 * form with targets in the query), then broker_publish. */
#ifndef TINYSSE_PUBLISH_H
#define TINYSSE_PUBLISH_H

#include <stddef.h>

#include "validate.h"

struct front;
struct evhttp_request;
struct pub_batch;

void publish_request(struct front *f, struct evhttp_request *req);

/* Parsing, separate from HTTP so it can be tested and fuzzed. On success
 * returns a batch (free with pub_batch_free); on failure NULL with a
 * message and the offending field ("" when it is the whole body). */
struct pub_batch *publish_parse_json(const char *body, size_t len, char *field, size_t fieldlen,
                                     char *msg, size_t msglen);
struct pub_batch *publish_parse_raw(const char *targets, const char *handler_id, const char *event,
                                    const char *body, size_t len, char *field, size_t fieldlen,
                                    char *msg, size_t msglen);
size_t pub_batch_count(const struct pub_batch *b);
const struct pub_item *pub_batch_items(const struct pub_batch *b);
void pub_batch_free(struct pub_batch *b);

#endif
