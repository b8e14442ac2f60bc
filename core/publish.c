/* POST /publish: authorisation, the Idempotency-Key, parsing
 * (publish_parse.c), then the publisher (local broker or Redis). */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "front.h"
#include "jsonutil.h"
#include "idem.h"
#include "publish_parse.h"
#include "publisher.h"
#include "request.h"

static void reply_ids(struct request *req, char (*ids)[MESSAGE_ID_MAX], size_t n, int is_array)
{
  struct json_object *o = json_obj();
  if (is_array) {
    struct json_object *a = json_arr();
    for (size_t i = 0; i < n; i++)
      json_object_array_add(a, json_str(ids[i]));
    json_object_object_add(o, "ids", a);
  } else {
    json_object_object_add(o, "id", json_str(ids[0]));
  }
  reply_json(req, 200, o);
}

/* An error that says exactly which messages were published anyway (ids
 * left empty were not). */
static void reply_partial(struct request *req, int status, const char *error,
                          const char *message, char (*ids)[MESSAGE_ID_MAX], size_t n)
{
  struct json_object *o = json_obj(), *a = json_arr();
  for (size_t i = 0; i < n; i++)
    if (ids[i][0])
      json_object_array_add(a, json_str(ids[i]));
  json_object_object_add(o, "error", json_str(error));
  json_object_object_add(o, "message", json_str(message));
  json_object_object_add(o, "ids", a);
  reply_json(req, status, o);
}

static void reply_conflict(struct request *req)
{
  reply_error(req, 409, "idempotency_conflict",
              "this Idempotency-Key was used within --idempotency-window for a different publish; "
              "nothing was published");
}

static void reply_replayed(struct request *req, char (*ids)[MESSAGE_ID_MAX], size_t n,
                           int is_array)
{
  req->ops->add_header(req, "Idempotent-Replayed", "true");
  reply_ids(req, ids, n, is_array);
}

/* Cluster mode: a publish waiting for Redis. */
struct pub_reply {
  struct request *req;
  int is_array;
};

static void published(void *arg, int status, char (*ids)[MESSAGE_ID_MAX], size_t n, const char *reason)
{
  struct pub_reply *r = arg;
  if (status == 200 && reason && strcmp(reason, "replayed") == 0)
    reply_replayed(r->req, ids, n, r->is_array);
  else if (status == 200)
    reply_ids(r->req, ids, n, r->is_array);
  else if (status == 409)
    reply_conflict(r->req);
  else
    reply_partial(r->req, status, "redis_unavailable", reason, ids, n);
  free(r);
}

/* An Idempotency-Key belongs to the publisher that sent it: keys are
 * scoped by a digest of the request's credentials, so two publishers can
 * use the same key. out: "<scope>:<key>". */
static void scoped_key(struct request *req, const char *key, char *out, size_t cap)
{
  const char *auth = req->ops->header(req, "Authorization");
  unsigned char d[32];
  char scope[17] = "-";
  if (auth) {
    EVP_Digest(auth, strlen(auth), d, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
      snprintf(scope + 2 * i, 3, "%02x", d[i]);
  }
  snprintf(out, cap, "%s:%s", scope, key);
}

void publish_request(struct request *req)
{
  struct front *f = req->f;
  struct gateway *gw = f->gw;
  struct req_view v;
  char field[96], msg[512];
  size_t len;
  if (request_publisher_start(req, &v, &len) != 0)
    return;

  const char *key = req->ops->header(req, "Idempotency-Key");
  if (key && !idem_key_valid(key)) {
    reply_field_error(req, 400, "Idempotency-Key",
                      "an Idempotency-Key is 1 to %d printable ASCII characters", IDEM_KEY_MAX);
    goto done;
  }
  char scoped[IDEM_KEY_MAX + 32];
  const char *targets = request_query(req, "targets");
  struct pub_batch *b;
  if (len == 0) {
    reply_field_error(req, 400, "", "the body is empty; send a JSON message or array of messages");
    goto done;
  }
  if (targets)
    b = publish_parse_raw(targets, request_query(req, "handler_id"), request_query(req, "event"),
                          v.sr.body, len, field, sizeof(field), msg, sizeof(msg));
  else
    b = publish_parse_json(v.sr.body, len, field, sizeof(field), msg, sizeof(msg));
  if (!b) {
    script_on_error(worker_script(f->w), "parse", msg);
    reply_field_error(req, 400, field, "%s", msg);
    goto done;
  }

  size_t n = pub_batch_count(b);
  int is_array = 0;
  for (size_t i = 0; i < len; i++) {
    char c = v.sr.body[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
      continue;
    is_array = !targets && c == '[';
    break;
  }
  if (key)
    scoped_key(req, key, scoped, sizeof(scoped));
  /* Cluster mode: acknowledged once Redis has it (published() answers, on
   * a copy of the request kept for it). */
  struct request *ans = gw->cluster ? req->ops->keep(req) : req;
  struct pub_reply *r = xmalloc(sizeof(*r));
  *r = (struct pub_reply){ans, is_array};
  char (*ids)[MESSAGE_ID_MAX] = xcalloc(n, sizeof(*ids));
  struct publish_req rq = {pub_batch_items(b), n, is_array, key ? scoped : NULL,
                           (size_t)gw->cfg->max_body, published, r};
  struct publish_result res = {.ids = ids};
  int status = publisher_send(gw, worker_link(f->w), &rq, &res);
  if (status != PUBLISH_PENDING)
    free(r);
  if (status == 200 && res.replayed)
    reply_replayed(ans, ids, res.nids, is_array);
  else if (status == 200)
    reply_ids(ans, ids, res.nids, is_array);
  else if (status == 400)
    reply_field_error(ans, 400, res.field, "%s", res.message);
  else if (status == 409)
    reply_conflict(ans);
  else if (status == 503)
    reply_error(ans, 503, "redis_unavailable", "%s", res.message);
  else if (status != PUBLISH_PENDING) /* only memory exhaustion: say what was published */
    reply_partial(ans, 500, "internal", res.message, ids, res.nids);
  free(ids);
  pub_batch_free(b);
done:
  req_view_free(&v);
}
