/* Unit tests for core/httpc.c: the HTTP client against evhttp servers on
 * 127.0.0.1 in the same event loop (plain and TLS with certificates made
 * by the openssl CLI at test time): round trips, keep-alive, the in-flight
 * limit and queue, timeouts, cancel, body cap, connect and TLS failures,
 * shutdown, and a server closing a kept-alive connection. */
#include "check.h"
#include "httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

static struct event_base *base;

/* ---- the test servers ---- */

#define MAX_SEEN 64
struct server {
  struct evhttp *http;
  int port;
  SSL_CTX *ssl;
  struct evhttp_connection *live[MAX_SEEN]; /* open server-side connections */
  unsigned long accepted, now, max_now;
  struct evhttp_connection *last; /* connection of the latest request */
  struct evhttp_request *never[MAX_SEEN];
  size_t nnever;
};
static struct server plain, tls_good, tls_other;

static void on_server_close(struct evhttp_connection *evcon, void *arg)
{
  struct server *s = arg;
  for (int i = 0; i < MAX_SEEN; i++)
    if (s->live[i] == evcon)
      s->live[i] = NULL;
  if (s->last == evcon)
    s->last = NULL;
}

/* Counts a connection the first time one of its requests arrives. */
static void note_conn(struct server *s, struct evhttp_request *req)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  s->last = evcon;
  for (int i = 0; i < MAX_SEEN; i++)
    if (s->live[i] == evcon)
      return;
  s->accepted++;
  for (int i = 0; i < MAX_SEEN; i++)
    if (!s->live[i]) {
      s->live[i] = evcon;
      break;
    }
  evhttp_connection_set_closecb(evcon, on_server_close, s);
}

struct slow {
  struct server *s;
  struct evhttp_request *req;
  struct event *ev;
};

static void slow_reply(evutil_socket_t fd, short what, void *arg)
{
  struct slow *sl = arg;
  sl->s->now--;
  evhttp_send_reply(sl->req, 200, "OK", NULL);
  event_free(sl->ev);
  free(sl);
}

static int query_int(struct evhttp_request *req, const char *key, int dflt)
{
  struct evkeyvalq q;
  const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
  int v = dflt;
  if (query && evhttp_parse_query_str(query, &q) == 0) {
    const char *s = evhttp_find_header(&q, key);
    if (s)
      v = atoi(s);
    evhttp_clear_headers(&q);
  }
  return v;
}

static void handle(struct evhttp_request *req, void *arg)
{
  struct server *s = arg;
  note_conn(s, req);
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  struct evbuffer *b = evbuffer_new();
  if (strcmp(path, "/echo") == 0) {
    static const char *names[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH"};
    enum evhttp_cmd_type t = evhttp_request_get_command(req);
    int i = 0;
    while ((1 << i) != (int)t)
      i++;
    evbuffer_add_printf(b, "%s\n", names[i]);
    evbuffer_add_buffer(b, evhttp_request_get_input_buffer(req));
    const char *x = evhttp_find_header(in, "X-Test");
    evhttp_add_header(out, "X-Echo", x ? x : "(none)");
    evhttp_add_header(out, "X-Seen-UA", evhttp_find_header(in, "User-Agent"));
    evhttp_add_header(out, "X-Seen-Host", evhttp_find_header(in, "Host"));
    evhttp_send_reply(req, 201, "Created", b);
  } else if (strcmp(path, "/slow") == 0) {
    struct slow *sl = calloc(1, sizeof(*sl));
    sl->s = s;
    sl->req = req;
    if (++s->now > s->max_now)
      s->max_now = s->now;
    sl->ev = evtimer_new(base, slow_reply, sl);
    struct timeval tv = {0, query_int(req, "ms", 100) * 1000};
    evtimer_add(sl->ev, &tv);
  } else if (strcmp(path, "/close") == 0) {
    evhttp_add_header(out, "Connection", "close");
    evhttp_send_reply(req, 200, "OK", NULL);
  } else if (strcmp(path, "/never") == 0) {
    if (s->nnever < MAX_SEEN)
      s->never[s->nnever++] = req;
  } else if (strcmp(path, "/big") == 0) {
    int n = query_int(req, "n", 100);
    for (int i = 0; i < n; i++)
      evbuffer_add(b, "x", 1);
    evhttp_send_reply(req, 200, "OK", b);
  } else if (strcmp(path, "/chunked") == 0) {
    int n = query_int(req, "n", 100);
    evhttp_send_reply_start(req, 200, "OK");
    for (int i = 0; i < n; i += 100) {
      char chunk[100];
      memset(chunk, 'y', sizeof(chunk));
      evbuffer_add(b, chunk, n - i < 100 ? (size_t)(n - i) : 100);
      evhttp_send_reply_chunk(req, b);
    }
    evhttp_send_reply_end(req);
  } else {
    evhttp_send_reply(req, 404, "Not Found", NULL);
  }
  evbuffer_free(b);
}

static struct bufferevent *tls_bev(struct event_base *b, void *arg)
{
  struct server *s = arg;
  return bufferevent_openssl_socket_new(b, -1, SSL_new(s->ssl), BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
}

static int server_start(struct server *s, const char *addr, SSL_CTX *ssl)
{
  memset(s, 0, sizeof(*s));
  s->http = evhttp_new(base);
  s->ssl = ssl;
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                          EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                          EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
  evhttp_set_gencb(s->http, handle, s);
  if (ssl)
    evhttp_set_bevcb(s->http, tls_bev, s);
  struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(s->http, addr, 0);
  if (!h)
    return -1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&ss, &sl);
  s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}

static void server_stop(struct server *s)
{
  if (!s->http)
    return;
  /* an answer frees a request whose client went away; the rest go with
   * their connections */
  for (size_t i = 0; i < s->nnever; i++)
    evhttp_send_reply(s->never[i], 200, "OK", NULL);
  evhttp_free(s->http);
  SSL_CTX_free(s->ssl);
  s->http = NULL;
}

/* ---- the client side ---- */

struct res {
  int done, status;
  char error[32], detail[256], body[8192], echo[64], ua[64], host[64];
  size_t body_len;
  double elapsed;
};

static const char *header(const struct httpc_result *r, const char *name)
{
  for (size_t i = 0; i < r->nheaders; i++)
    if (strcasecmp(r->headers[i].name, name) == 0)
      return r->headers[i].value;
  return "";
}

static void on_done(void *arg, const struct httpc_result *r)
{
  struct res *out = arg;
  out->done++;
  out->status = r->status;
  snprintf(out->error, sizeof(out->error), "%s", r->error ? r->error : "");
  snprintf(out->detail, sizeof(out->detail), "%s", r->detail);
  out->body_len = r->body_len;
  size_t n = r->body_len < sizeof(out->body) - 1 ? r->body_len : sizeof(out->body) - 1;
  memcpy(out->body, r->body, n);
  out->body[n] = '\0';
  snprintf(out->echo, sizeof(out->echo), "%s", header(r, "X-Echo"));
  snprintf(out->ua, sizeof(out->ua), "%s", header(r, "X-Seen-UA"));
  snprintf(out->host, sizeof(out->host), "%s", header(r, "X-Seen-Host"));
  out->elapsed = r->elapsed;
  if (getenv("HTTPC_VERBOSE"))
    fprintf(stderr, "  done: %d %s %s\n", r->status, out->error, r->detail);
}

/* Runs the loop until every one of the n results is done or seconds pass. */
static int wait_all(struct res *r, int n, double seconds)
{
  struct timeval tv = {0, 10000};
  for (int spins = 0; spins < (int)(seconds * 100); spins++) {
    int all = 1;
    for (int i = 0; i < n; i++)
      all &= r[i].done > 0;
    if (all)
      return 1;
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
  }
  return 0;
}

static void run_for(double seconds)
{
  struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
}

static char url_buf[256];
static const char *url(const char *scheme, const char *host, int port, const char *path)
{
  snprintf(url_buf, sizeof(url_buf), "%s://%s:%d%s", scheme, host, port, path);
  return url_buf;
}

static struct httpc *client(size_t inflight, size_t queue, size_t max_body, const char *ca)
{
  struct httpc_opts o = {.max_inflight = inflight, .max_queue = queue, .max_body = max_body,
                         .max_idle_per_host = 2, .idle_timeout = 5, .ca_file = ca};
  char err[256];
  struct httpc *c = httpc_new(base, &o, err, sizeof(err));
  if (!c)
    fprintf(stderr, "httpc_new: %s\n", err);
  return c;
}

/* ---- the cases ---- */

static void test_round_trip(void)
{
  struct httpc *c = client(4, 16, 0, NULL);
  struct res r[3] = {{0}};
  struct httpc_header h[] = {{"X-Test", "abc"}, {"Host", "evil.example"}, {"connection", "upgrade"}};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo?q=1"), h, 3, NULL, 0, 5,
                on_done, &r[0]);
  httpc_request(c, "post", url("http", "127.0.0.1", plain.port, "/echo"), h, 1, "hello", 5, 5,
                on_done, &r[1]);
  struct httpc_header ua[] = {{"User-Agent", "mine/1"}};
  httpc_request(c, "PUT", url("http", "127.0.0.1", plain.port, "/echo"), ua, 1, NULL, 0, 5,
                on_done, &r[2]);
  CHECK_EQ(r[0].done + r[1].done + r[2].done, 0); /* never from inside httpc_request */
  CHECK(wait_all(r, 3, 5));
  CHECK_EQ(r[0].status, 201);
  CHECK_STR(r[0].error, "");
  CHECK_STR(r[0].body, "GET\n");
  CHECK_STR(r[0].echo, "abc");
  CHECK_STR(r[0].ua, "tinysse");
  char host[64];
  snprintf(host, sizeof(host), "127.0.0.1:%d", plain.port);
  CHECK_STR(r[0].host, host);
  CHECK_EQ(r[1].status, 201);
  CHECK_STR(r[1].body, "POST\nhello");
  CHECK_STR(r[2].body, "PUT\n");
  CHECK_STR(r[2].ua, "mine/1");
  CHECK(r[0].elapsed > 0 && r[0].elapsed < 5);
  struct res nf = {0};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/nothing"), NULL, 0, NULL, 0,
                5, on_done, &nf);
  CHECK(wait_all(&nf, 1, 5));
  CHECK_EQ(nf.status, 404);
  CHECK_STR(nf.error, "");
  struct res head = {0};
  httpc_request(c, "HEAD", url("http", "127.0.0.1", plain.port, "/big?n=300"), NULL, 0, NULL, 0,
                5, on_done, &head);
  CHECK(wait_all(&head, 1, 5));
  CHECK_EQ(head.status, 200);
  CHECK_EQ(head.body_len, 0);
  httpc_free(c);
}

static void test_reuse(void)
{
  struct httpc *c = client(4, 16, 0, NULL);
  unsigned long before = plain.accepted;
  for (int i = 0; i < 4; i++) {
    struct res r = {0};
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                  on_done, &r);
    CHECK(wait_all(&r, 1, 5));
    CHECK_EQ(r.status, 201);
  }
  CHECK_EQ(plain.accepted - before, 1);
  struct httpc_stats st;
  httpc_get_stats(c, &st);
  CHECK_EQ(st.requests, 4);
  CHECK_EQ(st.failures, 0);
  CHECK_EQ(st.connections_opened, 1);
  CHECK_EQ(st.connections_reused, 3);
  CHECK_EQ(st.inflight_now, 0);
  httpc_free(c);
}

static void test_inflight_limit(void)
{
  struct httpc *c = client(2, 16, 0, NULL);
  struct res r[5] = {{0}};
  plain.max_now = 0;
  for (int i = 0; i < 5; i++)
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/slow?ms=100"), NULL, 0, NULL,
                  0, 5, on_done, &r[i]);
  struct httpc_stats st;
  httpc_get_stats(c, &st);
  CHECK_EQ(st.queued_now, 5); /* nothing starts inside httpc_request */
  run_for(0.05);
  httpc_get_stats(c, &st);
  CHECK_EQ(st.inflight_now, 2);
  CHECK_EQ(st.queued_now, 3);
  CHECK(wait_all(r, 5, 5));
  for (int i = 0; i < 5; i++)
    CHECK_EQ(r[i].status, 200);
  CHECK_EQ(plain.max_now, 2);
  httpc_free(c);
}

static void test_queue_full(void)
{
  struct httpc *c = client(1, 1, 0, NULL);
  struct res r[4] = {{0}};
  for (int i = 0; i < 4; i++)
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/slow?ms=50"), NULL, 0, NULL,
                  0, 5, on_done, &r[i]);
  CHECK_EQ(r[2].done + r[3].done, 0);
  CHECK(wait_all(r, 4, 5));
  CHECK_EQ(r[0].status, 200);
  CHECK_EQ(r[1].status, 200);
  CHECK_STR(r[2].error, "queue_full");
  CHECK_STR(r[3].error, "queue_full");
  CHECK_EQ(r[3].status, 0);
  httpc_free(c);
}

static int ticked;
static void tick(evutil_socket_t fd, short what, void *arg)
{
  ticked++;
}

static void test_timeout(void)
{
  struct httpc *c = client(1, 4, 0, NULL);
  struct res r[2] = {{0}};
  struct event *t = evtimer_new(base, tick, NULL);
  struct timeval tv = {0, 100000};
  evtimer_add(t, &tv);
  ticked = 0;
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/never"), NULL, 0, NULL, 0, 0.4,
                on_done, &r[0]);
  /* waits behind the first (max_inflight 1) and times out in the queue */
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 0.2,
                on_done, &r[1]);
  CHECK(wait_all(r, 2, 3));
  CHECK_STR(r[0].error, "timeout");
  CHECK(r[0].elapsed >= 0.39 && r[0].elapsed < 0.9);
  CHECK_STR(r[1].error, "timeout");
  CHECK(r[1].elapsed >= 0.19 && r[1].elapsed < 0.7);
  CHECK_EQ(ticked, 1); /* the loop went on meanwhile */
  struct httpc_stats st;
  httpc_get_stats(c, &st);
  CHECK_EQ(st.timeouts, 2);
  CHECK_EQ(st.failures, 2);
  /* the slot is free again */
  struct res ok = {0};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 2,
                on_done, &ok);
  CHECK(wait_all(&ok, 1, 3));
  CHECK_EQ(ok.status, 201);
  event_free(t);
  httpc_free(c);
}

static void test_cancel(void)
{
  struct httpc *c = client(1, 4, 0, NULL);
  struct res r[4] = {{0}};
  struct httpc_call *queued_then_cancelled =
      httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/slow?ms=50"), NULL, 0, NULL,
                    0, 5, on_done, &r[0]);
  httpc_cancel(queued_then_cancelled);
  struct httpc_call *in_flight = httpc_request(
      c, "GET", url("http", "127.0.0.1", plain.port, "/never"), NULL, 0, NULL, 0, 5, on_done, &r[1]);
  struct httpc_call *queued = httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"),
                                            NULL, 0, NULL, 0, 5, on_done, &r[2]);
  struct httpc_call *bad = httpc_request(c, "GET", "ftp://x/", NULL, 0, NULL, 0, 5, on_done, &r[3]);
  httpc_cancel(bad); /* an error not yet delivered */
  run_for(0.1);
  httpc_cancel(queued);
  httpc_cancel(in_flight);
  run_for(0.3);
  for (int i = 0; i < 4; i++)
    CHECK_EQ(r[i].done, 0);
  struct res ok = {0};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 2,
                on_done, &ok);
  CHECK(wait_all(&ok, 1, 3));
  CHECK_EQ(ok.status, 201);
  httpc_free(c);
}

static void test_too_large(void)
{
  struct httpc *c = client(4, 4, 1000, NULL);
  struct res r[4] = {{0}};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/big?n=5000"), NULL, 0, NULL, 0,
                5, on_done, &r[0]);
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/big?n=1000"), NULL, 0, NULL, 0,
                5, on_done, &r[1]);
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/chunked?n=3000"), NULL, 0, NULL,
                0, 5, on_done, &r[2]);
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/chunked?n=900"), NULL, 0, NULL,
                0, 5, on_done, &r[3]);
  CHECK(wait_all(r, 4, 5));
  CHECK_STR(r[0].error, "too_large");
  CHECK_EQ(r[1].status, 200);
  CHECK_EQ(r[1].body_len, 1000);
  CHECK_STR(r[2].error, "too_large");
  CHECK_EQ(r[3].status, 200);
  CHECK_EQ(r[3].body_len, 900);
  httpc_free(c);
}

static void test_refused_and_bad_url(void)
{
  /* a port nobody listens on: bound, then closed */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  close(fd);
  struct httpc *c = client(4, 16, 0, NULL);
  static const char *bad[] = {"ftp://127.0.0.1/", "http://", "not a url", "http://[::1/",
                              "http://u:p@127.0.0.1/", "http://127.0.0.1:0/", NULL};
  struct res r[8] = {{0}};
  int n = 0;
  for (; bad[n]; n++)
    httpc_request(c, "GET", bad[n], NULL, 0, NULL, 0, 5, on_done, &r[n]);
  httpc_request(c, "BREW", url("http", "127.0.0.1", plain.port, "/"), NULL, 0, NULL, 0, 5,
                on_done, &r[n]);
  struct httpc_header crlf[] = {{"X-A", "b\r\nX-Injected: 1"}};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/"), crlf, 1, NULL, 0, 5, on_done,
                &r[n + 1]);
  struct res refused = {0};
  httpc_request(c, "GET", url("http", "127.0.0.1", ntohs(sa.sin_port), "/"), NULL, 0, NULL, 0, 5,
                on_done, &refused);
  for (int i = 0; i < n + 2; i++)
    CHECK_EQ(r[i].done, 0);
  CHECK(wait_all(r, n + 2, 3));
  for (int i = 0; i < n; i++) {
    if (strcmp(r[i].error, "bad_url") != 0)
      fprintf(stderr, "  %s gave %s\n", bad[i], r[i].error);
    CHECK_STR(r[i].error, "bad_url");
  }
  CHECK_STR(r[n].error, "bad_request");
  CHECK_STR(r[n + 1].error, "bad_request");
  CHECK(strstr(r[n + 1].detail, "Injected") == NULL);
  CHECK(wait_all(&refused, 1, 5));
  CHECK_STR(refused.error, "connect_failed");
  CHECK(strstr(refused.detail, "refused") != NULL);
  httpc_free(c);
}

static void test_shutdown(void)
{
  struct httpc *c = client(1, 4, 0, NULL);
  struct res r[3] = {{0}};
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/never"), NULL, 0, NULL, 0, 5,
                on_done, &r[0]);
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &r[1]);
  run_for(0.1);
  httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &r[2]);
  httpc_free(c);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(r[i].done, 1);
    CHECK_STR(r[i].error, "shutdown");
  }
}

/* The server drops the kept-alive connection between two requests: once
 * with time for the client to notice, once in the same loop turn as the
 * next request (which then goes out on the dead connection and is retried). */
static void test_server_close(void)
{
  struct httpc *c = client(4, 16, 0, NULL);
  for (int round = 0; round < 2; round++) {
    struct res r = {0};
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                  on_done, &r);
    CHECK(wait_all(&r, 1, 5));
    CHECK_EQ(r.status, 201);
    run_for(0.05);
    CHECK(plain.last != NULL);
    if (plain.last)
      evhttp_connection_free(plain.last);
    if (round == 0)
      run_for(0.1);
    struct res again = {0};
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                  on_done, &again);
    CHECK(wait_all(&again, 1, 5));
    if (again.status != 201)
      fprintf(stderr, "  round %d: %s %s\n", round, again.error, again.detail);
    CHECK_EQ(again.status, 201);
  }
  struct httpc_stats st;
  httpc_get_stats(c, &st);
  /* round 1's second request went out on the dropped connection: a
   * reuse, then a retry on a third connection */
  CHECK_EQ(st.connections_opened, 3);
  CHECK_EQ(st.connections_reused, 2);
  CHECK_EQ(st.failures, 0);
  /* "Connection: close" in an answer: the next call opens a new one */
  for (int i = 0; i < 2; i++) {
    struct res r = {0};
    httpc_request(c, "GET", url("http", "127.0.0.1", plain.port, "/close"), NULL, 0, NULL, 0, 5,
                  on_done, &r);
    CHECK(wait_all(&r, 1, 5));
    CHECK_EQ(r.status, 200);
  }
  httpc_get_stats(c, &st);
  CHECK_EQ(st.connections_opened, 4); /* the first /close reused the third */
  CHECK_EQ(st.failures, 0);
  httpc_free(c);
}

static void test_dns_and_ipv6(void)
{
  struct httpc *c = client(4, 16, 0, NULL);
  struct res r = {0};
  httpc_request(c, "GET", url("http", "localhost", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &r);
  CHECK(wait_all(&r, 1, 6));
  CHECK_EQ(r.status, 201);
  struct server v6;
  if (server_start(&v6, "::1", NULL) == 0) {
    struct res r6 = {0};
    httpc_request(c, "GET", url("http", "[::1]", v6.port, "/echo"), NULL, 0, NULL, 0, 5,
                  on_done, &r6);
    CHECK(wait_all(&r6, 1, 5));
    CHECK_EQ(r6.status, 201);
    char host[64];
    snprintf(host, sizeof(host), "[::1]:%d", v6.port);
    CHECK_STR(r6.host, host);
    httpc_free(c);
    c = NULL;
    run_for(0.05);
    server_stop(&v6);
  } else {
    printf("no IPv6 loopback: the [::1] check is skipped\n");
    server_stop(&v6);
  }
  httpc_free(c);
}

static char tmpdir[64];

static int make_cert(const char *name, const char *san)
{
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
           "-subj /CN=%s -addext subjectAltName=%s -keyout %s/%s.key -out %s/%s.pem "
           ">/dev/null 2>&1",
           name, san, tmpdir, name, tmpdir, name);
  return system(cmd) == 0 ? 0 : -1;
}

static SSL_CTX *server_ctx(const char *name)
{
  char cert[128], key[128];
  snprintf(cert, sizeof(cert), "%s/%s.pem", tmpdir, name);
  snprintf(key, sizeof(key), "%s/%s.key", tmpdir, name);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static void test_https(void)
{
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_httpc.XXXXXX");
  if (!mkdtemp(tmpdir) || make_cert("localhost", "DNS:localhost,IP:127.0.0.1") < 0 ||
      make_cert("other", "DNS:other.example")) {
    printf("the openssl CLI cannot make certificates: https checks skipped\n");
    return;
  }
  SSL_CTX *good = server_ctx("localhost"), *other = server_ctx("other");
  CHECK(good && other);
  if (!good || !other || server_start(&tls_good, "127.0.0.1", good) < 0 ||
      server_start(&tls_other, "127.0.0.1", other) < 0)
    return;
  char ca_good[128], ca_other[128];
  snprintf(ca_good, sizeof(ca_good), "%s/localhost.pem", tmpdir);
  snprintf(ca_other, sizeof(ca_other), "%s/other.pem", tmpdir);

  struct httpc *c = client(4, 16, 0, ca_good);
  struct res r[3] = {{0}};
  httpc_request(c, "POST", url("https", "127.0.0.1", tls_good.port, "/echo"), NULL, 0, "tls", 3,
                5, on_done, &r[0]);
  CHECK(wait_all(r, 1, 5));
  CHECK_EQ(r[0].status, 201);
  CHECK_STR(r[0].body, "POST\ntls");
  httpc_request(c, "GET", url("https", "localhost", tls_good.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &r[1]);
  httpc_request(c, "GET", url("https", "127.0.0.1", tls_good.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &r[2]);
  CHECK(wait_all(r, 3, 5));
  CHECK_EQ(r[1].status, 201);
  CHECK_EQ(r[2].status, 201);
  struct httpc_stats st;
  httpc_get_stats(c, &st);
  CHECK_EQ(st.connections_reused, 1); /* the third went on the first's connection */
  httpc_free(c);

  /* the system's CAs do not know the self-signed certificate */
  c = client(4, 16, 0, NULL);
  struct res sys = {0};
  httpc_request(c, "GET", url("https", "127.0.0.1", tls_good.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &sys);
  CHECK(wait_all(&sys, 1, 5));
  CHECK_STR(sys.error, "tls_failed");
  CHECK(strstr(sys.detail, "certificate") != NULL);
  httpc_free(c);

  /* trusted, but for another name */
  c = client(4, 16, 0, ca_other);
  struct res wrong = {0};
  httpc_request(c, "GET", url("https", "127.0.0.1", tls_other.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &wrong);
  CHECK(wait_all(&wrong, 1, 5));
  CHECK_STR(wrong.error, "tls_failed");
  CHECK(strstr(wrong.detail, "mismatch") != NULL);
  /* https to a plain HTTP server */
  struct res plain_srv = {0};
  httpc_request(c, "GET", url("https", "127.0.0.1", plain.port, "/echo"), NULL, 0, NULL, 0, 5,
                on_done, &plain_srv);
  CHECK(wait_all(&plain_srv, 1, 5));
  CHECK_STR(plain_srv.error, "tls_failed");
  httpc_free(c);

  char err[256];
  struct httpc_opts o = {.max_inflight = 1, .ca_file = "/nonexistent/ca.pem"};
  CHECK(httpc_new(base, &o, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  if (server_start(&plain, "127.0.0.1", NULL) < 0) {
    printf("cannot listen on 127.0.0.1: skipped\n");
    server_stop(&plain);
    event_base_free(base);
    return 77;
  }
  test_round_trip();
  test_reuse();
  test_inflight_limit();
  test_queue_full();
  test_timeout();
  test_cancel();
  test_too_large();
  test_refused_and_bad_url();
  test_shutdown();
  test_server_close();
  test_dns_and_ipv6();
  test_https();
  run_for(0.1);
  server_stop(&plain);
  server_stop(&tls_good);
  server_stop(&tls_other);
  if (tmpdir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot remove %s\n", tmpdir);
  }
  event_base_free(base);
  return check_done();
}
