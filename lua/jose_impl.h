/* Inside the jose module: the key set's layout and the helpers jose.c (key
 * sets) shares with jose_jws.c (verifying and signing). Not for other users. */
#ifndef JOSE_IMPL_H
#define JOSE_IMPL_H

#include "jose.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdatomic.h>

enum jose_kty { JOSE_KTY_OCT, JOSE_KTY_RSA, JOSE_KTY_P256, JOSE_KTY_P384, JOSE_KTY_ED25519 };

struct jose_key {
  int kty;       /* enum jose_kty */
  int alg;       /* the JWK's own "alg", or -1: any alg of its kty */
  char *kid;     /* NULL: none */
  EVP_PKEY *pkey; /* every kty but OCT; only read once built */
  unsigned char *secret; /* OCT: never NULL, even for an empty secret */
  size_t secret_len;
};

struct jose_keyset {
  atomic_int refs;
  size_t n;
  struct jose_key keys[];
};

/* The kty an alg needs, and its digest (NULL for EdDSA). */
int jose_alg_kty(int alg);
const EVP_MD *jose_alg_md(int alg);
int jose_key_fits(const struct jose_key *k, int alg);
/* The kty of an asymmetric key we can use, or -1 (RSA outside the size
 * bounds, other curves and types); *why says why not. */
int jose_pkey_kty(EVP_PKEY *pkey, const char **why);

/* Parses len bytes as exactly one JSON value (strict json-c: no NaN, no
 * trailing commas or garbage); NULL on error, with json-c's reason in *why. */
struct json_object *jose_json_parse(const char *s, size_t len, const char **why);
/* The string member name of o (NULL when absent, not a string or holding a NUL). */
const char *jose_json_string(struct json_object *o, const char *name, size_t *len);

#endif
