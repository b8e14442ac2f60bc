/* TLS for the listeners: one server context per gateway (OpenSSL), shared
 * by every worker and swapped whole when SIGHUP re-reads the certificate
 * and key, so new handshakes use the renewed pair while open connections
 * keep the one they started with. TLS 1.2 and 1.3 only, no compression,
 * no renegotiation, ALPN h2 (unless --no-http2) and http/1.1. */
#ifndef TINYSSE_TLS_H
#define TINYSSE_TLS_H

#include <stddef.h>

struct config;
struct tls;
typedef struct ssl_st SSL;

/* Loads cfg's --tls-cert and --tls-key. NULL with err when they cannot be
 * used (the message names the file and OpenSSL's reason). */
struct tls *tls_new(const struct config *cfg, char *err, size_t errlen);
void tls_free(struct tls *t);
/* Re-reads the certificate and key: 0 and the new pair serves new
 * handshakes; -1 with err and the old pair stays. Any thread. */
int tls_reload(struct tls *t, char *err, size_t errlen);
/* A server-side connection object from the current pair; NULL on OOM. */
SSL *tls_accept_new(struct tls *t);
/* The protocol ALPN chose for an established connection: 1 for h2, 0
 * otherwise (http/1.1, or no ALPN). */
int tls_is_h2(SSL *ssl);

#endif
