/* JOSE for token checks: key sets (a JWKS, one JWK, a PEM public key or an
 * HMAC secret) and compact JWS verification and signing, on OpenSSL 3's EVP
 * API and json-c. No Lua here: lua/jwt_lua.c binds it for scripts.
 * Returns: constructors give a new reference or NULL (with a message in err
 * when there is one); 0/-1 for operations. A key set never changes once built
 * and its count is atomic, so one set may be shared by many threads. */
#ifndef JOSE_H
#define JOSE_H

#include <stddef.h>

#define JOSE_TOKEN_MAX 16384    /* a longer token is "malformed" */
#define JOSE_JWKS_MAX (1 << 20) /* bytes of a JWKS or PEM document */
#define JOSE_KEYS_MAX 64        /* JWKs in one document */
#define JOSE_KID_MAX 256        /* a kid is at most JOSE_KID_MAX - 1 bytes */
#define JOSE_RSA_MIN_BITS 2048
#define JOSE_RSA_MAX_BITS 8192

enum jose_alg {
  JOSE_HS256, JOSE_HS384, JOSE_HS512,
  JOSE_RS256, JOSE_RS384, JOSE_RS512, JOSE_PS256,
  JOSE_ES256, JOSE_ES384,
  JOSE_EDDSA,
  JOSE_ALG_COUNT
};
#define JOSE_ALG_BIT(a) (1u << (a))

/* The alg named name (JWA spelling, case-sensitive), or -1: "none" is no alg. */
int jose_alg_parse(const char *name);
const char *jose_alg_name(int alg);

/* base64url without padding; decoding refuses '=', other characters outside
 * the alphabet and non-zero leftover bits (one encoding per value). */
size_t jose_b64url_encoded_len(size_t n);
size_t jose_b64url_encode(const unsigned char *s, size_t n, char *out);
long jose_b64url_decode(const char *s, size_t n, unsigned char *out); /* room: n / 4 * 3 + 2 */

struct jose_keyset;

/* A JWKS {"keys":[...]} or one JWK. Keys it cannot use (unknown kty or crv,
 * "use" other than "sig", an alg it does not do, RSA outside 2048..8192
 * bits) are skipped; NULL with err when the JSON is bad, the document is over
 * JOSE_JWKS_MAX bytes or JOSE_KEYS_MAX keys, or no key is usable. */
struct jose_keyset *jose_keyset_parse(const char *json, size_t len, char *err, size_t errlen);
/* A PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY") or certificate: RSA,
 * P-256, P-384 or Ed25519. A private key is refused. */
struct jose_keyset *jose_keyset_from_pem(const char *pem, size_t len, char *err, size_t errlen);
/* One HMAC key (copied), usable with HS256/384/512. NULL only without memory. */
struct jose_keyset *jose_keyset_from_secret(const void *secret, size_t len);
struct jose_keyset *jose_keyset_ref(struct jose_keyset *ks);
void jose_keyset_unref(struct jose_keyset *ks); /* NULL ok */
size_t jose_keyset_count(const struct jose_keyset *ks);
int jose_keyset_has_kid(const struct jose_keyset *ks, const char *kid);
/* The kid of key i (< count), or NULL when it has none; lives as long as ks. */
const char *jose_keyset_kid(const struct jose_keyset *ks, size_t i);
/* The algs some key of ks can verify, as JOSE_ALG_BITs. */
unsigned jose_keyset_algs(const struct jose_keyset *ks);

/* What a token must satisfy beyond its signature. Zeroed: any alg the keys
 * fit, no leeway, iss and aud not checked, no required claim. */
struct jose_opts {
  unsigned algs;               /* JOSE_ALG_BITs allowed; 0: all the keys fit */
  double leeway;               /* seconds of slack for exp and nbf, >= 0 */
  const char *iss;             /* the "iss" the token must carry, or NULL */
  const char *aud;             /* a value "aud" must be or contain, or NULL */
  const char *const *required; /* claims that must be present and not null */
  size_t nrequired;
};

/* Verifies the compact JWS token[0..len) against ks at Unix time now (o may
 * be NULL). Returns 0 and copies the payload (JSON text of an object, not
 * NUL-terminated) into payload (room for len bytes is always enough; NULL:
 * not wanted) with its length in *payload_len; or returns -1 with *reason one
 * of "malformed", "unsupported_alg" (unknown alg, or "none"),
 * "alg_not_allowed" (not in o->algs or fitting no key: an RS256 token against
 * an HMAC secret, an HS256 token against an RSA key), "unknown_kid" (the
 * token names a kid the set lacks and no kid-less key fits), "bad_signature",
 * "expired", "not_yet_valid", "bad_issuer", "bad_audience", "missing_claim".
 * kid (NULL or JOSE_KID_MAX bytes) gets the token's kid, "" when it has none
 * or its header is unreadable. */
int jose_verify(const struct jose_keyset *ks, const char *token, size_t len,
                const struct jose_opts *o, double now, char *payload, size_t payload_cap,
                size_t *payload_len, char *kid, const char **reason);

/* Bytes jose_sign may need for payload_len bytes of claims and kid (or NULL). */
size_t jose_sign_size(size_t payload_len, const char *kid);
/* Signs payload (the claims' JSON text, taken as is) into out as a compact JWS
 * with header {"alg":..,"typ":"JWT"[,"kid":..]}, NUL-terminated. key is a PEM
 * private key (RSA >= 2048 bits, P-256, P-384, Ed25519) when it starts with
 * "-----BEGIN", else an HMAC secret. alg NULL picks HS256 for a secret, else
 * RS256, ES256, ES384 or EdDSA by key type. Returns the token's length, or -1
 * with err (alg unknown or not fitting the key, bad key, out too small). */
long jose_sign(const char *alg, const void *key, size_t keylen, const char *kid,
               const char *payload, size_t payload_len, char *out, size_t cap, char *err,
               size_t errlen);

#endif
