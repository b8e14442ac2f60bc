/* Key sets for JWT verification: JWKS and JWK documents (RSA, EC P-256/P-384,
 * OKP Ed25519, oct), PEM public keys and certificates, HMAC secrets, turned
 * into EVP_PKEYs once so verifying only reads them. Also the base64url and
 * JSON helpers jose_jws.c shares. Written on OpenSSL 3's EVP API: Debian's
 * libjwt 1.10 and libcjose 0.6 do neither EdDSA nor (libjwt) PS256. */
#define _GNU_SOURCE /* memmem */
#include "jose_impl.h"

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH 16
#define OCT_MAX 4096 /* bytes of an HMAC key in a JWK */

static const struct {
  const char *name;
  int kty;
  int bits; /* digest size: 256, 384, 512; 0 for EdDSA */
} alg_table[JOSE_ALG_COUNT] = {
    [JOSE_HS256] = {"HS256", JOSE_KTY_OCT, 256},  [JOSE_HS384] = {"HS384", JOSE_KTY_OCT, 384},
    [JOSE_HS512] = {"HS512", JOSE_KTY_OCT, 512},  [JOSE_RS256] = {"RS256", JOSE_KTY_RSA, 256},
    [JOSE_RS384] = {"RS384", JOSE_KTY_RSA, 384},  [JOSE_RS512] = {"RS512", JOSE_KTY_RSA, 512},
    [JOSE_PS256] = {"PS256", JOSE_KTY_RSA, 256},  [JOSE_ES256] = {"ES256", JOSE_KTY_P256, 256},
    [JOSE_ES384] = {"ES384", JOSE_KTY_P384, 384}, [JOSE_EDDSA] = {"EdDSA", JOSE_KTY_ED25519, 0},
};

int jose_alg_parse(const char *name)
{
  for (int a = 0; name && a < JOSE_ALG_COUNT; a++)
    if (strcmp(name, alg_table[a].name) == 0)
      return a;
  return -1;
}

const char *jose_alg_name(int alg)
{
  return alg >= 0 && alg < JOSE_ALG_COUNT ? alg_table[alg].name : NULL;
}

int jose_alg_kty(int alg)
{
  return alg_table[alg].kty;
}

const EVP_MD *jose_alg_md(int alg)
{
  switch (alg_table[alg].bits) {
  case 256: return EVP_sha256();
  case 384: return EVP_sha384();
  case 512: return EVP_sha512();
  default: return NULL;
  }
}

int jose_key_fits(const struct jose_key *k, int alg)
{
  return k->kty == alg_table[alg].kty && (k->alg < 0 || k->alg == alg);
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t jose_b64url_encoded_len(size_t n)
{
  return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t jose_b64url_encode(const unsigned char *s, size_t n, char *out)
{
  size_t i = 0, o = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned long v = (unsigned long)s[i] << 16 | (unsigned long)s[i + 1] << 8 | s[i + 2];
    out[o++] = b64url_alphabet[v >> 18 & 63];
    out[o++] = b64url_alphabet[v >> 12 & 63];
    out[o++] = b64url_alphabet[v >> 6 & 63];
    out[o++] = b64url_alphabet[v & 63];
  }
  if (n - i == 1) {
    out[o++] = b64url_alphabet[s[i] >> 2];
    out[o++] = b64url_alphabet[(s[i] & 3) << 4];
  } else if (n - i == 2) {
    unsigned long v = (unsigned long)s[i] << 8 | s[i + 1];
    out[o++] = b64url_alphabet[v >> 10 & 63];
    out[o++] = b64url_alphabet[v >> 4 & 63];
    out[o++] = b64url_alphabet[(v & 15) << 2];
  }
  return o;
}

static int b64url_value(unsigned char c)
{
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

long jose_b64url_decode(const char *s, size_t n, unsigned char *out)
{
  size_t i, o = 0;
  unsigned long acc = 0;
  if (n % 4 == 1)
    return -1;
  for (i = 0; i < n; i++) {
    int v = b64url_value((unsigned char)s[i]);
    if (v < 0)
      return -1;
    acc = acc << 6 | (unsigned long)v;
    if (i % 4 == 3) {
      out[o++] = (unsigned char)(acc >> 16);
      out[o++] = (unsigned char)(acc >> 8);
      out[o++] = (unsigned char)acc;
      acc = 0;
    }
  }
  if (n % 4 == 2) {
    if (acc & 15)
      return -1;
    out[o++] = (unsigned char)(acc >> 4);
  } else if (n % 4 == 3) {
    if (acc & 3)
      return -1;
    out[o++] = (unsigned char)(acc >> 10);
    out[o++] = (unsigned char)(acc >> 2);
  }
  return (long)o;
}

struct json_object *jose_json_parse(const char *s, size_t len, const char **why)
{
  struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
  struct json_object *o = NULL;
  size_t end;
  *why = "out of memory";
  if (!tok || len > (size_t)JOSE_JWKS_MAX)
    goto out;
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  o = json_tokener_parse_ex(tok, s, (int)len);
  end = json_tokener_get_parse_end(tok);
  while (o && end < len && (s[end] == ' ' || s[end] == '\t' || s[end] == '\r' || s[end] == '\n'))
    end++;
  *why = json_tokener_error_desc(json_tokener_get_error(tok));
  if (o && end != len) {
    json_object_put(o);
    o = NULL;
    *why = "trailing bytes after the JSON value";
  } else if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
    *why = "truncated";
  }
out:
  json_tokener_free(tok);
  return o;
}

const char *jose_json_string(struct json_object *o, const char *name, size_t *len)
{
  struct json_object *v;
  const char *s;
  size_t n;
  if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
    return NULL;
  s = json_object_get_string(v);
  n = (size_t)json_object_get_string_len(v);
  if (strlen(s) != n)
    return NULL;
  if (len)
    *len = n;
  return s;
}

int jose_pkey_kty(EVP_PKEY *pkey, const char **why)
{
  char group[64];
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits >= JOSE_RSA_MIN_BITS && bits <= JOSE_RSA_MAX_BITS)
      return JOSE_KTY_RSA;
    *why = "RSA key outside 2048..8192 bits";
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL))
      group[0] = '\0';
    if (strcmp(group, "prime256v1") == 0)
      return JOSE_KTY_P256;
    if (strcmp(group, "secp384r1") == 0)
      return JOSE_KTY_P384;
    *why = "EC curve other than P-256 or P-384";
  } else if (EVP_PKEY_is_a(pkey, "ED25519")) {
    return JOSE_KTY_ED25519;
  } else {
    *why = "key type other than RSA, EC or Ed25519";
  }
  return -1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  if (!err || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void key_clear(struct jose_key *k)
{
  free(k->kid);
  EVP_PKEY_free(k->pkey);
  if (k->secret)
    OPENSSL_clear_free(k->secret, k->secret_len ? k->secret_len : 1);
  memset(k, 0, sizeof(*k));
}

/* A set owning the n keys of keys (moved in), or NULL (keys cleared). */
static struct jose_keyset *keyset_new(struct jose_key *keys, size_t n)
{
  struct jose_keyset *ks = malloc(sizeof(*ks) + n * sizeof(keys[0]));
  if (!ks) {
    for (size_t i = 0; i < n; i++)
      key_clear(&keys[i]);
    return NULL;
  }
  atomic_init(&ks->refs, 1);
  ks->n = n;
  memcpy(ks->keys, keys, n * sizeof(keys[0]));
  return ks;
}

struct jose_keyset *jose_keyset_ref(struct jose_keyset *ks)
{
  if (ks)
    atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
  return ks;
}

void jose_keyset_unref(struct jose_keyset *ks)
{
  if (!ks || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < ks->n; i++)
    key_clear(&ks->keys[i]);
  free(ks);
}

size_t jose_keyset_count(const struct jose_keyset *ks)
{
  return ks ? ks->n : 0;
}

int jose_keyset_has_kid(const struct jose_keyset *ks, const char *kid)
{
  for (size_t i = 0; ks && kid && i < ks->n; i++)
    if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0)
      return 1;
  return 0;
}

const char *jose_keyset_kid(const struct jose_keyset *ks, size_t i)
{
  return ks && i < ks->n ? ks->keys[i].kid : NULL;
}

unsigned jose_keyset_algs(const struct jose_keyset *ks)
{
  unsigned algs = 0;
  for (size_t i = 0; ks && i < ks->n; i++)
    for (int a = 0; a < JOSE_ALG_COUNT; a++)
      if (jose_key_fits(&ks->keys[i], a))
        algs |= JOSE_ALG_BIT(a);
  return algs;
}

struct jose_keyset *jose_keyset_from_secret(const void *secret, size_t len)
{
  struct jose_key k = {.kty = JOSE_KTY_OCT, .alg = -1, .secret_len = len};
  if (!(k.secret = malloc(len ? len : 1)))
    return NULL;
  if (len)
    memcpy(k.secret, secret, len);
  return keyset_new(&k, 1);
}

/* Member name of jwk decoded from base64url (trailing '=' tolerated, as
 * some issuers pad) into a new buffer of 1..max bytes; NULL otherwise. */
static unsigned char *jwk_bytes(struct json_object *jwk, const char *name, size_t max, size_t *len)
{
  size_t n;
  const char *s = jose_json_string(jwk, name, &n);
  unsigned char *out;
  long got;
  if (!s)
    return NULL;
  while (n > 0 && s[n - 1] == '=')
    n--;
  if (n == 0 || n / 4 * 3 > max + 2 || !(out = malloc(n / 4 * 3 + 2)))
    return NULL;
  got = jose_b64url_decode(s, n, out);
  if (got <= 0 || (size_t)got > max) {
    free(out);
    return NULL;
  }
  *len = (size_t)got;
  return out;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM *params)
{
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    pkey = NULL;
  EVP_PKEY_CTX_free(ctx);
  return pkey;
}

static EVP_PKEY *rsa_from_jwk(struct json_object *jwk, const char **why)
{
  size_t nlen = 0, elen = 0;
  unsigned char *nb = jwk_bytes(jwk, "n", JOSE_RSA_MAX_BITS / 8 + 1, &nlen);
  unsigned char *eb = jwk_bytes(jwk, "e", 8, &elen);
  BIGNUM *n = NULL, *e = NULL;
  OSSL_PARAM_BLD *bld = NULL;
  OSSL_PARAM *params = NULL;
  EVP_PKEY *pkey = NULL;
  *why = "RSA JWK without a usable n and e";
  if (!nb || !eb || !(n = BN_bin2bn(nb, (int)nlen, NULL)) || !(e = BN_bin2bn(eb, (int)elen, NULL)))
    goto out;
  if (BN_num_bits(n) < JOSE_RSA_MIN_BITS || BN_num_bits(n) > JOSE_RSA_MAX_BITS) {
    *why = "RSA key outside 2048..8192 bits";
    goto out;
  }
  if (!BN_is_odd(e) || BN_is_one(e) || !(bld = OSSL_PARAM_BLD_new()) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
      !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
      !(params = OSSL_PARAM_BLD_to_param(bld)))
    goto out;
  pkey = pkey_from_params("RSA", params);
out:
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(n);
  BN_free(e);
  free(nb);
  free(eb);
  return pkey;
}

/* P-256/P-384 from x and y of exactly the curve's size; the import refuses
 * a point off the curve. */
static EVP_PKEY *ec_from_jwk(struct json_object *jwk, int kty, const char **why)
{
  size_t size = kty == JOSE_KTY_P256 ? 32 : 48, xlen = 0, ylen = 0;
  unsigned char *x = jwk_bytes(jwk, "x", size, &xlen), *y = jwk_bytes(jwk, "y", size, &ylen);
  unsigned char point[1 + 2 * 48];
  EVP_PKEY *pkey = NULL;
  *why = "EC JWK without a usable x and y";
  if (x && y && xlen == size && ylen == size) {
    OSSL_PARAM params[3];
    point[0] = 4; /* uncompressed */
    memcpy(point + 1, x, size);
    memcpy(point + 1 + size, y, size);
    params[0] = OSSL_PARAM_construct_utf8_string(
        OSSL_PKEY_PARAM_GROUP_NAME, kty == JOSE_KTY_P256 ? "prime256v1" : "secp384r1", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * size);
    params[2] = OSSL_PARAM_construct_end();
    if (!(pkey = pkey_from_params("EC", params)))
      *why = "EC point not on the curve";
  }
  free(x);
  free(y);
  return pkey;
}

/* Fills k from one JWK, or returns -1 with *why (the key is skipped). */
static int jwk_parse(struct json_object *jwk, struct jose_key *k, const char **why)
{
  const char *kty = jose_json_string(jwk, "kty", NULL), *crv = jose_json_string(jwk, "crv", NULL);
  const char *s;
  struct json_object *v;
  size_t n;

  memset(k, 0, sizeof(*k));
  k->alg = -1;
  *why = "JWK is not an object";
  if (!json_object_is_type(jwk, json_type_object))
    return -1;
  *why = "JWK \"use\" is not \"sig\"";
  if (json_object_object_get_ex(jwk, "use", &v) &&
      (!(s = jose_json_string(jwk, "use", NULL)) || strcmp(s, "sig") != 0))
    return -1;
  if (json_object_object_get_ex(jwk, "key_ops", &v)) {
    size_t i, len = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
    for (i = 0; i < len; i++) {
      struct json_object *op = json_object_array_get_idx(v, i);
      if (json_object_is_type(op, json_type_string) && strcmp(json_object_get_string(op), "verify") == 0)
        break;
    }
    *why = "JWK \"key_ops\" lacks \"verify\"";
    if (i == len)
      return -1;
  }
  if (json_object_object_get_ex(jwk, "kid", &v)) {
    *why = "JWK \"kid\" is not a string of 1..255 bytes";
    if (!(s = jose_json_string(jwk, "kid", &n)) || n == 0 || n >= JOSE_KID_MAX || !(k->kid = strdup(s)))
      goto err;
  }
  *why = "JWK kty or crv not supported";
  if (kty && strcmp(kty, "RSA") == 0) {
    k->kty = JOSE_KTY_RSA;
    k->pkey = rsa_from_jwk(jwk, why);
  } else if (kty && strcmp(kty, "EC") == 0 && crv && (!strcmp(crv, "P-256") || !strcmp(crv, "P-384"))) {
    k->kty = strcmp(crv, "P-256") == 0 ? JOSE_KTY_P256 : JOSE_KTY_P384;
    k->pkey = ec_from_jwk(jwk, k->kty, why);
  } else if (kty && strcmp(kty, "OKP") == 0 && crv && strcmp(crv, "Ed25519") == 0) {
    unsigned char *x = jwk_bytes(jwk, "x", 32, &n);
    k->kty = JOSE_KTY_ED25519;
    if (x && n == 32)
      k->pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, 32);
    *why = "OKP JWK without a 32-byte x";
    free(x);
  } else if (kty && strcmp(kty, "oct") == 0) {
    k->kty = JOSE_KTY_OCT;
    k->secret = jwk_bytes(jwk, "k", OCT_MAX, &k->secret_len);
    *why = "oct JWK without a usable k";
    if (!k->secret)
      goto err;
  } else {
    goto err;
  }
  if (k->kty != JOSE_KTY_OCT && !k->pkey)
    goto err;
  if (json_object_object_get_ex(jwk, "alg", &v)) {
    s = jose_json_string(jwk, "alg", NULL);
    k->alg = jose_alg_parse(s);
    *why = "JWK \"alg\" not supported or not fitting its kty";
    if (k->alg < 0 || jose_alg_kty(k->alg) != k->kty)
      goto err;
  }
  return 0;
err:
  key_clear(k);
  return -1;
}

struct jose_keyset *jose_keyset_parse(const char *json, size_t len, char *err, size_t errlen)
{
  struct jose_key keys[JOSE_KEYS_MAX];
  struct json_object *doc, *list = NULL;
  const char *why = NULL, *first_skip = NULL;
  size_t i, total = 1, n = 0;

  if (!json || len > JOSE_JWKS_MAX) {
    set_err(err, errlen, "JWKS document over %d bytes", JOSE_JWKS_MAX);
    return NULL;
  }
  if (!(doc = jose_json_parse(json, len, &why))) {
    set_err(err, errlen, "JWKS is not JSON: %s", why);
    return NULL;
  }
  if (!json_object_is_type(doc, json_type_object)) {
    set_err(err, errlen, "JWKS is not a JSON object");
    goto fail;
  }
  if (json_object_object_get_ex(doc, "keys", &list)) {
    if (!json_object_is_type(list, json_type_array)) {
      set_err(err, errlen, "JWKS \"keys\" is not an array");
      goto fail;
    }
    total = json_object_array_length(list);
    if (total > JOSE_KEYS_MAX) {
      set_err(err, errlen, "JWKS has %zu keys (at most %d)", total, JOSE_KEYS_MAX);
      goto fail;
    }
  } else if (!json_object_object_get_ex(doc, "kty", NULL)) {
    set_err(err, errlen, "neither a JWKS (no \"keys\") nor a JWK (no \"kty\")");
    goto fail;
  }
  for (i = 0; i < total; i++) {
    if (jwk_parse(list ? json_object_array_get_idx(list, i) : doc, &keys[n], &why) == 0)
      n++;
    else if (!first_skip)
      first_skip = why;
  }
  ERR_clear_error();
  json_object_put(doc);
  if (n == 0) {
    set_err(err, errlen, "no usable key in the JWKS (%s)", first_skip ? first_skip : "it is empty");
    return NULL;
  }
  struct jose_keyset *ks = keyset_new(keys, n);
  if (!ks)
    set_err(err, errlen, "out of memory");
  return ks;
fail:
  json_object_put(doc);
  return NULL;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

struct jose_keyset *jose_keyset_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
  struct jose_key k = {.alg = -1};
  const char *why = "no PEM public key or certificate";
  BIO *bio = NULL;
  X509 *cert = NULL;
  OSSL_DECODER_CTX *dctx = NULL;

  if (!pem || len > JOSE_JWKS_MAX || !(bio = BIO_new_mem_buf(pem, (int)len)))
    goto fail;
  if (memmem(pem, len, "PRIVATE KEY-----", 16)) {
    why = "a PEM private key: give the public key";
    goto fail;
  }
  if (memmem(pem, len, "-----BEGIN CERTIFICATE-----", 27)) {
    if ((cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)))
      k.pkey = X509_get_pubkey(cert);
  } else {
    dctx = OSSL_DECODER_CTX_new_for_pkey(&k.pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dctx && OSSL_DECODER_from_bio(dctx, bio) != 1) {
      EVP_PKEY_free(k.pkey);
      k.pkey = NULL;
    }
  }
  if (!k.pkey || (k.kty = jose_pkey_kty(k.pkey, &why)) < 0)
    goto fail;
  OSSL_DECODER_CTX_free(dctx);
  X509_free(cert);
  BIO_free(bio);
  ERR_clear_error();
  return keyset_new(&k, 1);
fail:
  set_err(err, errlen, "%s", why);
  EVP_PKEY_free(k.pkey);
  OSSL_DECODER_CTX_free(dctx);
  X509_free(cert);
  BIO_free(bio);
  ERR_clear_error();
  return NULL;
}
