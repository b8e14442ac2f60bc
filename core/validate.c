/* Message rules (see validate.h). */
#include "validate.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "sse.h"

const char *validate_ntargets(size_t n, char *msg, size_t msglen)
{
  if (n >= 1 && n <= PUBLISH_MAX_TARGETS)
    return NULL;
  snprintf(msg, msglen, "targets must name 1 to %d channels", PUBLISH_MAX_TARGETS);
  return msg;
}

const char *validate_target(const char *t, size_t len, size_t k, char *msg, size_t msglen)
{
  if (len > 0 && t[0] == CHANNEL_PRIVATE_PREFIX && strlen(t) == len)
    snprintf(msg, msglen, "targets[%zu] names a channel private to the gateway", k);
  else if (!channel_name_ok(t, len) || strlen(t) != len)
    snprintf(msg, msglen,
             "targets[%zu] must be a channel name of 1 to %d bytes without control characters", k,
             CHANNEL_MAX_LEN);
  else
    return NULL;
  return msg;
}

const char *validate_handler(long long h, char *msg, size_t msglen)
{
  if (h >= 0 && h <= 255)
    return NULL;
  snprintf(msg, msglen, "handler_id must be an integer from 0 to 255");
  return msg;
}

const char *validate_event(const char *e, char *msg, size_t msglen)
{
  if (sse_event_name_ok(e))
    return NULL;
  snprintf(msg, msglen, "event must be a name of 1 to 64 printable characters without spaces");
  return msg;
}

const char *validate_data(const char *json, size_t len, size_t max_bytes, char *msg, size_t msglen)
{
  if (max_bytes && len > max_bytes) {
    snprintf(msg, msglen, "data exceeds %zu bytes", max_bytes);
    return msg;
  }
  struct json_tokener *tok = len <= 0x7fffffff ? json_tokener_new_ex(64) : NULL;
  int ok = 0;
  if (tok) {
    struct json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue) { /* a bare number needs the end */
      json_object_put(o);
      o = json_tokener_parse_ex(tok, "", 1);
      e = json_tokener_get_error(tok);
      end = len;
    }
    ok = e == json_tokener_success;
    for (size_t i = end; ok && i < len; i++) /* one value, nothing after it */
      ok = json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n';
    json_object_put(o);
    json_tokener_free(tok);
  }
  if (ok)
    return NULL;
  snprintf(msg, msglen, "data must be one valid JSON value");
  return msg;
}

const char *validate_item(const struct pub_item *it, size_t max_data, char *field, size_t fieldlen,
                          char *msg, size_t msglen)
{
  const char *why;
  snprintf(field, fieldlen, "targets");
  if ((why = validate_ntargets(it->ntargets, msg, msglen)))
    return why;
  for (size_t k = 0; k < it->ntargets; k++)
    if ((why = validate_target(it->targets[k], strlen(it->targets[k]), k, msg, msglen)))
      return why;
  snprintf(field, fieldlen, "handler_id");
  if ((why = validate_handler(it->handler_id, msg, msglen)))
    return why;
  snprintf(field, fieldlen, "event");
  if (it->event && (why = validate_event(it->event, msg, msglen)))
    return why;
  snprintf(field, fieldlen, "data");
  if ((why = validate_data(it->json, it->json_len, max_data, msg, msglen)))
    return why;
  field[0] = '\0';
  return NULL;
}
