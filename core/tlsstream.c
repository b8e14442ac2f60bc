/* HTTP/1.1 streams over TLS (see tlsstream.h). The stream's frames are
 * copied into the bufferevent's output, where every frame queued in one
 * pass leaves in one write (few TLS records); at most TLS_OUT_MAX bytes
 * wait there, the rest stays in the client's queue and counts against
 * --max-queue as on a plain socket. */
#include "tlsstream.h"

#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "client.h"
#include "outq.h"

#define TLS_OUT_MAX (64 * 1024)
#define TLS_RECORD_MAX 16384

struct tlsstream {
  struct evhttp_connection *evcon;
  struct bufferevent *bev;
  struct client *c; /* NULL once the client is freed */
  char *head;
  size_t head_len;
};

static void finish(struct tlsstream *t)
{
  evhttp_connection_free(t->evcon); /* the request, the bufferevent, the SSL, the socket */
  free(t->head);
  free(t);
}

static void on_read(struct bufferevent *bev, void *arg)
{
  (void)arg;
  /* A stream carries nothing from the client after the request. */
  struct evbuffer *in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_written(struct bufferevent *bev, void *arg)
{
  (void)bev;
  struct tlsstream *t = arg;
  if (t->c)
    client_io_ready(t->c);
  else
    finish(t); /* the last frames of a closed stream are out */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
  (void)bev;
  (void)what; /* EOF, an error or the drain time limit */
  struct tlsstream *t = arg;
  if (t->c)
    client_close(t->c, "closed"); /* the client's close frees t */
  else
    finish(t);
}

static int io_open(void *arg, struct client *c)
{
  struct tlsstream *t = arg;
  t->c = c;
  bufferevent_set_timeouts(t->bev, NULL, NULL); /* evhttp's, for requests */
  bufferevent_setwatermark(t->bev, EV_WRITE, 0, 0);
  bufferevent_setcb(t->bev, on_read, on_written, on_event, t);
  bufferevent_write(t->bev, t->head, t->head_len);
  free(t->head);
  t->head = NULL;
  bufferevent_enable(t->bev, EV_READ | EV_WRITE);
  return 0;
}

/* The fast path: with nothing waiting in the bufferevent, what the pass
 * queued is encrypted and sent at once, as one record of up to 16 KiB,
 * without a trip through the event loop. If the socket is full, the
 * record stays half-sent inside OpenSSL: the same bytes then go to the
 * bufferevent, whose next SSL_write (when the socket is writable) is the
 * retry OpenSSL asks for. */
static long write_direct(struct tlsstream *t, struct outq *q, struct evbuffer *out)
{
  SSL *ssl = bufferevent_openssl_get_ssl(t->bev);
  long taken = 0;
  while (q->bytes > 0) {
    char buf[TLS_RECORD_MAX];
    struct iovec iov[64];
    size_t offered = 0, n = 0;
    int k = outq_iov(q, iov, 64, &offered);
    for (int i = 0; i < k && n < sizeof(buf); i++) {
      size_t len = iov[i].iov_len < sizeof(buf) - n ? iov[i].iov_len : sizeof(buf) - n;
      memcpy(buf + n, iov[i].iov_base, len);
      n += len;
    }
    ERR_clear_error();
    int r = SSL_write(ssl, buf, (int)n);
    if (r > 0) {
      outq_consume(q, (size_t)r);
      taken += r;
      continue;
    }
    if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_WRITE)
      return -1;
    if (evbuffer_add(out, buf, n) != 0)
      return -1;
    outq_consume(q, n);
    return taken + (long)n;
  }
  return taken;
}

static long io_write(void *arg, struct outq *q)
{
  struct tlsstream *t = arg;
  struct evbuffer *out = bufferevent_get_output(t->bev);
  size_t held = evbuffer_get_length(out);
  if (q->bytes == 0)
    return 0;
  if (held == 0)
    return write_direct(t, q, out);
  if (held >= TLS_OUT_MAX)
    return 0;
  /* Copied: OpenSSL writes a record per piece of the buffer, and copies
   * make few large pieces. */
  return outq_move(q, TLS_OUT_MAX - held, out, 1);
}

static void io_close(void *arg, int drained)
{
  struct tlsstream *t = arg;
  t->c = NULL;
  if (!drained || evbuffer_get_length(bufferevent_get_output(t->bev)) == 0) {
    finish(t);
    return;
  }
  /* Its last frames (a shutdown or expiry notice) go out first, within a
   * few seconds. */
  struct timeval limit = {5, 0};
  bufferevent_set_timeouts(t->bev, NULL, &limit);
}

static const struct stream_io_ops tls_io = {io_open, io_write, io_close};

int tlsstream_open(struct clients *cs, struct evhttp_request *req, const char *head,
                   size_t head_len, struct client_params *p)
{
  struct tlsstream *t = xcalloc(1, sizeof(*t));
  t->evcon = evhttp_request_get_connection(req);
  t->bev = evhttp_connection_get_bufferevent(t->evcon);
  t->head = xmalloc(head_len);
  memcpy(t->head, head, head_len);
  t->head_len = head_len;
  p->io = &tls_io;
  p->io_arg = t;
  int rc = client_open(cs, p);
  if (rc != 0) {
    free(t->head);
    free(t);
    return rc;
  }
  /* The request stays with evhttp until the stream closes: its headers
   * are not needed any more. */
  evhttp_clear_headers(evhttp_request_get_input_headers(req));
  evhttp_clear_headers(evhttp_request_get_output_headers(req));
  return 0;
}
