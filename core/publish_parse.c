/* Parsing a publish body (one JSON message, an array of them, or the raw
 * form with targets in the query) into messages, checked by the rules of
 * validate.h. Separate from HTTP so it can be tested and fuzzed. */
#include "publish_parse.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "validate.h"

struct pub_batch {
  size_t n;
  struct pub_item *items;
  char **strings; /* everything the items point to */
  size_t nstrings, capstrings;
  const char ***targetv;
};

static char *keep(struct pub_batch *b, const char *s, size_t len)
{
  if (b->nstrings == b->capstrings) {
    size_t cap = b->capstrings ? b->capstrings * 2 : 16;
    char **p = realloc(b->strings, cap * sizeof(*p));
    if (!p)
      return NULL;
    b->strings = p;
    b->capstrings = cap;
  }
  char *c = malloc(len + 1);
  if (!c)
    return NULL;
  memcpy(c, s, len);
  c[len] = '\0';
  b->strings[b->nstrings++] = c;
  return c;
}

void pub_batch_free(struct pub_batch *b)
{
  if (!b)
    return;
  for (size_t i = 0; i < b->nstrings; i++)
    free(b->strings[i]);
  for (size_t i = 0; i < b->n; i++)
    free(b->targetv[i]);
  free(b->strings);
  free(b->targetv);
  free(b->items);
  free(b);
}

size_t pub_batch_count(const struct pub_batch *b) { return b->n; }
const struct pub_item *pub_batch_items(const struct pub_batch *b) { return b->items; }

static struct pub_batch *batch_new(size_t n)
{
  struct pub_batch *b = calloc(1, sizeof(*b));
  if (!b)
    return NULL;
  b->items = calloc(n, sizeof(*b->items));
  b->targetv = calloc(n, sizeof(*b->targetv));
  if (!b->items || !b->targetv) {
    pub_batch_free(b);
    return NULL;
  }
  return b;
}

static int fail(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t msglen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, msglen, fmt, ap);
  va_end(ap);
  return -1;
}


/* Fills item i from one JSON object; prefix names it in errors ("" or "[3]"). */
static int parse_item(struct pub_batch *b, size_t i, struct json_object *o, const char *prefix,
                      char *field, size_t fieldlen, char *msg, size_t msglen)
{
  struct pub_item *it = &b->items[i];
  struct json_object *targets = NULL, *data = NULL;
  int have_data = 0;

  if (!json_object_is_type(o, json_type_object)) {
    snprintf(field, fieldlen, "%s", *prefix ? prefix : "");
    return fail(msg, msglen, "a message must be a JSON object with targets, handler_id and data");
  }
  json_object_object_foreach(o, key, val) {
    if (strcmp(key, "targets") == 0) {
      targets = val;
    } else if (strcmp(key, "data") == 0) {
      data = val;
      have_data = 1;
    } else if (strcmp(key, "handler_id") == 0) {
      errno = 0;
      int64_t h = json_object_get_int64(val);
      if (!json_object_is_type(val, json_type_int) || errno) {
        snprintf(field, fieldlen, "%s%shandler_id", prefix, *prefix ? "." : "");
        validate_handler(-1, msg, msglen);
        return -1;
      }
      if (validate_handler(h, msg, msglen)) {
        snprintf(field, fieldlen, "%s%shandler_id", prefix, *prefix ? "." : "");
        return -1;
      }
      it->handler_id = (int)h;
    } else if (strcmp(key, "event") == 0) {
      const char *e = json_object_get_string(val);
      if (json_object_is_type(val, json_type_null))
        continue;
      if (validate_event(json_object_is_type(val, json_type_string) ? e : "", msg, msglen)) {
        snprintf(field, fieldlen, "%s%sevent", prefix, *prefix ? "." : "");
        return -1;
      }
      if (!(it->event = keep(b, e, strlen(e))))
        return fail(msg, msglen, "out of memory");
    } else {
      snprintf(field, fieldlen, "%s%s%s", prefix, *prefix ? "." : "", key);
      return fail(msg, msglen, "unknown field '%s' (expected targets, handler_id, data, event)", key);
    }
  }
  snprintf(field, fieldlen, "%s%stargets", prefix, *prefix ? "." : "");
  if (!targets || !json_object_is_type(targets, json_type_array))
    return fail(msg, msglen, "targets must be an array of channel names");
  size_t nt = json_object_array_length(targets);
  if (validate_ntargets(nt, msg, msglen))
    return -1;
  const char **tv = calloc(nt, sizeof(char *));
  if (!tv)
    return fail(msg, msglen, "out of memory");
  b->targetv[i] = tv;
  for (size_t k = 0; k < nt; k++) {
    struct json_object *t = json_object_array_get_idx(targets, k);
    const char *s = json_object_get_string(t);
    size_t len = json_object_get_string_len(t);
    if (validate_target(json_object_is_type(t, json_type_string) ? s : "",
                        json_object_is_type(t, json_type_string) ? len : 0, k, msg, msglen))
      return -1;
    if (!(tv[k] = keep(b, s, len)))
      return fail(msg, msglen, "out of memory");
  }
  it->targets = tv;
  it->ntargets = nt;
  snprintf(field, fieldlen, "%s%sdata", prefix, *prefix ? "." : "");
  if (!have_data)
    return fail(msg, msglen, "data is required (any JSON value)");
  size_t jl;
  const char *js = json_object_to_json_string_length(
      data, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &jl);
  if (!js || !(it->json = keep(b, js, jl)))
    return fail(msg, msglen, "out of memory");
  it->json_len = jl;
  field[0] = '\0';
  return 0;
}

int json_parse_whole(const char *s, size_t len, struct json_object **out, char *msg, size_t msglen)
{
  struct json_tokener *tok = json_tokener_new_ex(64);
  struct json_object *o = NULL;
  int rc = -1;
  *out = NULL;
  if (!tok)
    return fail(msg, msglen, "out of memory");
  if (len > 0x7fffffff) {
    fail(msg, msglen, "body too large");
    goto done;
  }
  o = json_tokener_parse_ex(tok, s, (int)len);
  enum json_tokener_error e = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  if (e == json_tokener_continue) {
    /* A bare number or literal needs to know the input ended: all of it
     * was read (the end reported next is within the empty chunk). */
    o = json_tokener_parse_ex(tok, "", 1);
    e = json_tokener_get_error(tok);
    end = len;
  }
  if (e != json_tokener_success) {
    fail(msg, msglen, "invalid JSON near byte %zu: %s", end, json_tokener_error_desc(e));
    goto done;
  }
  for (size_t i = end; i < len; i++) {
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
      fail(msg, msglen, "invalid JSON: unexpected data after the value at byte %zu", i);
      goto done;
    }
  }
  *out = o;
  o = NULL;
  rc = 0;
done:
  json_object_put(o);
  json_tokener_free(tok);
  return rc;
}

struct pub_batch *publish_parse_json(const char *body, size_t len, char *field, size_t fieldlen,
                                     char *msg, size_t msglen)
{
  struct pub_batch *b = NULL;
  field[0] = '\0';
  struct json_object *root;
  if (json_parse_whole(body, len, &root, msg, msglen) != 0)
    return NULL;
  if (json_object_is_type(root, json_type_array)) {
    size_t n = json_object_array_length(root);
    if (n == 0 || n > PUBLISH_MAX_BATCH) {
      fail(msg, msglen, "an array must hold 1 to %d messages", PUBLISH_MAX_BATCH);
      goto done;
    }
    if (!(b = batch_new(n)))
      goto oom;
    for (size_t i = 0; i < n; i++) {
      char prefix[32];
      snprintf(prefix, sizeof(prefix), "[%zu]", i);
      b->n = i + 1;
      if (parse_item(b, i, json_object_array_get_idx(root, i), prefix, field, fieldlen, msg, msglen))
        goto bad;
    }
  } else {
    if (!(b = batch_new(1)))
      goto oom;
    b->n = 1;
    if (parse_item(b, 0, root, "", field, fieldlen, msg, msglen))
      goto bad;
  }
  goto done;
oom:
  fail(msg, msglen, "out of memory");
bad:
  pub_batch_free(b);
  b = NULL;
done:
  json_object_put(root);
  return b;
}

struct pub_batch *publish_parse_raw(const char *targets, const char *handler_id, const char *event,
                                    const char *body, size_t len, char *field, size_t fieldlen,
                                    char *msg, size_t msglen)
{
  struct pub_batch *b = batch_new(1);
  struct json_object *check = NULL;
  field[0] = '\0';
  if (!b) {
    fail(msg, msglen, "out of memory");
    return NULL;
  }
  b->n = 1;
  struct pub_item *it = &b->items[0];
  const char **tv = calloc(PUBLISH_MAX_TARGETS, sizeof(char *));
  if (!(b->targetv[0] = tv))
    goto oom;
  size_t nt = 0;
  for (const char *p = targets; ; ) {
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    snprintf(field, fieldlen, "targets");
    if (nt == PUBLISH_MAX_TARGETS) {
      validate_ntargets(nt + 1, msg, msglen);
      goto bad;
    }
    if (!(tv[nt] = keep(b, p, l)))
      goto oom;
    if (validate_target(tv[nt], l, nt, msg, msglen))
      goto bad;
    nt++;
    if (!comma)
      break;
    p = comma + 1;
  }
  it->targets = tv;
  it->ntargets = nt;
  if (handler_id) {
    char *end;
    errno = 0;
    long h = strtol(handler_id, &end, 10);
    if (validate_handler(errno || end == handler_id || *end ? -1 : h, msg, msglen)) {
      snprintf(field, fieldlen, "handler_id");
      goto bad;
    }
    it->handler_id = (int)h;
  }
  if (event) {
    if (validate_event(event, msg, msglen)) {
      snprintf(field, fieldlen, "event");
      goto bad;
    }
    if (!(it->event = keep(b, event, strlen(event))))
      goto oom;
  }
  snprintf(field, fieldlen, "data");
  if (json_parse_whole(body, len, &check, msg, msglen) != 0)
    goto bad;
  /* Embedded as sent, without the whitespace around it. */
  while (len && (body[len - 1] == ' ' || body[len - 1] == '\n' || body[len - 1] == '\r' ||
                 body[len - 1] == '\t'))
    len--;
  while (len && (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')) {
    body++;
    len--;
  }
  if (!(it->json = keep(b, body, len)))
    goto oom;
  it->json_len = len;
  json_object_put(check);
  field[0] = '\0';
  return b;
oom:
  fail(msg, msglen, "out of memory");
bad:
  json_object_put(check);
  pub_batch_free(b);
  return NULL;
}

