/* The HTTP front: routing, limits, CORS, request views for hooks, publisher
 * authorisation and the small endpoints. */
#include "http.h"

#include <ctype.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "client.h"
#include "cluster.h"
#include "conn.h"
#include "hub.h"
#include "jsonutil.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "status.h"
#include "stream.h"
#include "front.h"

const char *http_bearer(struct evhttp_request *req)
{
  const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return NULL;
  h += 7;
  while (*h == ' ')
    h++;
  return *h ? h : NULL;
}

int http_is_publisher(struct front *f, struct evhttp_request *req)
{
  const char *key = f->gw->publish_key, *got = http_bearer(req);
  unsigned char a[32], b[32];
  if (!key[0] || !got)
    return 0;
  /* Comparing digests keeps the time independent of where they differ and
   * of the length of what the client sent. */
  EVP_Digest(key, strlen(key), a, NULL, EVP_sha256(), NULL);
  EVP_Digest(got, strlen(got), b, NULL, EVP_sha256(), NULL);
  return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

int http_authorize_publisher(struct front *f, struct evhttp_request *req, struct req_view *v)
{
  char why[512];
  if (v->sr.publisher)
    return 0;
  if (script_has(worker_script(f->w), HOOK_AUTHORIZE_PUBLISH)) {
    switch (script_authorize_publish(worker_script(f->w), &v->sr, why, sizeof(why))) {
    case SCRIPT_OK:
      return 0;
    case SCRIPT_DENY:
      reply_error(req, 403, "forbidden", "%s", why);
      return -1;
    default:
      reply_error(req, 500, "script", "authorize_publish failed: %s", why);
      return -1;
    }
  }
  if (!http_bearer(req))
    reply_error(req, 401, "auth", "publishing needs Authorization: Bearer <publish key>");
  else
    reply_error(req, 403, "forbidden", "the bearer key is not this gateway's publish key");
  return -1;
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
  static const char *const names[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
                                      "TRACE", "CONNECT", "PATCH"};
  for (int m = 0; m < 9; m++)
    if (cmd == (enum evhttp_cmd_type)(1 << m))
      return names[m];
  return "OTHER";
}

int req_view_init(struct req_view *v, struct front *f, struct evhttp_request *req, int with_body)
{
  static atomic_ullong serials;
  memset(v, 0, sizeof(*v));
  v->sr.serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
  TAILQ_INIT(&v->query);
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
  if (q && evhttp_parse_query_str(q, &v->query) != 0) {
    evhttp_clear_headers(&v->query);
    TAILQ_INIT(&v->query);
  }
  struct evkeyvalq *hs = evhttp_request_get_input_headers(req);
  size_t nq = 0, nh = 0, namebytes = 0;
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, &v->query, next) nq++;
  TAILQ_FOREACH(kv, hs, next) {
    nh++;
    namebytes += strlen(kv->key) + 1;
  }
  v->kv = calloc(nq + nh + 1, sizeof(*v->kv));
  v->names = malloc(namebytes + 1);
  if (!v->kv || !v->names) {
    req_view_free(v);
    return -1;
  }
  size_t i = 0;
  TAILQ_FOREACH(kv, &v->query, next) {
    v->kv[i].key = kv->key;
    v->kv[i++].value = kv->value;
  }
  char *p = v->names;
  TAILQ_FOREACH(kv, hs, next) {
    size_t n = strlen(kv->key) + 1;
    for (size_t k = 0; k < n; k++)
      p[k] = (char)tolower((unsigned char)kv->key[k]);
    v->kv[i].key = p;
    v->kv[i++].value = kv->value;
    p += n;
  }
  unsigned port = 0;
  const char *addr = conns_peer(f->conns, req, &port);
  snprintf(v->peer, sizeof(v->peer), "%s:%u", addr, port);

  v->sr.method = method_name(evhttp_request_get_command(req));
  v->sr.path = uri && evhttp_uri_get_path(uri) ? evhttp_uri_get_path(uri) : "/";
  v->sr.peer = v->peer;
  v->sr.query = v->kv;
  v->sr.nquery = nq;
  v->sr.headers = v->kv + nq;
  v->sr.nheaders = nh;
  if (with_body) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    v->sr.body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    v->sr.body_len = len;
  }
  return 0;
}

void req_view_free(struct req_view *v)
{
  evhttp_clear_headers(&v->query);
  free(v->kv);
  free(v->names);
  v->kv = NULL;
  v->names = NULL;
}

const char *req_view_query(const struct req_view *v, const char *key)
{
  return evhttp_find_header(&v->query, key);
}

const char *http_cors_lines(struct front *f, struct evhttp_request *req, char *buf, size_t cap)
{
  struct config *cfg = f->gw->cfg;
  const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
  buf[0] = '\0';
  if (!origin || cfg->ncors_origin == 0)
    return buf;
  for (int i = 0; i < cfg->ncors_origin; i++) {
    if (strcmp(cfg->cors_origin[i], "*") == 0) {
      snprintf(buf, cap, "Access-Control-Allow-Origin: *\r\n");
      return buf;
    }
    if (strcmp(cfg->cors_origin[i], origin) == 0 && strlen(origin) < 256 &&
        !strpbrk(origin, "\r\n")) {
      snprintf(buf, cap, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
      return buf;
    }
  }
  return buf;
}

const char *http_stream_lines(struct front *f, struct evhttp_request *req, char *buf, size_t cap)
{
  http_cors_lines(f, req, buf, cap);
  const char *rid = evhttp_find_header(evhttp_request_get_output_headers(req), "X-Request-Id");
  size_t used = strlen(buf);
  if (rid && used < cap)
    snprintf(buf + used, cap - used, "X-Request-Id: %s\r\n", rid);
  return buf;
}

struct take {
  struct conns *cs;
  struct evhttp_request *req;
};

static int take_socket(void *arg)
{
  struct take *t = arg;
  return conns_take_socket(t->cs, t->req);
}

int http_open_stream(struct front *f, struct evhttp_request *req, struct client_params *p)
{
  char lines[640], head[1024];
  http_stream_lines(f, req, lines, sizeof(lines));
  int hl = snprintf(head, sizeof(head),
                    "HTTP/1.1 200 OK\r\n"
                    "Content-Type: text/event-stream\r\n"
                    "Cache-Control: no-cache, no-transform\r\n"
                    "X-Accel-Buffering: no\r\n"
                    "%s\r\n", lines);
  struct take t = {f->conns, req};
  p->head = head;
  p->head_len = hl > 0 && (size_t)hl < sizeof(head) ? (size_t)hl : 0;
  p->take = take_socket;
  p->take_arg = &t;
  return client_open(f->streams, p);
}

/* Adds the CORS lines to an evhttp reply. */
static void add_cors(struct front *f, struct evhttp_request *req)
{
  char buf[512];
  char *line = (char *)http_cors_lines(f, req, buf, sizeof(buf));
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  while (*line) {
    char *colon = strchr(line, ':'), *end = strstr(line, "\r\n");
    if (!colon || !end)
      break;
    *colon = '\0';
    *end = '\0';
    evhttp_add_header(h, line, colon + 2);
    line = end + 2;
  }
}

static int header_bytes(struct evhttp_request *req)
{
  size_t n = strlen(evhttp_request_get_uri(req)) + 16;
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    n += strlen(kv->key) + strlen(kv->value) + 4;
  return n > 0x7fffffff ? 0x7fffffff : (int)n;
}

static void handle_healthz(struct front *f, struct evhttp_request *req)
{
  struct gateway *gw = f->gw;
  struct json_object *o = json_object_new_object();
  /* Cluster mode: "starting" (503) until the node has read the stream once;
   * "degraded" (200: streams are served, publishes are refused) while a
   * Redis connection is down. */
  int ready = cluster_ready(gw), healthy = cluster_healthy(gw);
  json_object_object_add(o, "status", json_object_new_string(!ready     ? "starting"
                                                              : !healthy ? "degraded"
                                                                         : "ok"));
  json_object_object_add(o, "connections", json_object_new_int64(atomic_load(&gw->nclients)));
  json_object_object_add(o, "workers", json_object_new_int(gw->nworkers));
  if (gw->cluster)
    json_object_object_add(o, "redis", json_object_new_string(healthy ? "up" : "down"));
  reply_json(req, ready ? 200 : 503, o);
}

static void handle_metrics(struct front *f, struct evhttp_request *req)
{
  struct evbuffer *out = evbuffer_new();
  metrics_render(f->gw, out);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; version=0.0.4");
  evhttp_send_reply(req, 200, "OK", out);
  evbuffer_free(out);
}

static void add_count(const char *ch, size_t n, void *arg)
{
  json_object_object_add(arg, ch, json_object_new_int64((int64_t)n));
}

static void handle_channels(struct front *f, struct evhttp_request *req)
{
  struct gateway *gw = f->gw;
  struct req_view v;
  if (req_view_init(&v, f, req, 0) != 0) {
    reply_error(req, 500, "internal", "out of memory");
    return;
  }
  v.sr.publisher = http_is_publisher(f, req);
  if (http_authorize_publisher(f, req, &v) == 0) {
    const char *one = req_view_query(&v, "channel");
    struct json_object *o = json_object_new_object();
    pthread_mutex_lock(&gw->presence_lock);
    if (one) {
      json_object_object_add(o, "channel", json_object_new_string(one));
      json_object_object_add(o, "subscribers",
                             json_object_new_int64((int64_t)hub_subscribers(gw->presence, one)));
    } else {
      struct json_object *all = json_object_new_object();
      hub_each_channel(gw->presence, add_count, all);
      json_object_object_add(o, "channels", all);
    }
    pthread_mutex_unlock(&gw->presence_lock);
    reply_json(req, 200, o);
  }
  req_view_free(&v);
}

static void handle_token(struct front *f, struct evhttp_request *req)
{
  struct req_view v;
  char why[512], *token = NULL;
  double expires_in = 0;
  if (!script_has(worker_script(f->w), HOOK_ISSUE_TOKEN)) {
    reply_error(req, 404, "not_found", "this gateway's script does not issue tokens (no issue_token hook)");
    return;
  }
  if (req_view_init(&v, f, req, 1) != 0) {
    reply_error(req, 500, "internal", "out of memory");
    return;
  }
  v.sr.publisher = http_is_publisher(f, req);
  switch (script_issue_token(worker_script(f->w), &v.sr, &token, &expires_in, why, sizeof(why))) {
  case SCRIPT_OK: {
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "token", json_object_new_string(token));
    json_object_object_add(o, "expires_in", json_object_new_int64((int64_t)expires_in));
    reply_json(req, 200, o);
    break;
  }
  case SCRIPT_DENY:
    reply_error(req, 403, "forbidden", "%s", why);
    break;
  default:
    reply_error(req, 500, "script", "issue_token failed: %s", why);
  }
  free(token);
  req_view_free(&v);
}

/* The browser client and its demo page, read from --assets per request
 * (small files, fetched once per page load). */
static const struct asset {
  const char *path, *file, *type;
} assets[] = {
    {"/tinysse.js", "tinysse.js", "text/javascript; charset=utf-8"},
    {"/tinysse.wasm", "tinysse.wasm", "application/wasm"},
    {"/tinysse.d.ts", "tinysse.d.ts", "text/plain; charset=utf-8"},
    {"/demo", "demo.html", "text/html; charset=utf-8"},
    {"/demo.html", "demo.html", "text/html; charset=utf-8"},
};

static const struct asset *find_asset(const char *path)
{
  for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
    if (strcmp(path, assets[i].path) == 0)
      return &assets[i];
  return NULL;
}

static void handle_asset(struct front *f, struct evhttp_request *req, const struct asset *a)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", f->gw->cfg->assets, a->file);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0)
      close(fd);
    reply_error(req, 404, "not_found", "the browser client is not built here (see --assets)");
    return;
  }
  struct evbuffer *out = evbuffer_new();
  if (!out || evbuffer_add_file(out, fd, 0, st.st_size) != 0) { /* takes fd */
    evbuffer_free(out);
    reply_error(req, 500, "internal", "cannot read %s", a->file);
    return;
  }
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", a->type);
  evhttp_add_header(h, "Cache-Control", "no-cache");
  evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
  evhttp_send_reply(req, 200, "OK", out);
  evbuffer_free(out);
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
  evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
  reply_error(req, 405, "method_not_allowed", "this path accepts %s", allow);
}

static void route(struct front *f, struct evhttp_request *req, const char *path,
                  enum evhttp_cmd_type cmd);


/* One access-log line: the path only (query strings carry tokens). */
static void log_access(struct evhttp_request *req, void *arg)
{
  (void)arg;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri && evhttp_uri_get_path(uri) && *evhttp_uri_get_path(uri)
                         ? evhttp_uri_get_path(uri) : "/";
  const char *rid = evhttp_find_header(evhttp_request_get_output_headers(req), "X-Request-Id");
  int code = evhttp_request_get_response_code(req);
  char qp[300];
  unsigned port = 0;
  struct worker *cur = worker_current();
  struct front *f = cur ? worker_front(cur) : NULL;
  const char *addr = f ? conns_peer(f->conns, req, &port) : "?";
  log_event(LOG_INFO, "access", "id=%s method=%s path=%s status=%d peer=%s:%u", rid ? rid : "?",
            method_name(evhttp_request_get_command(req)), log_quote(qp, sizeof(qp), path),
            code ? code : 200, addr, port);
}

void http_request_id(char *buf, size_t cap)
{
  static atomic_ullong request_ids;
  unsigned long long rid = atomic_fetch_add_explicit(&request_ids, 1, memory_order_relaxed) + 1;
  snprintf(buf, cap, "%llx", rid);
}

static void on_request(struct evhttp_request *req, void *arg)
{
  struct front *f = arg;
  struct config *cfg = f->gw->cfg;
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri && evhttp_uri_get_path(uri) && *evhttp_uri_get_path(uri)
                         ? evhttp_uri_get_path(uri) : "/";

  int is_stream = cmd == EVHTTP_REQ_GET &&
                  (strcmp(path, cfg->endpoint) == 0 || strcmp(path, "/status/events") == 0);
  int verdict = conns_request_started(f->conns, req, is_stream);
  char rid_text[24];
  http_request_id(rid_text, sizeof(rid_text));
  evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", rid_text);
  STAT_ADD(f->stats->http_requests, 1);
  if (verdict == CONNS_OK) {
    route(f, req, path, cmd);
  } else if (is_stream) {
    add_cors(f, req);
    stream_shed(f, req, SHED_MAX_CONNECTIONS);
  } else {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    if (verdict == CONNS_OVER_LIMIT)
      reply_error(req, 503, "too_many_connections", "this gateway is at its limit of %ld connections",
                  cfg->max_connections);
    else
      reply_error(req, 503, "too_many_connections",
                  "your address holds more than %ld connections other than streams, the limit "
                  "per address", cfg->max_conn_per_peer);
  }
  if (cfg->access_log) {
    /* A publish waiting for Redis (cluster mode) is logged once answered;
     * an accepted stream (no evhttp reply) at once, as 200. */
    if (evhttp_request_get_response_code(req) == 0 && strcmp(path, "/publish") == 0)
      conns_when_answered(f->conns, req, log_access);
    else
      log_access(req, NULL);
  }
}

static void route(struct front *f, struct evhttp_request *req, const char *path,
                  enum evhttp_cmd_type cmd)
{
  struct config *cfg = f->gw->cfg;
  if (header_bytes(req) > cfg->max_header) {
    reply_error(req, 431, "headers_too_large", "the request line and headers exceed %ld bytes",
                cfg->max_header);
    return;
  }
  add_cors(f, req);
  if (cmd == EVHTTP_REQ_OPTIONS) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(h, "Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID");
    evhttp_add_header(h, "Access-Control-Max-Age", "600");
    evhttp_send_reply(req, 204, "No Content", NULL);
    return;
  }

  int is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
  if (strcmp(path, cfg->endpoint) == 0) {
    if (cmd != EVHTTP_REQ_GET)
      method_not_allowed(req, "GET");
    else
      stream_request(f, req);
  } else if (strcmp(path, "/publish") == 0) {
    if (cmd != EVHTTP_REQ_POST)
      method_not_allowed(req, "POST");
    else
      publish_request(f, req);
  } else if (strcmp(path, "/auth/sse-token") == 0) {
    if (cmd != EVHTTP_REQ_POST)
      method_not_allowed(req, "POST");
    else
      handle_token(f, req);
  } else if (strcmp(path, "/healthz") == 0) {
    if (!is_get)
      method_not_allowed(req, "GET, HEAD");
    else
      handle_healthz(f, req);
  } else if (strcmp(path, "/metrics") == 0) {
    if (!is_get)
      method_not_allowed(req, "GET, HEAD");
    else
      handle_metrics(f, req);
  } else if (strcmp(path, "/channels") == 0) {
    if (!is_get)
      method_not_allowed(req, "GET, HEAD");
    else
      handle_channels(f, req);
  } else if (strcmp(path, "/status") == 0) {
    if (!is_get)
      method_not_allowed(req, "GET, HEAD");
    else
      status_page(f, req);
  } else if (strcmp(path, "/status/token") == 0) {
    if (cmd != EVHTTP_REQ_POST)
      method_not_allowed(req, "POST");
    else
      status_token_request(f, req);
  } else if (strcmp(path, "/status/events") == 0) {
    if (cmd != EVHTTP_REQ_GET)
      method_not_allowed(req, "GET");
    else
      status_stream_request(f, req);
  } else if (find_asset(path)) {
    if (!is_get)
      method_not_allowed(req, "GET, HEAD");
    else
      handle_asset(f, req, find_asset(path));
  } else {
    reply_error(req, 404, "not_found", "no such endpoint; see the README for the HTTP API");
  }
}

static struct evhttp *make_evhttp(struct front *f)
{
  struct config *cfg = f->gw->cfg;
  struct evhttp *http = evhttp_new(f->base);
  if (!http)
    return NULL;
  if (!(f->conns = conns_new(f, http))) {
    evhttp_free(http);
    return NULL;
  }
  evhttp_set_gencb(http, on_request, f);
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                       EVHTTP_REQ_PATCH);
  /* evhttp's own limits are a backstop above ours: what lies between gets
   * a JSON 431/413 from us; beyond it libevent answers (or closes) itself. */
  evhttp_set_max_headers_size(http, cfg->max_header * 4);
  evhttp_set_max_body_size(http, cfg->max_body * 2);
  /* conn.c bounds the time to send a whole request and the keep-alive idle
   * time by --request-timeout; evhttp's own timeout, which restarts with
   * every byte, stays behind it as a bound on an answer the peer does not
   * read. A stream leaves both behind when its connection is taken over. */
  double t = cfg->request_timeout + 1;
  struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
  evhttp_set_timeout_tv(http, &tv);
  return http;
}

static int bind_listeners(struct front *f, char *err, size_t errlen)
{
  struct config *cfg = f->gw->cfg;
  unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
  if (f->gw->nworkers > 1)
    flags |= LEV_OPT_REUSEABLE_PORT;
  for (int i = 0; i < cfg->nlisten; i++) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (evutil_parse_sockaddr_port(cfg->listen[i], (struct sockaddr *)&ss, &len) != 0 ||
        strchr(cfg->listen[i], ':') == NULL) {
      snprintf(err, errlen, "--listen: expected ADDR:PORT (e.g. 127.0.0.1:8080), got '%s'",
               cfg->listen[i]);
      return -1;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(f->base, NULL, NULL, flags, 4096, (struct sockaddr *)&ss, len);
    if (!l) {
      snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen[i], strerror(errno));
      return -1;
    }
    struct evhttp_bound_socket *b = evhttp_bind_listener(f->http, l);
    if (!b) {
      evconnlistener_free(l);
      snprintf(err, errlen, "cannot serve HTTP on %s", cfg->listen[i]);
      return -1;
    }
    conns_watch_listener(f->conns, l);
    f->bound[f->nbound++] = b;
  }
  return 0;
}

static void front_close(void *arg)
{
  struct front *f = arg;
  if (f->http)
    evhttp_free(f->http); /* closes its connections, idle keep-alive ones too */
  conns_free(f->conns);
  free(f);
}

static void *front_open(struct worker *w, char *err, size_t errlen)
{
  struct front *f = xcalloc(1, sizeof(*f));
  *f = (struct front){.w = w, .gw = worker_gateway(w), .base = worker_base(w),
                      .stats = worker_counters(w), .streams = worker_clients(w),
                      .index = worker_index(w)};
  if (!(f->http = make_evhttp(f))) {
    snprintf(err, errlen, "out of memory");
    front_close(f);
    return NULL;
  }
  if (bind_listeners(f, err, errlen) != 0) {
    front_close(f);
    return NULL;
  }
  return f;
}

static void front_stop_accepting(void *arg)
{
  struct front *f = arg;
  for (int i = 0; i < f->nbound; i++)
    evhttp_del_accept_socket(f->http, f->bound[i]);
  f->nbound = 0;
}

static void front_tick(void *arg, double now) { status_tick(arg, now); }

const struct worker_front_ops http_front_ops = {front_open, front_stop_accepting, front_tick,
                                                front_close};
