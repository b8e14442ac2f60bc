/* Parsing a publish body into messages: one JSON object, an array of up
 * to PUBLISH_MAX_BATCH of them, or the raw form (targets, handler_id and
 * event in the query; the payload is the body, embedded as sent). Values
 * are checked by the rules of validate.h. Pure: no I/O, tested and fuzzed
 * on its own. */
#ifndef TINYSSE_PUBLISH_PARSE_H
#define TINYSSE_PUBLISH_PARSE_H

#include <stddef.h>

#include "validate.h"

struct pub_batch;
struct json_object;

/* Parses len bytes as exactly one JSON value into *out (NULL for `null`).
 * 0, or -1 with msg. */
int json_parse_whole(const char *s, size_t len, struct json_object **out, char *msg, size_t msglen);

/* On success a batch (free with pub_batch_free); on failure NULL with a
 * message and the offending field ("" when it is the whole body). */
struct pub_batch *publish_parse_json(const char *body, size_t len, char *field, size_t fieldlen,
                                     char *msg, size_t msglen);
struct pub_batch *publish_parse_raw(const char *targets, const char *handler_id, const char *event,
                                    const char *body, size_t len, char *field, size_t fieldlen,
                                    char *msg, size_t msglen);
size_t pub_batch_count(const struct pub_batch *b);
const struct pub_item *pub_batch_items(const struct pub_batch *b);
void pub_batch_free(struct pub_batch *b); /* NULL is fine */

#endif
