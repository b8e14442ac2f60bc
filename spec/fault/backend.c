/* A fake app backend for the end-to-end specs of script call-outs
 * (tinysse.http, tinysse.jwks): slow answers, answers that never come,
 * garbage instead of HTTP, an echo, a token endpoint for
 * scripts/backend_auth.lua, a JWKS file served live, and request counters.
 * Loopback only and bounded in time. Routes and options: see usage(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define PENDING_MAX 4096          /* answers waiting on a timer; more get 503 at once */
#define DELAY_MAX_MS 600000       /* no answer waits longer than 10 minutes */
#define TEXT_MAX 4096             /* /delay's body= */
#define BODY_MAX (64 * 1024)      /* request bodies */
#define HEADERS_MAX (16 * 1024)   /* request headers */
#define JWKS_FILE_MAX (1024 * 1024)
#define GARBAGE "\x16\x03\x01 this is not HTTP \xff\xfe\r\n\r\n"

/* An answer that is not sent yet: /delay, /hang, a delayed /auth or /jwks,
 * /garbage. evhttp stops reading a connection once it has a request, so it
 * would not notice the client leaving; `watch` does, and frees the
 * connection (with its request) when it goes. */
struct pending {
  struct pending *prev, *next;
  struct evhttp_request *req;
  struct evhttp_connection *evcon;
  struct event *timer, *watch;
  int status, garbage;
  const char *ctype;
  struct evbuffer *body;
};

struct route {
  const char *path;
  void (*handle)(struct evhttp_request *req, struct evkeyvalq *query);
  unsigned long hits;
};

static struct event_base *base;
static struct pending *pendings;
static long npending, max_seconds = 600;
static unsigned long nrequests, nconnections, nabandoned, nother;
static const char *jwks_file;

static void pending_free(struct pending *p)
{
  if (p->prev)
    p->prev->next = p->next;
  else
    pendings = p->next;
  if (p->next)
    p->next->prev = p->prev;
  event_free(p->timer);
  event_free(p->watch);
  evbuffer_free(p->body);
  npending--;
  free(p);
}

static void pending_fire(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct pending *p = arg;
  struct evhttp_request *req = p->req;
  struct evhttp_connection *evcon = p->evcon;
  if (p->garbage) {
    /* Straight to the socket: the bufferevent is idle between requests. */
    int s = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    ssize_t n = write(s, GARBAGE, sizeof(GARBAGE) - 1);
    (void)n; /* the client may be gone already; it gets the close either way */
    pending_free(p);
    evhttp_connection_free(evcon);
    return;
  }
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", p->ctype);
  evhttp_send_reply(req, p->status, NULL, p->body);
  pending_free(p);
}

/* The client's socket became readable while its answer waits: EOF or an
 * error means it left. Bytes (a pipelined request) are left for evhttp. */
static void pending_watch(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct pending *p = arg;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n > 0) {
    event_del(p->watch);
    return;
  }
  struct evhttp_connection *evcon = p->evcon;
  nabandoned++;
  pending_free(p);
  evhttp_connection_free(evcon);
}

/* Answers req after ms milliseconds (never when ms < 0); takes body. */
static void reply_later(struct evhttp_request *req, long ms, int status, const char *ctype, struct evbuffer *body,
                        int garbage)
{
  if (npending >= PENDING_MAX) {
    evbuffer_free(body);
    evhttp_send_reply(req, 503, "Too Many Pending", NULL);
    return;
  }
  struct pending *p = calloc(1, sizeof(*p));
  if (!p)
    abort();
  p->req = req;
  p->evcon = evhttp_request_get_connection(req);
  p->status = status;
  p->ctype = ctype;
  p->body = body;
  p->garbage = garbage;
  p->timer = evtimer_new(base, pending_fire, p);
  int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->evcon));
  p->watch = event_new(base, fd, EV_READ | EV_PERSIST, pending_watch, p);
  if (!p->timer || !p->watch)
    abort();
  p->next = pendings;
  if (pendings)
    pendings->prev = p;
  pendings = p;
  npending++;
  event_add(p->watch, NULL);
  if (ms >= 0) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
  }
}

static void reply_now(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  evbuffer_add(b, body, strlen(body));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
  evhttp_send_reply(req, status, NULL, b);
  evbuffer_free(b);
}

/* A JSON string for len bytes of s. Bytes >= 0x80 pass as they are. */
static void json_str(struct evbuffer *out, const char *s, size_t len)
{
  evbuffer_add(out, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      evbuffer_add_printf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      evbuffer_add_printf(out, "\\u%04x", c);
    else
      evbuffer_add(out, &c, 1);
  }
  evbuffer_add(out, "\"", 1);
}

static void json_cstr(struct evbuffer *out, const char *s) { json_str(out, s, strlen(s)); }

/* A query parameter as a number in [lo, hi], or def when absent; -1 when it
 * is there but not such a number. */
static long query_long(struct evkeyvalq *q, const char *name, long def, long lo, long hi)
{
  const char *v = evhttp_find_header(q, name);
  if (!v)
    return def;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  return *v && !*end && !errno && n >= lo && n <= hi ? n : -1;
}

static void handle_delay(struct evhttp_request *req, struct evkeyvalq *q)
{
  long ms = query_long(q, "ms", 0, 0, DELAY_MAX_MS);
  long status = query_long(q, "status", 200, 100, 599);
  const char *text = evhttp_find_header(q, "body");
  if (!text)
    text = "ok";
  if (ms < 0 || status < 0 || strlen(text) > TEXT_MAX) {
    reply_now(req, 400, "text/plain", "ms=0..600000, status=100..599, body up to 4096 bytes\n");
    return;
  }
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  evbuffer_add(b, text, strlen(text));
  reply_later(req, ms, (int)status, "text/plain", b, 0);
}

static void handle_hang(struct evhttp_request *req, struct evkeyvalq *q)
{
  (void)q;
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  reply_later(req, -1, 200, "text/plain", b, 0);
}

static void handle_garbage(struct evhttp_request *req, struct evkeyvalq *q)
{
  (void)q;
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  reply_later(req, 0, 0, NULL, b, 1);
}

static const char *method_name(enum evhttp_cmd_type m)
{
  switch (m) {
  case EVHTTP_REQ_GET: return "GET";
  case EVHTTP_REQ_POST: return "POST";
  case EVHTTP_REQ_HEAD: return "HEAD";
  case EVHTTP_REQ_PUT: return "PUT";
  case EVHTTP_REQ_DELETE: return "DELETE";
  case EVHTTP_REQ_OPTIONS: return "OPTIONS";
  case EVHTTP_REQ_TRACE: return "TRACE";
  case EVHTTP_REQ_CONNECT: return "CONNECT";
  case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "OTHER";
}

/* {"method","uri","headers":{lower-case name: value},"body"}; a repeated
 * header appears once per copy (JSON decoders keep the last). */
static void handle_echo(struct evhttp_request *req, struct evkeyvalq *q)
{
  (void)q;
  struct evbuffer *out = evbuffer_new(), *in = evhttp_request_get_input_buffer(req);
  if (!out)
    abort();
  evbuffer_add_printf(out, "{\"method\":\"%s\",\"uri\":", method_name(evhttp_request_get_command(req)));
  json_cstr(out, evhttp_request_get_uri(req));
  evbuffer_add_printf(out, ",\"headers\":{");
  struct evkeyval *h;
  int first = 1;
  TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next) {
    char name[256];
    size_t n = strlen(h->key);
    if (n >= sizeof(name))
      n = sizeof(name) - 1;
    for (size_t i = 0; i < n; i++)
      name[i] = (char)((h->key[i] >= 'A' && h->key[i] <= 'Z') ? h->key[i] + 32 : h->key[i]);
    name[n] = '\0';
    if (!first)
      evbuffer_add(out, ",", 1);
    first = 0;
    json_cstr(out, name);
    evbuffer_add(out, ":", 1);
    json_cstr(out, h->value);
  }
  evbuffer_add_printf(out, "},\"body\":");
  size_t len = evbuffer_get_length(in);
  json_str(out, len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "", len);
  evbuffer_add(out, "}", 1);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, 200, NULL, out);
  evbuffer_free(out);
}

/* The token from "Authorization: Bearer T", else from the session cookie;
 * copied into buf (NUL-terminated), or NULL. */
static const char *auth_token(struct evhttp_request *req, char *buf, size_t size)
{
  struct evkeyvalq *hs = evhttp_request_get_input_headers(req);
  const char *a = evhttp_find_header(hs, "Authorization"), *t = NULL, *c;
  size_t n = 0;
  if (a && strncasecmp(a, "Bearer ", 7) == 0) {
    t = a + 7;
    n = strlen(t);
  } else if ((c = evhttp_find_header(hs, "Cookie"))) {
    for (const char *p = c; *p;) {
      while (*p == ' ' || *p == ';')
        p++;
      size_t len = strcspn(p, ";");
      if (len > 8 && strncmp(p, "session=", 8) == 0) {
        t = p + 8;
        n = len - 8;
        break;
      }
      p += len;
    }
  }
  if (!t || n == 0 || n >= size)
    return NULL;
  memcpy(buf, t, n);
  buf[n] = '\0';
  return buf;
}

static int name_ok(const char *s)
{
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-_.", *s)))
      return 0;
  return 1;
}

/* Tokens look like user:<id>:<role>[:<ms delay>]; "deny" is refused with
 * 403, anything else with 401. ?expires_in=N changes the lifetime given. */
static void handle_auth(struct evhttp_request *req, struct evkeyvalq *q)
{
  char buf[512];
  const char *tok = auth_token(req, buf, sizeof(buf));
  long expires_in = query_long(q, "expires_in", 3600, 0, 100000000);
  long ms = query_long(q, "delay_ms", 0, 0, DELAY_MAX_MS); /* for all tokens (benchmarks) */
  if (tok && strcmp(tok, "deny") == 0) {
    reply_now(req, 403, "application/json", "{\"error\":\"denied\"}");
    return;
  }
  char *f[4] = {0};
  int nf = 0;
  if (tok && strncmp(buf, "user:", 5) == 0) {
    char *save = NULL;
    for (char *s = strtok_r(buf + 5, ":", &save); s && nf < 4; s = strtok_r(NULL, ":", &save))
      f[nf++] = s;
  }
  if (nf == 1)
    f[nf++] = "member"; /* user:<id> alone: the default role */
  if (nf == 3) {
    char *end;
    ms = strtol(f[2], &end, 10);
    if (*end || ms < 0 || ms > DELAY_MAX_MS)
      nf = 0;
  }
  if ((nf != 2 && nf != 3) || !name_ok(f[0]) || !name_ok(f[1]) || expires_in < 0 || ms < 0) {
    reply_now(req, 401, "application/json", "{\"error\":\"invalid token\"}");
    return;
  }
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  evbuffer_add_printf(b, "{\"user\":\"%s\",\"role\":\"%s\",\"channels\":[\"user:%s\",\"all\"],\"expires_in\":%ld}",
                      f[0], f[1], f[0], expires_in);
  reply_later(req, ms, 200, "application/json", b, 0);
}

/* The --jwks-file as it is now, so a spec rotates keys by rewriting it. */
static void handle_jwks(struct evhttp_request *req, struct evkeyvalq *q)
{
  long ms = query_long(q, "delay_ms", 0, 0, DELAY_MAX_MS);
  FILE *f = jwks_file ? fopen(jwks_file, "rb") : NULL;
  if (!f || ms < 0) {
    if (f)
      fclose(f);
    reply_now(req, ms < 0 ? 400 : 503, "application/json",
              ms < 0 ? "{\"error\":\"delay_ms=0..600000\"}" : "{\"error\":\"no jwks file\"}");
    return;
  }
  struct evbuffer *b = evbuffer_new();
  char chunk[8192];
  size_t n, total = 0;
  if (!b)
    abort();
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && total <= JWKS_FILE_MAX) {
    evbuffer_add(b, chunk, n);
    total += n;
  }
  fclose(f);
  if (total > JWKS_FILE_MAX) {
    evbuffer_free(b);
    reply_now(req, 500, "application/json", "{\"error\":\"jwks file over 1 MiB\"}");
    return;
  }
  reply_later(req, ms, 200, "application/json", b, 0);
}

static void handle_stats(struct evhttp_request *req, struct evkeyvalq *q);
static void handle_reset(struct evhttp_request *req, struct evkeyvalq *q);

/* /stats and /reset are not counted, so reading the counters leaves them be. */
static struct route routes[] = {
    {"/delay", handle_delay, 0}, {"/hang", handle_hang, 0}, {"/garbage", handle_garbage, 0},
    {"/echo", handle_echo, 0},   {"/auth", handle_auth, 0}, {"/jwks", handle_jwks, 0},
    {"/stats", handle_stats, 0}, {"/reset", handle_reset, 0},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static void handle_stats(struct evhttp_request *req, struct evkeyvalq *q)
{
  (void)q;
  struct evbuffer *b = evbuffer_new();
  if (!b)
    abort();
  evbuffer_add_printf(b, "{\"requests\":%lu,\"connections\":%lu,\"pending\":%ld,\"abandoned\":%lu,\"by_path\":{",
                      nrequests, nconnections, npending, nabandoned);
  const char *sep = "";
  for (size_t i = 0; i < NROUTES; i++) {
    if (routes[i].hits) {
      evbuffer_add_printf(b, "%s\"%s\":%lu", sep, routes[i].path, routes[i].hits);
      sep = ",";
    }
  }
  if (nother)
    evbuffer_add_printf(b, "%s\"other\":%lu", sep, nother);
  evbuffer_add(b, "}}", 2);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, 200, NULL, b);
  evbuffer_free(b);
}

static void handle_reset(struct evhttp_request *req, struct evkeyvalq *q)
{
  (void)q;
  nrequests = nconnections = nabandoned = nother = 0;
  for (size_t i = 0; i < NROUTES; i++)
    routes[i].hits = 0;
  reply_now(req, 200, "application/json", "{\"ok\":true}");
}

static void on_request(struct evhttp_request *req, void *arg)
{
  (void)arg;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
  struct evkeyvalq q;
  TAILQ_INIT(&q);
  if (query && evhttp_parse_query_str(query, &q) != 0) {
    evhttp_clear_headers(&q);
    reply_now(req, 400, "text/plain", "bad query\n");
    return;
  }
  struct route *r = NULL;
  for (size_t i = 0; path && i < NROUTES; i++)
    if (strcmp(path, routes[i].path) == 0)
      r = &routes[i];
  if (!r || (r->handle != handle_stats && r->handle != handle_reset)) {
    nrequests++;
    if (r)
      r->hits++;
    else
      nother++;
  }
  if (r)
    r->handle(req, &q);
  else
    reply_now(req, 404, "text/plain", "no such route\n");
  evhttp_clear_headers(&q);
}

/* evhttp asks for a bufferevent per accepted connection: count them here. */
static struct bufferevent *on_connection(struct event_base *b, void *arg)
{
  (void)arg;
  nconnections++;
  return bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  fprintf(stderr, "backend: event=exit reason=%s requests=%lu connections=%lu abandoned=%lu\n", (const char *)arg,
          nrequests, nconnections, nabandoned);
  event_base_loopbreak(base);
}

static void usage(const char *argv0)
{
  fprintf(stderr,
          "usage: %s --port N [--jwks-file F] [--max-seconds S]\n"
          "  listens on 127.0.0.1:N (0 picks a port), prints port=N on stdout once\n"
          "  listening, exits on SIGTERM/SIGINT or after S seconds (default 600).\n"
          "routes:\n"
          "  /delay?ms=N[&status=S][&body=TEXT]  answer after N ms (default 200, \"ok\")\n"
          "  /hang                               never answer\n"
          "  /garbage                            write non-HTTP bytes and close\n"
          "  /echo                               {method, uri, headers, body} as JSON\n"
          "  /auth[?expires_in=N][&delay_ms=N]   Bearer (or session cookie)\n"
          "                                      user:<id>:<role>[:<ms>] -> 200 JSON,\n"
          "                                      deny -> 403, else 401\n"
          "  /jwks[?delay_ms=N]                  the --jwks-file now (503 when missing)\n"
          "  /stats, /reset                      request and connection counters\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv)
{
  long port = -1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc)
      usage(argv[0]);
    const char *k = argv[i], *v = argv[++i];
    char *end;
    if (strcmp(k, "--jwks-file") == 0) {
      jwks_file = v;
      continue;
    }
    long n = strtol(v, &end, 10);
    if (*end || !*v || n < 0)
      usage(argv[0]);
    if (strcmp(k, "--port") == 0 && n <= 65535)
      port = n;
    else if (strcmp(k, "--max-seconds") == 0 && n > 0)
      max_seconds = n;
    else
      usage(argv[0]);
  }
  if (port < 0)
    usage(argv[0]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);

  base = event_base_new();
  struct evhttp *http = base ? evhttp_new(base) : NULL;
  if (!http)
    abort();
  evhttp_set_gencb(http, on_request, NULL);
  evhttp_set_bevcb(http, on_connection, NULL);
  evhttp_set_max_body_size(http, BODY_MAX);
  evhttp_set_max_headers_size(http, HEADERS_MAX);
  evhttp_set_timeout(http, (int)max_seconds); /* idle keep-alive connections */
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                       EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
  if (!bound) {
    fprintf(stderr, "backend: cannot listen on 127.0.0.1:%ld: %s\n", port, strerror(errno));
    return 1;
  }
  struct sockaddr_in sin;
  socklen_t slen = sizeof(sin);
  if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen) != 0) {
    perror("backend: getsockname");
    return 1;
  }
  printf("port=%d\n", ntohs(sin.sin_port));

  struct timeval limit = {max_seconds, 0};
  struct event *deadline = evtimer_new(base, on_stop, "max_seconds");
  struct event *term = evsignal_new(base, SIGTERM, on_stop, "SIGTERM");
  struct event *intr = evsignal_new(base, SIGINT, on_stop, "SIGINT");
  evtimer_add(deadline, &limit);
  event_add(term, NULL);
  event_add(intr, NULL);
  event_base_dispatch(base);

  while (pendings) {
    struct evhttp_connection *evcon = pendings->evcon;
    pending_free(pendings);
    evhttp_connection_free(evcon);
  }
  evhttp_free(http);
  event_free(deadline);
  event_free(term);
  event_free(intr);
  event_base_free(base);
  return 0;
}
