/* TLS server contexts (see tls.h). The context pointer is read under a
 * mutex only while SSL_new takes its own reference, so a reload may free
 * the old context at once: connections hold it until they close. */
#include "tls.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "config.h"

struct tls {
  pthread_mutex_t lock;
  SSL_CTX *ctx;
  const char *cert, *key;
  int no_h2;
};

/* OpenSSL's last error as text (or what), for a one-line message. */
static void ssl_reason(char *buf, size_t len, const char *what)
{
  /* The first error is the cause (the system's "No such file or
   * directory"); later ones say what OpenSSL was doing. */
  unsigned long e = ERR_peek_error();
  if (e)
    ERR_error_string_n(e, buf, len);
  else
    snprintf(buf, len, "%s", what);
  ERR_clear_error();
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
  (void)ssl;
  struct tls *t = arg;
  static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
  /* Offered in order of our preference: h2, then http/1.1; anything
   * else goes on without ALPN (and is served as HTTP/1.1). */
  unsigned char *sel = NULL;
  if (!t->no_h2 &&
      SSL_select_next_proto(&sel, outlen, h2, sizeof(h2) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *load(struct tls *t, char *err, size_t errlen)
{
  char why[256];
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    ssl_reason(why, sizeof(why), "out of memory");
    snprintf(err, errlen, "TLS: %s", why);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* Not SSL_OP_ENABLE_KTLS: streams are sealed in memory (tlsstream.c),
   * which a socket whose sends the kernel encrypts cannot take. */
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* An idle connection keeps no read or write buffer (about 34 KiB). */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* A record cut short by a full socket is retried from the bufferevent's
   * copy of the same bytes (tlsstream.c). */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* TLS 1.2: forward-secret AEAD suites only (what HTTP/2 requires); TLS
   * 1.3: AES-128-GCM first, as browsers offer it (the cheapest per byte
   * with AES-NI). One session ticket per handshake, not OpenSSL's two:
   * a browser resumes with one. */
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                "TLS_AES_256_GCM_SHA384");
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, t);
  if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
    ssl_reason(why, sizeof(why), "cannot read it");
    snprintf(err, errlen, "--tls-cert %s: %s", t->cert, why);
    SSL_CTX_free(ctx);
    return NULL;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    ssl_reason(why, sizeof(why), "cannot read it");
    snprintf(err, errlen, "--tls-key %s: %s", t->key, why);
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

struct tls *tls_new(const struct config *cfg, char *err, size_t errlen)
{
  struct tls *t = xcalloc(1, sizeof(*t));
  pthread_mutex_init(&t->lock, NULL);
  t->cert = cfg->tls_cert;
  t->key = cfg->tls_key;
  t->no_h2 = cfg->no_http2;
  if (!(t->ctx = load(t, err, errlen))) {
    tls_free(t);
    return NULL;
  }
  return t;
}

void tls_free(struct tls *t)
{
  if (!t)
    return;
  SSL_CTX_free(t->ctx);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

int tls_reload(struct tls *t, char *err, size_t errlen)
{
  SSL_CTX *ctx = load(t, err, errlen);
  if (!ctx)
    return -1;
  pthread_mutex_lock(&t->lock);
  SSL_CTX *old = t->ctx;
  t->ctx = ctx;
  pthread_mutex_unlock(&t->lock);
  SSL_CTX_free(old); /* connections made with it hold their own reference */
  return 0;
}

SSL *tls_accept_new(struct tls *t)
{
  pthread_mutex_lock(&t->lock);
  SSL *ssl = SSL_new(t->ctx);
  pthread_mutex_unlock(&t->lock);
  return ssl;
}

int tls_is_h2(SSL *ssl)
{
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  return n == 2 && memcmp(p, "h2", 2) == 0;
}
