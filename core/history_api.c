/* The history API (see history_api.h). The messages are read under the
 * ring's lock as frame references and turned into JSON after it. */
#include "history_api.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "front.h"
#include "jsonutil.h"
#include "request.h"
#include "ring.h"
#include "sse.h"
#include "stream.h"
#include "validate.h"

struct picked {
  struct frame **f;
  size_t n;
};

static void pick(struct message *m, void *arg)
{
  struct picked *p = arg;
  if (m->frame)
    p->f[p->n++] = frame_ref(m->frame);
}

/* A frame back into {"id","event"?,"handler_id","data"}: its data: lines
 * joined are the envelope the gateway built; NULL when it is not one. */
static struct json_object *frame_json(const struct frame *f)
{
  char *env = xmalloc(f->len + 1), *event = NULL;
  size_t n = 0;
  const char *p = f->data, *end = f->data + f->len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (len >= 6 && memcmp(p, "data: ", 6) == 0) {
      if (n)
        env[n++] = '\n';
      memcpy(env + n, p + 6, len - 6);
      n += len - 6;
    } else if (len >= 7 && memcmp(p, "event: ", 7) == 0 && !event) {
      event = xmalloc(len - 6);
      memcpy(event, p + 7, len - 7);
      event[len - 7] = 0;
    }
    p += len + 1;
  }
  env[n] = 0;
  struct json_object *o = json_tokener_parse(env);
  if (o && !json_object_is_type(o, json_type_object)) {
    json_object_put(o);
    o = NULL;
  }
  if (o && event)
    json_object_object_add(o, "event", json_str(event));
  free(env);
  free(event);
  return o;
}

static void answer(struct request *r, const char *channel, struct msgpos since, long limit)
{
  struct ring *ring = r->f->gw->ring;
  struct picked p = {xcalloc((size_t)limit + 1, sizeof(struct frame *)), 0};
  ring_lock(ring);
  ring_expire(ring);
  /* one more than asked: says whether there is more after the page */
  ring_channel_history(ring, channel, since, (size_t)limit + 1, pick, &p);
  int evicted = ring_channel_lost(ring, channel, since);
  ring_unlock(ring);
  struct json_object *o = json_obj(), *list = json_arr();
  for (size_t i = 0; i < p.n && i < (size_t)limit; i++) {
    struct json_object *m = frame_json(p.f[i]);
    if (m)
      json_object_array_add(list, m);
  }
  for (size_t i = 0; i < p.n; i++)
    frame_unref(p.f[i]);
  free(p.f);
  json_object_object_add(o, "channel", json_str(channel));
  json_object_object_add(o, "messages", list);
  json_object_object_add(o, "evicted", json_object_new_boolean(evicted));
  json_object_object_add(o, "more", json_object_new_boolean(p.n > (size_t)limit));
  reply_json(r, 200, o);
}

static int has_channel(const struct script_result *where, const char *channel)
{
  for (size_t i = 0; i < where->nchannels; i++)
    if (strcmp(where->channels[i], channel) == 0)
      return 1;
  return 0;
}

void history_api_request(struct request *r)
{
  struct req_view v;
  struct script_result who = {0}, where = {0};
  req_view_init(&v, r, 0);
  v.sr.publisher = request_is_publisher(r);
  const char *channel = request_query(r, "channel");
  const char *since_s = request_query(r, "since"), *limit_s = request_query(r, "limit");
  struct msgpos since = {0, 0};
  long limit = HISTORY_API_DEFAULT_LIMIT;
  char *end = NULL;
  if (!channel || !channel_name_ok(channel, strlen(channel))) {
    reply_field_error(r, 400, "channel", "channel=NAME is required: 1 to 200 bytes without control characters");
    goto done;
  }
  if (since_s && message_id_parse(since_s, &since.ms, &since.seq) != 0) {
    reply_field_error(r, 400, "since", "since must be a message id (<digits>-<digits>)");
    goto done;
  }
  if (limit_s && ((limit = strtol(limit_s, &end, 10)) < 1 || limit > HISTORY_API_MAX_LIMIT || *end)) {
    reply_field_error(r, 400, "limit", "limit must be 1 to %d", HISTORY_API_MAX_LIMIT);
    goto done;
  }
  /* A stream token (query, or the token cookie): its channels must include
   * this one. Otherwise the publisher's rules. */
  int token = (request_query(r, "token") && *request_query(r, "token")) ||
              (request_bearer(r) && !v.sr.publisher) ||
              (r->f->gw->cfg->token_cookie && r->ops->header(r, "Cookie"));
  if (token && !v.sr.publisher) {
    if (stream_identify(r, &v, &who, &where) != 0)
      goto done;
    if (!has_channel(&where, channel)) {
      reply_error(r, 403, "forbidden", "this token's channels do not include %s", channel);
      goto done;
    }
  } else if (request_authorize_publisher(r, &v) != 0) {
    goto done;
  }
  answer(r, channel, since, limit);
done:
  script_result_free(&who);
  script_result_free(&where);
  req_view_free(&v);
}
