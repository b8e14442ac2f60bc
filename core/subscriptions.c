/* POST /subscriptions and the one path every subscription change takes
 * (see subscriptions.h). */
#include "subscriptions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "alloc.h"
#include "broker.h"
#include "client.h"
#include "cluster_subs.h"
#include "front.h"
#include "jsonutil.h"
#include "publish_parse.h"
#include "request.h"
#include "subs.h"
#include "validate.h"

static void fill_error(struct subs_outcome *o, int status, const char *error, const char *fmt,
                       const char *arg)
{
  o->status = status;
  o->error = error;
  snprintf(o->message, sizeof(o->message), fmt, arg);
}

/* The store's refusal as an outcome (status 0: it was accepted). */
static void store_outcome(struct subs_outcome *o, int rc)
{
  if (rc == SUBS_TOO_MANY_CHANNELS) {
    fill_error(o, 400, "bad_request", "%s", "");
    snprintf(o->field, sizeof(o->field), "subscribe");
    snprintf(o->message, sizeof(o->message),
             "the user would keep more than %d channels from server-side subscriptions",
             STREAM_MAX_CHANNELS);
  } else if (rc == SUBS_FULL) {
    fill_error(o, 503, "subscriptions_full",
               "%s", "subscriptions are kept for --subscription-users users already; nothing changed");
  } else if (rc != SUBS_OK) {
    fill_error(o, 500, "internal", "%s", "out of memory; nothing changed");
  }
}

static double now_unix(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int subscriptions_send(struct gateway *gw, struct redis_link *link, const struct subs_change *c,
                       subs_done_fn done, void *arg, struct subs_outcome *o)
{
  memset(o, 0, sizeof(*o));
  if (subs_check(c, o->field, sizeof(o->field), o->message, sizeof(o->message))) {
    o->error = "bad_request";
    return o->status = 400;
  }
  if (gw->cluster) {
    /* this node's view first, for a quick answer; Redis checks again */
    store_outcome(o, subs_record(gw->subs, c, now_unix(), 1));
    if (o->status)
      return o->status;
    if (cluster_subscribe(gw->cluster, link, c, done, arg, o->message, sizeof(o->message)) == 0)
      return SUBS_PENDING;
    o->error = "redis_unavailable";
    return o->status = 503;
  }
  store_outcome(o, broker_subscribe(gw, c, 1));
  if (o->status)
    return o->status;
  o->streams = client_dir_count(gw, c->user, c->client);
  return o->status = 200;
}

/* ---- POST /subscriptions ---- */

static void reply_outcome(struct request *req, struct gateway *gw, const char *user,
                          const char *client, const struct subs_outcome *o)
{
  if (o->status != 200) {
    if (o->status == 400)
      reply_field_error(req, 400, o->field, "%s", o->message);
    else
      reply_error(req, o->status, o->error, "%s", o->message);
    return;
  }
  struct json_object *j = json_obj();
  json_object_object_add(j, "streams", json_i64((long long)(gw->cluster ? client_dir_count(gw, user, client) : o->streams)));
  if (o->id[0])
    json_object_object_add(j, "id", json_str(o->id));
  reply_json(req, 200, j);
}

/* Cluster mode: the change waits for Redis on a kept request. */
struct pending {
  struct request *req;
  struct gateway *gw;
  char *user, *client;
};

static void answered(void *arg, const struct subs_outcome *o)
{
  struct pending *p = arg;
  reply_outcome(p->req, p->gw, p->user, p->client, o);
  free(p->user);
  free(p->client);
  free(p);
}

/* A list of channel names from the body, or -1 with msg. */
static int names(struct json_object *root, const char *key, const char ***out, size_t *n,
                 char *msg, size_t msglen)
{
  struct json_object *a;
  *out = NULL;
  *n = 0;
  if (!json_object_object_get_ex(root, key, &a) || json_object_is_type(a, json_type_null))
    return 0;
  if (!json_object_is_type(a, json_type_array)) {
    snprintf(msg, msglen, "%s must be an array of channel names", key);
    return -1;
  }
  *n = json_object_array_length(a);
  if (*n > STREAM_MAX_CHANNELS) {
    snprintf(msg, msglen, "%s names more than %d channels", key, STREAM_MAX_CHANNELS);
    return -1;
  }
  *out = xcalloc(*n ? *n : 1, sizeof(char *));
  for (size_t i = 0; i < *n; i++) {
    struct json_object *s = json_object_array_get_idx(a, i);
    if (!json_object_is_type(s, json_type_string) ||
        strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s)) {
      snprintf(msg, msglen, "%s[%zu] must be a channel name (a string)", key, i);
      return -1;
    }
    (*out)[i] = json_object_get_string(s);
  }
  return 0;
}

static const char *string_field(struct json_object *root, const char *key, int *bad_type)
{
  struct json_object *v;
  if (!json_object_object_get_ex(root, key, &v) || json_object_is_type(v, json_type_null))
    return NULL;
  if (!json_object_is_type(v, json_type_string) ||
      strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
    *bad_type = 1;
    return NULL;
  }
  return json_object_get_string(v);
}

void subscriptions_request(struct request *req)
{
  struct gateway *gw = req->f->gw;
  struct req_view v;
  struct json_object *root = NULL;
  struct subs_change c = {0};
  char msg[300];
  size_t len;
  if (request_publisher_start(req, &v, &len) != 0)
    return;
  int parsed = len > 0 && json_parse_whole(v.sr.body, len, &root, msg, sizeof(msg)) == 0;
  if (!parsed || !json_object_is_type(root, json_type_object)) {
    reply_field_error(req, 400, "", "%s", len == 0 ? "the body is empty; send a JSON object"
                                          : parsed ? "the body must be a JSON object" : msg);
    goto done;
  }
  json_object_object_foreach(root, key, val) {
    (void)val;
    if (strcmp(key, "user") && strcmp(key, "client") && strcmp(key, "subscribe") &&
        strcmp(key, "unsubscribe") && strcmp(key, "data")) {
      reply_field_error(req, 400, key, "unknown field; the fields are user, client, subscribe, "
                                       "unsubscribe and data");
      goto done;
    }
  }
  int bad_type = 0;
  c.user = string_field(root, "user", &bad_type);
  c.client = string_field(root, "client", &bad_type);
  if (bad_type) {
    reply_field_error(req, 400, c.user ? "client" : "user", "user and client are strings");
    goto done;
  }
  const char **add = NULL, **del = NULL;
  int bad_add = names(root, "subscribe", &add, &c.nadd, msg, sizeof(msg)) != 0;
  if (bad_add || names(root, "unsubscribe", &del, &c.ndel, msg, sizeof(msg)) != 0) {
    reply_field_error(req, 400, bad_add ? "subscribe" : "unsubscribe", "%s", msg);
    free(add);
    free(del);
    goto done;
  }
  c.add = add;
  c.del = del;
  struct json_object *data;
  if (json_object_object_get_ex(root, "data", &data)) {
    c.data = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN);
    c.data_len = strlen(c.data);
  }
  struct subs_outcome o;
  struct pending *p = NULL;
  if (gw->cluster) {
    p = xmalloc(sizeof(*p));
    *p = (struct pending){NULL, gw, c.user ? xstrdup(c.user) : NULL, c.client ? xstrdup(c.client) : NULL};
  }
  int status = subscriptions_send(gw, worker_link(req->f->w), &c, answered, p, &o);
  if (status == SUBS_PENDING) {
    p->req = req->ops->keep(req);
  } else {
    if (p) {
      free(p->user);
      free(p->client);
      free(p);
    }
    reply_outcome(req, gw, c.user, c.client, &o);
  }
  free(add);
  free(del);
done:
  json_object_put(root);
  req_view_free(&v);
}
