/* The HTTP client's calls (see httpc.h): URL and header checks, the queue
 * in front of max_inflight, each call's timeout, cancellation, shutdown.
 * The wire side (connections, keep-alive, TLS) is httpc_conn.c. Work that
 * must not run inside the caller's frame (errors found by httpc_request,
 * starting queued calls, freeing connections) waits for one deferred
 * "kick" event, so done() never runs inside httpc_request. */
#include "httpc_impl.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "alloc.h"

#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_MAX_BODY (1024 * 1024)

double httpc_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void httpc_kick(struct httpc *c)
{
  event_active(c->kick, EV_TIMEOUT, 0);
}

static void free_call(struct httpc_call *call)
{
  event_free(call->timer);
  free(call->host);
  free(call->target);
  free(call->key);
  free(call->host_header);
  free(call->headers);
  free(call->body);
  free(call);
}

/* Takes the call out of whichever list holds it. */
static void unlink_call(struct httpc_call *call)
{
  struct httpc *c = call->c;
  switch (call->state) {
  case CALL_QUEUED:
    TAILQ_REMOVE(&c->queue, call, link);
    c->nqueued--;
    break;
  case CALL_ACTIVE:
    TAILQ_REMOVE(&c->active, call, link);
    c->ninflight--;
    httpc_kick(c); /* a slot is free for the queue */
    break;
  case CALL_FAILING:
    TAILQ_REMOVE(&c->failing, call, link);
    break;
  case CALL_DONE:
    break;
  }
}

void httpc_finish(struct httpc_call *call, struct httpc_result *res)
{
  struct httpc *c = call->c;
  unlink_call(call);
  if (res->error) {
    c->st.failures++;
    if (strcmp(res->error, "timeout") == 0)
      c->st.timeouts++;
  }
  if (!res->detail)
    res->detail = "";
  if (!res->body)
    res->body = "";
  res->elapsed = httpc_now() - call->started;
  call->state = CALL_DONE;
  call->done(call->arg, res);
  free_call(call);
}

static void finish_error(struct httpc_call *call, const char *error, const char *detail)
{
  struct httpc_result res = {.error = error, .detail = detail};
  httpc_finish(call, &res);
}

void httpc_fail(struct httpc_call *call, const char *error, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(call->detail, sizeof(call->detail), fmt, ap);
  va_end(ap);
  finish_error(call, error, call->detail);
}

void httpc_requeue(struct httpc_call *call)
{
  struct httpc *c = call->c;
  unlink_call(call);
  call->state = CALL_QUEUED;
  call->fresh = 1;
  TAILQ_INSERT_HEAD(&c->queue, call, link);
  c->nqueued++;
  httpc_kick(c);
}

/* An error found before the call reached the queue, delivered from the
 * loop; call->detail is already written. */
static void fail_later(struct httpc_call *call, const char *error)
{
  call->error = error;
  call->state = CALL_FAILING;
  TAILQ_INSERT_TAIL(&call->c->failing, call, link);
  httpc_kick(call->c);
}

/* Starts queued calls while slots are free. */
static void pump(struct httpc *c)
{
  struct httpc_call *call;
  while (!c->closing && c->ninflight < c->o.max_inflight && (call = TAILQ_FIRST(&c->queue))) {
    TAILQ_REMOVE(&c->queue, call, link);
    c->nqueued--;
    call->state = CALL_ACTIVE;
    TAILQ_INSERT_TAIL(&c->active, call, link);
    c->ninflight++;
    if (httpc_conn_start(c, call) < 0) {
      TAILQ_REMOVE(&c->active, call, link);
      c->ninflight--;
      call->state = CALL_FAILING;
      TAILQ_INSERT_TAIL(&c->failing, call, link);
      httpc_kick(c);
    }
  }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
  struct httpc *c = arg;
  struct httpc_call *call;
  while ((call = TAILQ_FIRST(&c->failing)))
    finish_error(call, call->error, call->detail);
  httpc_conn_reap(c, 0);
  pump(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
  struct httpc_call *call = arg;
  if (call->state == CALL_FAILING) {
    finish_error(call, call->error, call->detail);
    return;
  }
  if (call->state == CALL_ACTIVE)
    httpc_conn_detach(call); /* cancels the request on the wire */
  httpc_fail(call, "timeout", "no answer from %s within %.3g s%s", call->key, call->timeout,
             call->state == CALL_QUEUED ? " (still queued)" : "");
}

static const struct {
  const char *name;
  enum evhttp_cmd_type type;
} methods[] = {
    {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST},   {"PUT", EVHTTP_REQ_PUT},
    {"DELETE", EVHTTP_REQ_DELETE},   {"HEAD", EVHTTP_REQ_HEAD},   {"PATCH", EVHTTP_REQ_PATCH},
    {"OPTIONS", EVHTTP_REQ_OPTIONS},
};

static int parse_method(const char *m, enum evhttp_cmd_type *out)
{
  for (size_t i = 0; m && i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strcasecmp(m, methods[i].name) == 0) {
      *out = methods[i].type;
      return 0;
    }
  return -1;
}

/* Splits url into the call's host, port, target, pool key and Host header;
 * -1 with call->detail set. */
static int parse_url(struct httpc_call *call, const char *url)
{
  struct evhttp_uri *u = url ? evhttp_uri_parse_with_flags(url, 0) : NULL;
  const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
  const char *host = u ? evhttp_uri_get_host(u) : NULL;
  int ret = -1;
  if (!u || !scheme) {
    snprintf(call->detail, sizeof(call->detail), "not an absolute URL");
    goto done;
  }
  if (strcasecmp(scheme, "https") == 0)
    call->tls = 1;
  else if (strcasecmp(scheme, "http") != 0) {
    snprintf(call->detail, sizeof(call->detail), "scheme is not http or https");
    goto done;
  }
  if (!host || !*host || evhttp_uri_get_userinfo(u)) {
    snprintf(call->detail, sizeof(call->detail), "%s", host && *host ? "user info in URL is not supported" : "no host in URL");
    goto done;
  }
  int port = evhttp_uri_get_port(u);
  if (port == 0 || port > 65535) {
    snprintf(call->detail, sizeof(call->detail), "bad port");
    goto done;
  }
  int dflt = call->tls ? 443 : 80;
  call->port = port < 0 ? dflt : port;
  size_t hl = strlen(host);
  int v6 = host[0] == '[';
  if (v6) {
    unsigned char a[16];
    char bare[64];
    if (hl < 3 || hl - 2 >= sizeof(bare) || host[hl - 1] != ']')
      goto bad_host;
    memcpy(bare, host + 1, hl - 2);
    bare[hl - 2] = '\0';
    if (inet_pton(AF_INET6, bare, a) != 1)
      goto bad_host;
    call->host = xstrdup(bare);
  } else {
    call->host = xstrdup(host);
  }
  const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
  if (!path || !*path)
    path = "/";
  size_t tl = strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
  call->target = xmalloc(tl);
  snprintf(call->target, tl, "%s%s%s", path, query ? "?" : "", query ? query : "");
  /* host as written in the URL: brackets kept, case folded by nobody */
  size_t kl = hl + 32;
  call->key = xmalloc(kl);
  snprintf(call->key, kl, "%s://%s:%d", call->tls ? "https" : "http", host, call->port);
  call->host_header = xmalloc(kl);
  if (call->port == dflt)
    snprintf(call->host_header, kl, "%s", host);
  else
    snprintf(call->host_header, kl, "%s:%d", host, call->port);
  ret = 0;
  goto done;
bad_host:
  snprintf(call->detail, sizeof(call->detail), "bad IPv6 literal");
done:
  if (u)
    evhttp_uri_free(u);
  return ret;
}

static int is_tchar(unsigned char ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The headers the client sets itself, whatever the caller says. */
static int reserved_header(const char *name)
{
  static const char *const own[] = {"Host", "Content-Length", "Connection", "Transfer-Encoding"};
  for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
    if (strcasecmp(name, own[i]) == 0)
      return 1;
  return 0;
}

/* Copies the caller's headers into one block; -1 with call->detail set. */
static int copy_headers(struct httpc_call *call, const struct httpc_header *h, size_t n)
{
  size_t bytes = 0, kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (!h[i].name || !*h[i].name || !h[i].value) {
      snprintf(call->detail, sizeof(call->detail), "header %zu has no name or value", i + 1);
      return -1;
    }
    for (const char *p = h[i].name; *p; p++)
      if (!is_tchar((unsigned char)*p)) {
        snprintf(call->detail, sizeof(call->detail), "header %zu: bad character in name", i + 1);
        return -1;
      }
    /* the value is never quoted back: it may be a secret */
    if (strpbrk(h[i].value, "\r\n")) {
      snprintf(call->detail, sizeof(call->detail), "header %zu: line break in value", i + 1);
      return -1;
    }
    if (reserved_header(h[i].name))
      continue;
    kept++;
    bytes += strlen(h[i].name) + strlen(h[i].value) + 2;
  }
  call->headers = xmalloc(kept * sizeof(*call->headers) + bytes);
  char *s = (char *)(call->headers + kept);
  for (size_t i = 0; i < n; i++) {
    if (reserved_header(h[i].name))
      continue;
    struct httpc_header *d = &call->headers[call->nheaders++];
    size_t nl = strlen(h[i].name) + 1, vl = strlen(h[i].value) + 1;
    d->name = memcpy(s, h[i].name, nl);
    d->value = memcpy(s + nl, h[i].value, vl);
    s += nl + vl;
  }
  return 0;
}

struct httpc_call *httpc_request(struct httpc *c, const char *method, const char *url,
                                 const struct httpc_header *headers, size_t nheaders,
                                 const char *body, size_t body_len, double timeout,
                                 httpc_done_fn done, void *arg)
{
  struct httpc_call *call = xcalloc(1, sizeof(*call));
  call->c = c;
  call->done = done;
  call->arg = arg;
  call->started = httpc_now();
  call->timeout = timeout > 0 ? timeout : DEFAULT_TIMEOUT;
  c->st.requests++;
  call->timer = evtimer_new(c->base, on_timeout, call);
  if (!call->timer)
    alloc_failed(sizeof(struct event *));
  double t = call->timeout;
  struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
  evtimer_add(call->timer, &tv);

  if (parse_method(method, &call->method) < 0) {
    snprintf(call->detail, sizeof(call->detail), "unsupported method");
    fail_later(call, "bad_request");
    return call;
  }
  if (parse_url(call, url) < 0) {
    fail_later(call, "bad_url");
    return call;
  }
  if (copy_headers(call, headers, nheaders) < 0) {
    fail_later(call, "bad_request");
    return call;
  }
  if (body_len) {
    call->body = xmalloc(body_len);
    memcpy(call->body, body, body_len);
    call->body_len = body_len;
  }
  /* What would wait once free slots are taken: at most max_queue. */
  size_t free_slots = c->o.max_inflight > c->ninflight ? c->o.max_inflight - c->ninflight : 0;
  if (!c->closing && c->nqueued >= free_slots && c->nqueued - free_slots >= c->o.max_queue) {
    snprintf(call->detail, sizeof(call->detail), "%zu calls in flight and %zu queued",
             c->ninflight, c->nqueued);
    fail_later(call, "queue_full");
    return call;
  }
  call->state = CALL_QUEUED;
  TAILQ_INSERT_TAIL(&c->queue, call, link);
  c->nqueued++;
  httpc_kick(c);
  return call;
}

void httpc_cancel(struct httpc_call *call)
{
  if (!call || call->state == CALL_DONE)
    return; /* from inside its own done(): nothing left to drop */
  if (call->state == CALL_ACTIVE)
    httpc_conn_detach(call);
  unlink_call(call);
  free_call(call);
}

struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *o, char *err,
                        size_t errlen)
{
  struct httpc *c = xcalloc(1, sizeof(*c));
  c->base = base;
  c->o = *o;
  if (!c->o.max_inflight)
    c->o.max_inflight = 1;
  if (!c->o.max_body)
    c->o.max_body = DEFAULT_MAX_BODY;
  if (c->o.idle_timeout < 0)
    c->o.idle_timeout = 0;
  TAILQ_INIT(&c->queue);
  TAILQ_INIT(&c->active);
  TAILQ_INIT(&c->failing);
  TAILQ_INIT(&c->conns);
  TAILQ_INIT(&c->idle);
  c->kick = event_new(base, -1, 0, on_kick, c);
  if (!c->kick)
    alloc_failed(sizeof(struct event *));
  if (o->ca_file)
    c->o.ca_file = c->ca_file = xstrdup(o->ca_file);
  /* Loaded now (the system bundle takes some 50 ms): a bad path shows at
   * startup, and no call stalls the loop loading it. */
  if (!httpc_tls_ctx(c, err, errlen)) {
    httpc_free(c);
    return NULL;
  }
  return c;
}

void httpc_free(struct httpc *c)
{
  if (!c)
    return;
  c->closing = 1;
  struct httpc_call *call;
  /* done() may make new calls: they land in the queue and end here too */
  for (;;) {
    if ((call = TAILQ_FIRST(&c->active))) {
      httpc_conn_detach(call);
      finish_error(call, "shutdown", "the client is shutting down");
    } else if ((call = TAILQ_FIRST(&c->queue))) {
      finish_error(call, "shutdown", "the client is shutting down");
    } else if ((call = TAILQ_FIRST(&c->failing))) {
      finish_error(call, call->error, call->detail);
    } else {
      break;
    }
  }
  httpc_conn_reap(c, 1);
  httpc_dns_release(c);
  SSL_CTX_free(c->ssl_ctx);
  event_free(c->kick);
  free(c->ca_file);
  free(c);
}

void httpc_get_stats(const struct httpc *c, struct httpc_stats *out)
{
  *out = c->st;
  out->queued_now = c->nqueued;
  out->inflight_now = c->ninflight;
}
