/* HTTP/1.1 streams over TLS (see tlsstream.h), as a sealed transport
 * (client.h): the client writes the socket itself, in the same batched
 * io_uring submission (or writev) as plain streams, and this file seals
 * its frames first. OpenSSL encrypts into a memory BIO (SSL_write there
 * never blocks: what a pass queued becomes one record of up to 16 KiB),
 * and the record's bytes become a frame of the client's own. Reading stays
 * on the socket: SSL_read sees the peer's close_notify or EOF.
 *
 * evhttp keeps the connection, idle (its bufferevent disabled), until the
 * stream closes: the bufferevent owns the SSL and frees it with the socket,
 * so the socket's BIO is put back for writing before that. */
#include "tlsstream.h"

#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "client.h"
#include "outq.h"
#include "sse.h"

#define TLS_RECORD_MAX 16384

struct tlsstream {
  struct evhttp_connection *evcon;
  struct bufferevent *bev;
  SSL *ssl;
  BIO *sealed; /* SSL's write BIO while streaming: memory */
};

static void finish(struct tlsstream *t)
{
  if (t->sealed) { /* the socket's BIO writes again: the bufferevent's
                    * destructor finds the socket through it */
    BIO *sock = SSL_get_rbio(t->ssl);
    BIO_up_ref(sock);
    SSL_set0_wbio(t->ssl, sock);
  }
  evhttp_connection_free(t->evcon); /* the request, the bufferevent, the SSL, the socket */
  free(t);
}

static int io_open(void *arg, struct client *c)
{
  (void)c;
  struct tlsstream *t = arg;
  /* An earlier answer still being written (a pipelined stream request):
   * OpenSSL's pending record could not be sealed after it. */
  if (evbuffer_get_length(bufferevent_get_output(t->bev)) > 0)
    return -1;
  BIO *mem = BIO_new(BIO_s_mem());
  if (!mem)
    return -1;
  /* evhttp's bufferevent stops here: the client takes the socket's events. */
  bufferevent_disable(t->bev, EV_READ | EV_WRITE);
  bufferevent_setcb(t->bev, NULL, NULL, NULL, NULL);
  bufferevent_set_timeouts(t->bev, NULL, NULL);
  SSL_set0_wbio(t->ssl, mem);
  t->sealed = mem;
  return bufferevent_getfd(t->bev);
}

/* Moves the bytes OpenSSL wrote into the memory BIO to wire. */
static int take_sealed(struct tlsstream *t, struct outq *wire)
{
  char *p = NULL;
  long n = BIO_get_mem_data(t->sealed, &p);
  if (n <= 0)
    return 0;
  struct frame *f = frame_new(p, (size_t)n);
  int rc = f && outq_push(wire, f) == 0 ? 0 : -1;
  frame_unref(f);
  (void)BIO_reset(t->sealed);
  return rc;
}

static int io_seal(void *arg, struct outq *plain, struct outq *wire)
{
  struct tlsstream *t = arg;
  while (plain->bytes > 0) {
    char buf[TLS_RECORD_MAX];
    struct iovec iov[64];
    size_t offered = 0, n = 0;
    int k = outq_iov(plain, iov, 64, &offered);
    for (int i = 0; i < k && n < sizeof(buf); i++) {
      size_t len = iov[i].iov_len < sizeof(buf) - n ? iov[i].iov_len : sizeof(buf) - n;
      memcpy(buf + n, iov[i].iov_base, len);
      n += len;
    }
    ERR_clear_error();
    if (SSL_write(t->ssl, buf, (int)n) != (int)n)
      return -1; /* a memory BIO takes everything: the connection is broken */
    outq_consume(plain, n);
  }
  return take_sealed(t, wire);
}

static int io_read(void *arg, struct outq *wire)
{
  struct tlsstream *t = arg;
  char buf[512];
  for (;;) {
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, sizeof(buf));
    if (r > 0)
      continue; /* a stream carries nothing from the client after the request */
    int e = SSL_get_error(t->ssl, r);
    if (take_sealed(t, wire) != 0) /* e.g. an answer to a KeyUpdate */
      return -1;
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
  }
}

static void io_close(void *arg, int drained)
{
  (void)drained; /* the client wrote every byte itself */
  finish(arg);
}

static const struct stream_io_ops tls_io = {.sealed = 1, .open = io_open, .seal = io_seal,
                                            .read = io_read, .close = io_close};

int tlsstream_open(struct clients *cs, struct evhttp_request *req, const char *head,
                   size_t head_len, struct client_params *p)
{
  struct tlsstream *t = xcalloc(1, sizeof(*t));
  t->evcon = evhttp_request_get_connection(req);
  t->bev = evhttp_connection_get_bufferevent(t->evcon);
  t->ssl = bufferevent_openssl_get_ssl(t->bev);
  p->head = head;
  p->head_len = head_len;
  p->io = &tls_io;
  p->io_arg = t;
  int rc = client_open(cs, p);
  if (rc != 0) {
    free(t);
    return rc;
  }
  /* The request stays with evhttp until the stream closes: its headers
   * are not needed any more. */
  evhttp_clear_headers(evhttp_request_get_input_headers(req));
  evhttp_clear_headers(evhttp_request_get_output_headers(req));
  return 0;
}
