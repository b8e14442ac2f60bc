/* Transport-neutral request helpers (see request.h). */
#include "request.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/util.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "front.h"
#include "jsonutil.h"

const char *request_query(struct request *r, const char *key)
{
  if (!r->args_parsed) {
    TAILQ_INIT(&r->args);
    r->args_parsed = 1;
    if (r->query && evhttp_parse_query_str(r->query, &r->args) != 0) {
      evhttp_clear_headers(&r->args);
      TAILQ_INIT(&r->args);
    }
  }
  return evhttp_find_header(&r->args, key);
}

struct hook_memo {
  struct script_result res[HOOK_COUNT];
  unsigned char have[HOOK_COUNT];
};

void request_release(struct request *r)
{
  if (r->args_parsed)
    evhttp_clear_headers(&r->args);
  r->args_parsed = 0;
  if (r->memo) {
    for (int h = 0; h < HOOK_COUNT; h++)
      script_result_free(&r->memo->res[h]);
    free(r->memo);
    r->memo = NULL;
  }
}

/* A hook that waits for a request. */
struct hook_wait {
  struct request *r; /* kept */
  enum script_hook h;
  struct script_call *call;
};

static void hook_ended(void *arg, struct script_result *res)
{
  struct hook_wait *hw = arg;
  struct request *r = hw->r;
  r->ops->on_gone(r, NULL, NULL);
  request_hook_keep(r, hw->h, res);
  free(hw);
  r->resume(r); /* answers r, or waits again */
}

/* The client went away while the hook waited: the hook is dropped (its
 * call-out cancelled) and the request answered into the void. */
static void hook_gone(void *arg)
{
  struct hook_wait *hw = arg;
  struct request *r = hw->r;
  STAT_ADD(r->f->stats->hook_waits_abandoned, 1);
  script_call_cancel(hw->call);
  free(hw);
  r->ops->send(r, 500, "", 0);
}

void request_hook_keep(struct request *r, enum script_hook h, struct script_result *res)
{
  if (!r->kept)
    return; /* a request being handled for the first time: the hook runs again */
  if (!r->memo)
    r->memo = xcalloc(1, sizeof(*r->memo));
  script_result_free(&r->memo->res[h]);
  r->memo->res[h] = *res;
  r->memo->have[h] = 1;
  memset(res, 0, sizeof(*res));
}

int request_hook(struct request *r, enum script_hook h, request_hook_start start, void *arg,
                 struct script_result *res)
{
  struct hook_memo *m = r->memo;
  if (m && m->have[h]) { /* the result moves to the caller */
    *res = m->res[h];
    memset(&m->res[h], 0, sizeof(m->res[h]));
    m->have[h] = 0;
    return res->status;
  }
  struct hook_wait *hw = xcalloc(1, sizeof(*hw));
  struct script_wait w = {hook_ended, hw, &hw->call};
  int rc = start(worker_script(r->f->w), arg, res, r->resume ? &w : NULL);
  if (rc != SCRIPT_PENDING) {
    free(hw);
    return rc;
  }
  hw->h = h;
  hw->r = r->ops->keep(r);
  hw->r->ops->on_gone(hw->r, hook_gone, hw);
  return SCRIPT_PENDING;
}

void reply_json(struct request *r, int code, struct json_object *body)
{
  const char *text = body ? json_text(body)
                          : "{}";
  size_t len = strlen(text);
  char *out = xmalloc(len + 1);
  memcpy(out, text, len);
  out[len] = '\n';
  r->ops->add_header(r, "Content-Type", "application/json");
  r->ops->add_header(r, "Cache-Control", "no-store");
  r->ops->send(r, code, out, len + 1);
  free(out);
  json_object_put(body);
}

static void send_error(struct request *r, int code, const char *error, const char *field,
                       const char *fmt, va_list ap)
{
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  struct json_object *o = json_error(error, msg);
  if (field)
    json_object_object_add(o, "field", json_str(field));
  reply_json(r, code, o);
}

void reply_error(struct request *r, int code, const char *error, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  send_error(r, code, error, NULL, fmt, ap);
  va_end(ap);
}

void reply_field_error(struct request *r, int code, const char *field, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  send_error(r, code, "bad_request", field, fmt, ap);
  va_end(ap);
}

void reply_method_not_allowed(struct request *r, const char *allow)
{
  r->ops->add_header(r, "Allow", allow);
  reply_error(r, 405, "method_not_allowed", "this path accepts %s", allow);
}

/* ---- the view a hook gets ---- */

static void add_kv(struct req_view *v, const char *key, const char *value)
{
  if (v->nkv == v->cap) {
    v->cap = v->cap ? v->cap * 2 : 16;
    v->kv = xrealloc(v->kv, v->cap * sizeof(*v->kv));
  }
  v->kv[v->nkv].key = key;
  v->kv[v->nkv++].value = value;
}

struct names {
  struct req_view *v;
  size_t used;
};

static void count_names(void *arg, const char *name, const char *value)
{
  (void)value;
  ((struct names *)arg)->used += strlen(name) + 1;
}

static void add_header(void *arg, const char *name, const char *value)
{
  struct names *n = arg;
  char *lower = n->v->names + n->used;
  size_t len = strlen(name) + 1;
  for (size_t k = 0; k < len; k++)
    lower[k] = (char)tolower((unsigned char)name[k]);
  n->used += len;
  add_kv(n->v, lower, value);
}

/* Cookie: a=1; b=2 (RFC 6265 section 5.4), every Cookie header: the
 * first of a name wins; at most REQ_MAX_COOKIES; pairs without '=' are
 * skipped; a value's surrounding quotes are kept, as browsers send them. */
#define REQ_MAX_COOKIES 64

static void cookie_text(void *arg, const char *name, const char *value)
{
  struct evbuffer *b = arg;
  if (evutil_ascii_strcasecmp(name, "Cookie") == 0)
    evbuffer_add_printf(b, "%s;", value);
}

static void parse_cookies(struct req_view *v, struct request *r)
{
  if (!r->ops->header(r, "Cookie"))
    return;
  struct evbuffer *b = evbuffer_new();
  if (!b)
    alloc_failed(0);
  r->ops->each_header(r, cookie_text, b);
  size_t len = evbuffer_get_length(b);
  if (len) {
    v->cookie_text = xmalloc(len + 1);
    evbuffer_remove(b, v->cookie_text, len);
    v->cookie_text[len] = 0;
    v->cookies = xmalloc(REQ_MAX_COOKIES * sizeof(*v->cookies));
    char *save = NULL;
    for (char *pair = strtok_r(v->cookie_text, ";", &save);
         pair && v->sr.ncookies < REQ_MAX_COOKIES; pair = strtok_r(NULL, ";", &save)) {
      while (*pair == ' ' || *pair == '\t')
        pair++;
      char *eq = strchr(pair, '=');
      if (!eq || eq == pair)
        continue;
      *eq = 0;
      char *end = eq;
      while (end > pair && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = 0;
      char *val = eq + 1;
      while (*val == ' ' || *val == '\t')
        val++;
      end = val + strlen(val);
      while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = 0;
      int seen = 0;
      for (size_t i = 0; i < v->sr.ncookies && !seen; i++)
        seen = strcmp(v->cookies[i].key, pair) == 0;
      if (!seen)
        v->cookies[v->sr.ncookies++] = (struct script_kv){pair, val};
    }
    v->sr.cookies = v->cookies;
  }
  evbuffer_free(b);
}

void req_view_init(struct req_view *v, struct request *r, int with_body)
{
  static atomic_ullong serials;
  memset(v, 0, sizeof(*v));
  v->cap = 16; /* never NULL, even for a request with no header at all */
  v->kv = xmalloc(v->cap * sizeof(*v->kv));
  v->sr.serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
  request_query(r, ""); /* parses the query */
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, &r->args, next)
    add_kv(v, kv->key, kv->value);
  size_t nq = v->nkv;
  struct names n = {v, 0};
  r->ops->each_header(r, count_names, &n);
  v->names = xmalloc(n.used + 1);
  n.used = 0;
  r->ops->each_header(r, add_header, &n);
  snprintf(v->peer, sizeof(v->peer), "%s:%u", r->peer, r->port);
  v->sr.method = r->method_name;
  v->sr.path = r->path;
  v->sr.peer = v->peer;
  v->sr.query = v->kv;
  v->sr.nquery = nq;
  v->sr.headers = v->kv + nq;
  v->sr.nheaders = v->nkv - nq;
  parse_cookies(v, r);
  if (with_body) {
    size_t len = 0;
    const char *body = r->ops->body(r, &len);
    v->sr.body = body && len ? body : "";
    v->sr.body_len = body ? len : 0;
  }
}

void req_view_free(struct req_view *v)
{
  free(v->cookies);
  free(v->cookie_text);
  v->cookies = NULL;
  v->cookie_text = NULL;
  free(v->kv);
  free(v->names);
  v->kv = NULL;
  v->names = NULL;
}

/* ---- credentials ---- */

const char *request_bearer(const struct request *r)
{
  const char *h = r->ops->header(r, "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  h += 7;
  while (*h == ' ')
    h++;
  return *h ? h : NULL;
}

int request_is_publisher(const struct request *r)
{
  const char *key = r->f->gw->publish_key, *got = request_bearer(r);
  unsigned char a[32], b[32];
  if (!key[0] || !got)
    return 0;
  /* Comparing digests keeps the time independent of where they differ and
   * of the length of what the client sent. */
  EVP_Digest(key, strlen(key), a, NULL, EVP_sha256(), NULL);
  EVP_Digest(got, strlen(got), b, NULL, EVP_sha256(), NULL);
  return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static int start_authorize_publish(struct script *s, void *arg, struct script_result *res,
                                   const struct script_wait *wait)
{
  return script_authorize_publish(s, arg, res, wait);
}

int request_authorize_publisher(struct request *r, struct req_view *v)
{
  struct script *s = worker_script(r->f->w);
  if (v->sr.publisher)
    return 0;
  if (script_has(s, HOOK_AUTHORIZE_PUBLISH)) {
    struct script_result res;
    int rc = request_hook(r, HOOK_AUTHORIZE_PUBLISH, start_authorize_publish, &v->sr, &res);
    script_result_free(&res);
    switch (rc) {
    case SCRIPT_OK:
      return 0;
    case SCRIPT_PENDING:
      return -1;
    case SCRIPT_DENY:
      reply_error(r, 403, "forbidden", "%s", res.why);
      return -1;
    default:
      reply_error(r, 500, "script", "authorize_publish failed: %s", res.why);
      return -1;
    }
  }
  if (!request_bearer(r))
    reply_error(r, 401, "auth", "publishing needs Authorization: Bearer <publish key>");
  else
    reply_error(r, 403, "forbidden", "the bearer key is not this gateway's publish key");
  return -1;
}

int request_publisher_start(struct request *r, struct req_view *v, size_t *len)
{
  struct config *cfg = r->f->gw->cfg;
  *len = 0;
  r->ops->body(r, len);
  if (*len > (size_t)cfg->max_body) {
    reply_error(r, 413, "body_too_large", "the body exceeds %ld bytes", cfg->max_body);
    return -1;
  }
  req_view_init(v, r, 1);
  v->sr.publisher = request_is_publisher(r);
  if (request_authorize_publisher(r, v) != 0) {
    req_view_free(v);
    return -1;
  }
  return 0;
}

void request_add_cors(struct request *r)
{
  struct config *cfg = r->f->gw->cfg;
  const char *origin = r->ops->header(r, "Origin");
  if (!origin || cfg->ncors_origin == 0)
    return;
  for (int i = 0; i < cfg->ncors_origin; i++) {
    if (strcmp(cfg->cors_origin[i], "*") == 0) {
      r->ops->add_header(r, "Access-Control-Allow-Origin", "*");
      return;
    }
    if (strcmp(cfg->cors_origin[i], origin) == 0 && strlen(origin) < 256 &&
        !strpbrk(origin, "\r\n")) {
      r->ops->add_header(r, "Access-Control-Allow-Origin", origin);
      r->ops->add_header(r, "Vary", "Origin");
      /* EventSource({withCredentials: true}) sends the token cookie only
       * to an origin that allows credentials (never to "*") */
      if (cfg->token_cookie)
        r->ops->add_header(r, "Access-Control-Allow-Credentials", "true");
      return;
    }
  }
}

void request_new_id(char *buf, size_t cap)
{
  static atomic_ullong request_ids;
  unsigned long long rid = atomic_fetch_add_explicit(&request_ids, 1, memory_order_relaxed) + 1;
  snprintf(buf, cap, "%llx", rid);
}
