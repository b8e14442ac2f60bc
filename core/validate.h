/* The rules for a published message, in one place: POST /publish,
 * tinysse.publish and the cluster follower all check messages here (one
 * limit, one message text), and a script's channels hook checks channel
 * names with the same rule. Pure: no allocation, no I/O. Each check returns
 * NULL when the value is fine, else msg, filled with what is wrong in the
 * words the HTTP API answers with. */
#ifndef TINYSSE_VALIDATE_H
#define TINYSSE_VALIDATE_H

#include <stddef.h>

#include "message.h"

#define PUBLISH_MAX_BATCH 1000   /* messages in one publish */
#define PUBLISH_MAX_TARGETS 64   /* targets of one message */
#define CHANNEL_MAX_LEN 200      /* bytes in a channel name */
#define STREAM_MAX_CHANNELS 256  /* channels one stream may join */
/* Channels starting with this byte belong to the gateway (the status page's
 * stream): no publisher may name them, no script may join them. */
#define CHANNEL_PRIVATE_PREFIX '\001'

/* A channel name anyone may use: 1 to CHANNEL_MAX_LEN bytes, no NUL, no
 * control character (which also keeps the private prefix out). */
static inline int channel_name_ok(const char *s, size_t len)
{
  if (len == 0 || len > CHANNEL_MAX_LEN)
    return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20)
      return 0;
  return 1;
}

const char *validate_ntargets(size_t n, char *msg, size_t msglen);
/* Target k of a message (len bytes, which must hold no NUL). */
const char *validate_target(const char *t, size_t len, size_t k, char *msg, size_t msglen);
const char *validate_handler(long long h, char *msg, size_t msglen);
const char *validate_event(const char *e, char *msg, size_t msglen);
/* The payload: valid JSON (one value), at most max_bytes (0: no limit). */
const char *validate_data(const char *json, size_t len, size_t max_bytes, char *msg,
                          size_t msglen);
/* A whole message; on a problem also names its field ("targets",
 * "handler_id", "event", "data") in field. */
const char *validate_item(const struct pub_item *it, size_t max_data, char *field, size_t fieldlen,
                          char *msg, size_t msglen);

#endif
