/* The HTTP client's connections (see httpc.h, httpc_impl.h): one evhttp
 * connection per TCP (or TLS) connection, one request on it at a time,
 * kept idle per scheme+host+port after an answer. A connection that
 * closes or fails is never reconnected by evhttp (retries stay 0): it is
 * marked dead and freed from the client's deferred "kick", since evhttp
 * still uses it while its callbacks run. A call whose reused connection
 * fails before any response header goes once more on a fresh one (the
 * server may have closed the idle connection as we wrote). */
#include "httpc_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "alloc.h"

/* Response headers beyond this are a bad response, not a memory sink. */
#define MAX_HEADERS_SIZE (64 * 1024)

static void set_tv(struct timeval *tv, double s)
{
  if (s < 0.001)
    s = 0.001;
  tv->tv_sec = (time_t)s;
  tv->tv_usec = (suseconds_t)((s - (double)tv->tv_sec) * 1e6);
}

static int is_ip_literal(const char *host)
{
  unsigned char a[16];
  return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

SSL_CTX *httpc_tls_ctx(struct httpc *c, char *err, size_t errlen)
{
  if (c->ssl_ctx)
    return c->ssl_ctx;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  int ok = ctx != NULL;
  if (ok) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ok = c->ca_file ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
  }
  if (!ok) {
    char why[200];
    unsigned long e = ERR_peek_error();
    if (e)
      ERR_error_string_n(e, why, sizeof(why));
    else
      snprintf(why, sizeof(why), "cannot make a TLS context");
    ERR_clear_error();
    snprintf(err, errlen, "CA file %s: %s", c->ca_file ? c->ca_file : "(system default)", why);
    SSL_CTX_free(ctx);
    return NULL;
  }
  return c->ssl_ctx = ctx;
}

/* Notes that the server sent something over TLS: a failure after that is
 * the handshake's, not the TCP connect's. */
static void on_tls_msg(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
  struct httpc_conn *conn = arg;
  if (!write_p)
    conn->tls_heard = 1;
}

static void mark_dead(struct httpc_conn *conn)
{
  if (conn->idle) {
    TAILQ_REMOVE(&conn->c->idle, conn, idle_link);
    conn->idle = 0;
    evtimer_del(conn->idle_timer);
  }
  conn->dead = 1;
  httpc_kick(conn->c);
}

/* evhttp closed the socket of a connection that had been established (a
 * connect that failed never gets here). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
  struct httpc_conn *conn = arg;
  conn->closed = 1;
  if (!conn->call)
    mark_dead(conn); /* idle: the server closed it, or it was cancelled */
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
  mark_dead(arg);
}

static void conn_free(struct httpc_conn *conn)
{
  struct httpc *c = conn->c;
  if (conn->idle)
    TAILQ_REMOVE(&c->idle, conn, idle_link);
  TAILQ_REMOVE(&c->conns, conn, link);
  httpc_dns_cancel(conn);
  if (conn->ssl)
    SSL_set_msg_callback(conn->ssl, NULL);
  if (conn->evcon) {
    evhttp_connection_set_closecb(conn->evcon, NULL, NULL);
    evhttp_connection_free(conn->evcon); /* its bufferevent and SSL too */
  }
  event_free(conn->idle_timer);
  free(conn->key);
  free(conn);
}

void httpc_conn_reap(struct httpc *c, int all)
{
  struct httpc_conn *conn, *next;
  for (conn = TAILQ_FIRST(&c->conns); conn; conn = next) {
    next = TAILQ_NEXT(conn, link);
    if (all || conn->dead)
      conn_free(conn);
  }
}

static struct httpc_conn *conn_alloc(struct httpc *c, struct httpc_call *call)
{
  struct httpc_conn *conn = xcalloc(1, sizeof(*conn));
  conn->c = c;
  conn->idle_timer = evtimer_new(c->base, on_idle_timeout, conn);
  if (!conn->idle_timer)
    alloc_failed(sizeof(struct event *));
  conn->key = xstrdup(call->key);
  TAILQ_INSERT_TAIL(&c->conns, conn, link);
  c->st.connections_opened++;
  return conn;
}

/* Gives conn its evhttp connection to addr (an IP literal); -1 with
 * call->error and call->detail set. */
static int conn_connect(struct httpc_conn *conn, struct httpc_call *call, const char *addr)
{
  struct httpc *c = conn->c;
  struct bufferevent *bev = NULL;
  if (call->tls) {
    SSL *ssl = SSL_new(c->ssl_ctx);
    int ok = ssl != NULL;
    /* the name checked is the URL's, whatever address it resolved to */
    if (ok && is_ip_literal(call->host))
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), call->host);
    else if (ok)
      ok = SSL_set_tlsext_host_name(ssl, call->host) && SSL_set1_host(ssl, call->host);
    if (ok) {
      SSL_set_msg_callback(ssl, on_tls_msg);
      SSL_set_msg_callback_arg(ssl, conn);
      bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                           BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (!bev) {
      SSL_free(ssl);
      ERR_clear_error();
      call->error = "tls_failed";
      snprintf(call->detail, sizeof(call->detail), "cannot set up TLS for %s", call->host);
      return -1;
    }
    /* servers often close without close_notify; evhttp knows the length */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    conn->ssl = ssl;
  }
  conn->evcon = evhttp_connection_base_bufferevent_new(c->base, NULL, bev, addr,
                                                       (unsigned short)call->port);
  if (!conn->evcon) {
    if (bev)
      bufferevent_free(bev);
    conn->ssl = NULL;
    call->error = "connect_failed";
    snprintf(call->detail, sizeof(call->detail), "cannot make a connection to %s", call->key);
    return -1;
  }
  evhttp_connection_set_closecb(conn->evcon, on_close, conn);
  evhttp_connection_set_max_body_size(conn->evcon, (ev_ssize_t)c->o.max_body);
  evhttp_connection_set_max_headers_size(conn->evcon, MAX_HEADERS_SIZE);
  return 0;
}

/* The most recently used idle connection for key (the likeliest alive). */
static struct httpc_conn *take_idle(struct httpc *c, const char *key)
{
  struct httpc_conn *conn;
  TAILQ_FOREACH_REVERSE(conn, &c->idle, httpc_connq, idle_link)
    if (strcmp(conn->key, key) == 0) {
      TAILQ_REMOVE(&c->idle, conn, idle_link);
      conn->idle = 0;
      evtimer_del(conn->idle_timer);
      return conn;
    }
  return NULL;
}

/* After an answer: idle in the pool, or closed when the pool is full,
 * the server closed it, or the client is going away. */
static void release(struct httpc_conn *conn)
{
  struct httpc *c = conn->c;
  size_t same = 0;
  struct httpc_conn *o;
  TAILQ_FOREACH(o, &c->idle, idle_link)
    same += strcmp(o->key, conn->key) == 0;
  if (conn->closed || c->closing || same >= c->o.max_idle_per_host ||
      c->o.idle_timeout <= 0) {
    mark_dead(conn);
    return;
  }
  struct timeval tv;
  /* evhttp's own read timeout must not close it before our idle timer */
  set_tv(&tv, c->o.idle_timeout + 5);
  evhttp_connection_set_timeout_tv(conn->evcon, &tv);
  set_tv(&tv, c->o.idle_timeout);
  evtimer_add(conn->idle_timer, &tv);
  TAILQ_INSERT_TAIL(&c->idle, conn, idle_link);
  conn->idle = 1;
}

/* Ends an active call that never reached a connected server. */
static void fail_unconnected(struct httpc_conn *conn, struct httpc_call *call, int err)
{
  struct bufferevent *bev = evhttp_connection_get_bufferevent(conn->evcon);
  if (conn->ssl) {
    long v = SSL_get_verify_result(conn->ssl);
    unsigned long e = bufferevent_get_openssl_error(bev);
    ERR_clear_error();
    if (v != X509_V_OK) {
      httpc_fail(call, "tls_failed", "%s: certificate verify failed: %s", call->key,
                 X509_verify_cert_error_string(v));
      return;
    }
    if (e || conn->tls_heard) {
      char why[160] = "handshake failed";
      if (e)
        ERR_error_string_n(e, why, sizeof(why));
      httpc_fail(call, "tls_failed", "%s: %s", call->key, why);
      return;
    }
  }
  /* evhttp's own socket calls after the failed connect overwrite errno
   * with ENOTCONN; a refused or unreachable connect is what leads here */
  httpc_fail(call, "connect_failed", "cannot connect to %s: %s", call->key,
             err && err != ENOTCONN ? strerror(err) : "connection refused or unreachable");
}

/* evhttp failed the request (it calls on_done with NULL right after). */
static void on_error(enum evhttp_request_error what, void *arg)
{
  int err = errno;
  struct httpc_conn *conn = arg;
  struct httpc_call *call = conn->call;
  conn->req = NULL; /* evhttp freed it */
  mark_dead(conn);
  if (!call)
    return; /* cancelled by us */
  conn->call = NULL;
  call->conn = NULL;
  if (!conn->closed) {
    fail_unconnected(conn, call, err);
    return;
  }
  switch (what) {
  case EVREQ_HTTP_TIMEOUT:
    httpc_fail(call, "timeout", "%s: connection timed out", call->key);
    break;
  case EVREQ_HTTP_EOF:
    if (!conn->got_headers && conn->uses > 1 && !call->retried) {
      call->retried = 1; /* the server dropped a kept-alive connection */
      httpc_requeue(call);
      break;
    }
    httpc_fail(call, "bad_response", "%s closed the connection before a complete response",
               call->key);
    break;
  case EVREQ_HTTP_DATA_TOO_LONG:
    if (conn->got_headers)
      httpc_fail(call, "too_large", "response body over %zu bytes (or a malformed chunk)",
                 conn->c->o.max_body);
    else
      httpc_fail(call, "bad_response", "response headers malformed or over %d bytes",
                 MAX_HEADERS_SIZE);
    break;
  default:
    httpc_fail(call, "bad_response", "%s sent a malformed response", call->key);
    break;
  }
}

static int on_headers(struct evhttp_request *req, void *arg)
{
  struct httpc_conn *conn = arg;
  conn->got_headers = 1;
  return 0;
}

static void on_done(struct evhttp_request *req, void *arg)
{
  int err = errno;
  struct httpc_conn *conn = arg;
  struct httpc_call *call = conn->call;
  if (!req || !call) {
    if (!conn->req)
      return; /* on_error has seen it */
    conn->req = NULL;
    mark_dead(conn);
    return;
  }
  conn->call = NULL;
  conn->req = NULL;
  call->conn = NULL;
  int status = evhttp_request_get_response_code(req);
  if (status == 0) {
    /* the connect failed: evhttp calls back without an error */
    mark_dead(conn);
    fail_unconnected(conn, call, err);
    return;
  }
  release(conn);
  struct evkeyvalq *in = evhttp_request_get_input_headers(req);
  struct evkeyval *kv;
  size_t n = 0;
  TAILQ_FOREACH(kv, in, next)
    n++;
  struct httpc_header *h = xmalloc((n ? n : 1) * sizeof(*h));
  n = 0;
  TAILQ_FOREACH(kv, in, next) {
    h[n].name = kv->key;
    h[n].value = kv->value;
    n++;
  }
  struct evbuffer *b = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(b);
  snprintf(call->detail, sizeof(call->detail), "HTTP %d from %s", status, call->key);
  struct httpc_result res = {
      .status = status,
      .detail = call->detail,
      .body = len ? (const char *)evbuffer_pullup(b, -1) : "",
      .body_len = len,
      .headers = h,
      .nheaders = n,
  };
  httpc_finish(call, &res);
  free(h);
}

/* Sends conn->call on conn (connected, or connecting to an address):
 * 0 on its way, 1 already ended, -1 with call->error set and conn dead. */
static int send_request(struct httpc_conn *conn)
{
  struct httpc *c = conn->c;
  struct httpc_call *call = conn->call;
  struct evhttp_request *req = evhttp_request_new(on_done, conn);
  if (!req)
    alloc_failed(sizeof(void *));
  evhttp_request_set_error_cb(req, on_error);
  evhttp_request_set_header_cb(req, on_headers);
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  int have_ua = 0;
  evhttp_add_header(out, "Host", call->host_header);
  for (size_t i = 0; i < call->nheaders; i++) {
    have_ua |= strcasecmp(call->headers[i].name, "User-Agent") == 0;
    evhttp_add_header(out, call->headers[i].name, call->headers[i].value);
  }
  if (!have_ua)
    evhttp_add_header(out, "User-Agent", "tinysse");
  if (c->o.max_idle_per_host == 0 || c->o.idle_timeout <= 0)
    evhttp_add_header(out, "Connection", "close");
  if (call->body_len || call->method == EVHTTP_REQ_POST || call->method == EVHTTP_REQ_PUT ||
      call->method == EVHTTP_REQ_PATCH) {
    char cl[24];
    snprintf(cl, sizeof(cl), "%zu", call->body_len);
    evhttp_add_header(out, "Content-Length", cl);
    evbuffer_add(evhttp_request_get_output_buffer(req), call->body, call->body_len);
  }
  /* Our timer ends the call; evhttp's (connect, read, write) only backs it. */
  struct timeval tv;
  set_tv(&tv, call->started + call->timeout - httpc_now() + 1);
  evhttp_connection_set_timeout_tv(conn->evcon, &tv);
  conn->req = req;
  conn->got_headers = 0;
  conn->uses++;
  if (evhttp_make_request(conn->evcon, req, call->method, call->target) < 0) {
    /* The connect could not even start. evhttp leaves req to us or has
     * freed it, depending on where it failed: it is left alone (at worst a
     * small leak on a path that needs socket() to fail). */
    conn->call = NULL;
    conn->req = NULL;
    call->conn = NULL;
    mark_dead(conn);
    call->error = "connect_failed";
    snprintf(call->detail, sizeof(call->detail), "cannot start a connection to %s", call->key);
    return -1;
  }
  /* evhttp may have failed it already, from inside make_request */
  return conn->call == call ? 0 : 1;
}

/* Takes call off a connection that will not carry it (-1 paths). */
static void drop(struct httpc_conn *conn, struct httpc_call *call)
{
  conn->call = NULL;
  call->conn = NULL;
  mark_dead(conn);
}

int httpc_conn_start(struct httpc *c, struct httpc_call *call)
{
  struct httpc_conn *conn = call->fresh ? NULL : take_idle(c, call->key);
  if (conn)
    c->st.connections_reused++;
  else
    conn = conn_alloc(c, call);
  conn->call = call;
  call->conn = conn;
  if (conn->evcon)
    return send_request(conn);
  if (is_ip_literal(call->host)) {
    if (conn_connect(conn, call, call->host) < 0) {
      drop(conn, call);
      return -1;
    }
    return send_request(conn);
  }
  httpc_dns_resolve(conn, call->host); /* may answer at once */
  return conn->call == call ? 0 : 1;
}

void httpc_conn_resolved(struct httpc_conn *conn, const char *addr, const char *why)
{
  struct httpc_call *call = conn->call;
  if (!addr) {
    drop(conn, call);
    httpc_fail(call, "connect_failed", "cannot resolve %s: %s", call->host, why);
    return;
  }
  if (conn_connect(conn, call, addr) < 0 || send_request(conn) < 0) {
    char detail[sizeof(call->detail)];
    memcpy(detail, call->detail, sizeof(detail));
    drop(conn, call);
    httpc_fail(call, call->error, "%s", detail);
  }
}

void httpc_conn_detach(struct httpc_call *call)
{
  struct httpc_conn *conn = call->conn;
  if (!conn)
    return;
  struct evhttp_request *req = conn->req;
  conn->call = NULL;
  conn->req = NULL;
  call->conn = NULL;
  mark_dead(conn);
  httpc_dns_cancel(conn);
  if (req)
    evhttp_cancel_request(req); /* calls on_error at once, which sees no call */
}
