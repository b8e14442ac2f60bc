/* Compact JWS, the form JWTs take: verifying a token against a key set
 * (alg and key choice, signature, then the registered claims) and signing
 * one. JWS writes ES256/ES384 signatures as raw r||s while EVP speaks DER, so
 * both directions convert. Part of the jose module (jose.h). */
#include "jose_impl.h"

#include <limits.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_MAX (JOSE_RSA_MAX_BITS / 8) /* the longest signature: RSA-8192 */
#define DER_MAX (2 * 48 + 16)           /* a DER ECDSA-Sig-Value on P-384 */
#define HEADER_MAX 48                   /* {"alg":"EdDSA","typ":"JWT","kid":""} and room */

static size_t ec_size(int alg)
{
  return alg == JOSE_ES256 ? 32 : 48;
}

/* Raw r||s (2 * size bytes) as DER into der (DER_MAX bytes); its length or 0. */
static size_t ecdsa_raw_to_der(const unsigned char *sig, size_t size, unsigned char *der)
{
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, (int)size, NULL), *s = BN_bin2bn(sig + size, (int)size, NULL);
  int len = 0;
  if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
    r = s = NULL; /* es owns them */
    len = i2d_ECDSA_SIG(es, NULL);
    if (len > 0 && len <= DER_MAX)
      len = i2d_ECDSA_SIG(es, &der);
    else
      len = 0;
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(es);
  return len > 0 ? (size_t)len : 0;
}

static int ecdsa_der_to_raw(const unsigned char *der, size_t len, size_t size, unsigned char *out)
{
  ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)len);
  const BIGNUM *r, *s;
  int ok = 0;
  if (es) {
    ECDSA_SIG_get0(es, &r, &s);
    ok = BN_bn2binpad(r, out, (int)size) == (int)size &&
         BN_bn2binpad(s, out + size, (int)size) == (int)size;
  }
  ECDSA_SIG_free(es);
  return ok;
}

static int hmac(int alg, const void *key, size_t klen, const unsigned char *msg, size_t mlen,
                unsigned char *mac, unsigned int *maclen)
{
  return klen <= INT_MAX && HMAC(jose_alg_md(alg), key, (int)klen, msg, mlen, mac, maclen) != NULL;
}

/* A digest context signing or verifying with alg on pkey, PSS set up for PS256. */
static EVP_MD_CTX *digest_ctx(int alg, EVP_PKEY *pkey, int sign)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *pctx = NULL;
  const EVP_MD *md = jose_alg_md(alg);
  int ok = ctx && (sign ? EVP_DigestSignInit(ctx, &pctx, md, NULL, pkey)
                        : EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey)) == 1;
  if (ok && alg == JOSE_PS256)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
  if (!ok) {
    EVP_MD_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static int verify_with(const struct jose_key *k, int alg, const unsigned char *msg, size_t mlen,
                       const unsigned char *sig, size_t slen)
{
  unsigned char mac[EVP_MAX_MD_SIZE], der[DER_MAX];
  unsigned int maclen = 0;
  EVP_MD_CTX *ctx;
  int ok;

  if (k->kty == JOSE_KTY_OCT)
    return hmac(alg, k->secret, k->secret_len, msg, mlen, mac, &maclen) && slen == maclen &&
           CRYPTO_memcmp(mac, sig, maclen) == 0;
  if (alg == JOSE_ES256 || alg == JOSE_ES384) {
    if (slen != 2 * ec_size(alg) || !(slen = ecdsa_raw_to_der(sig, ec_size(alg), der)))
      return 0;
    sig = der;
  } else if (k->kty == JOSE_KTY_RSA && slen != (size_t)EVP_PKEY_get_size(k->pkey)) {
    return 0;
  } else if (alg == JOSE_EDDSA && slen != 64) {
    return 0;
  }
  if (!(ctx = digest_ctx(alg, k->pkey, 0)))
    return 0;
  ok = EVP_DigestVerify(ctx, sig, slen, msg, mlen) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

/* 1 with *out when claim name is a finite number, 0 when absent, -1 else. */
static int number_claim(struct json_object *c, const char *name, double *out)
{
  struct json_object *v;
  if (!json_object_object_get_ex(c, name, &v))
    return 0;
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
    return -1;
  *out = json_object_get_double(v);
  return isfinite(*out) ? 1 : -1;
}

static int string_is(struct json_object *v, const char *s)
{
  size_t n = strlen(s);
  return json_object_is_type(v, json_type_string) && (size_t)json_object_get_string_len(v) == n &&
         memcmp(json_object_get_string(v), s, n) == 0;
}

/* NULL when the claims pass, else the reason. */
static const char *check_claims(struct json_object *c, const struct jose_opts *o, double now)
{
  struct json_object *v;
  double t;
  int rc;
  if ((rc = number_claim(c, "exp", &t)) < 0)
    return "malformed";
  if (rc && now >= t + o->leeway)
    return "expired";
  if ((rc = number_claim(c, "nbf", &t)) < 0)
    return "malformed";
  if (rc && now + o->leeway < t)
    return "not_yet_valid";
  if (o->iss && !(json_object_object_get_ex(c, "iss", &v) && string_is(v, o->iss)))
    return "bad_issuer";
  if (o->aud) {
    int found = 0;
    if (!json_object_object_get_ex(c, "aud", &v))
      v = NULL;
    if (json_object_is_type(v, json_type_array)) {
      for (size_t i = 0; i < json_object_array_length(v) && !found; i++)
        found = string_is(json_object_array_get_idx(v, i), o->aud);
    } else {
      found = string_is(v, o->aud);
    }
    if (!found)
      return "bad_audience";
  }
  for (size_t i = 0; i < o->nrequired; i++)
    if (!json_object_object_get_ex(c, o->required[i], &v) || !v)
      return "missing_claim";
  return NULL;
}

/* The keys that may have signed a token with alg and kid (NULL: none):
 * the key named kid, else the keys without a kid, or with none in the
 * token every key; only those fitting alg. Returns their count, with
 * *named set when some key carries kid. */
static size_t pick_keys(const struct jose_keyset *ks, int alg, const char *kid,
                        const struct jose_key **picks, int *named)
{
  size_t i, n = 0;
  *named = 0;
  for (i = 0; kid && i < ks->n; i++) {
    if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0) {
      *named = 1;
      if (jose_key_fits(&ks->keys[i], alg))
        picks[n++] = &ks->keys[i];
    }
  }
  for (i = 0; !*named && i < ks->n; i++)
    if ((!kid || !ks->keys[i].kid) && jose_key_fits(&ks->keys[i], alg))
      picks[n++] = &ks->keys[i];
  return n;
}

int jose_verify(const struct jose_keyset *ks, const char *token, size_t len,
                const struct jose_opts *o, double now, char *payload, size_t payload_cap,
                size_t *payload_len, char *kid_out, const char **reason)
{
  static const struct jose_opts no_opts;
  const struct jose_key *picks[JOSE_KEYS_MAX];
  struct json_object *header = NULL, *claims = NULL;
  const char *d1, *d2, *kid = NULL, *why = "malformed", *jwhy;
  unsigned char *buf = NULL;
  size_t npicks, kidlen = 0;
  int alg, named, rc = -1;
  long got;

  if (!o)
    o = &no_opts;
  if (kid_out)
    kid_out[0] = '\0';
  if (!ks || !token || len > JOSE_TOKEN_MAX || !(d1 = memchr(token, '.', len)) ||
      !(d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ||
      memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) || !(buf = malloc(len / 4 * 3 + 3)))
    goto out;
  got = jose_b64url_decode(token, (size_t)(d1 - token), buf);
  if (got < 0 || !(header = jose_json_parse((const char *)buf, (size_t)got, &jwhy)) ||
      !json_object_is_type(header, json_type_object))
    goto out;
  why = "unsupported_alg";
  if ((alg = jose_alg_parse(jose_json_string(header, "alg", NULL))) < 0)
    goto out;
  why = "malformed";
  if (json_object_object_get_ex(header, "crit", NULL)) /* no extension is understood */
    goto out;
  if (json_object_object_get_ex(header, "kid", NULL)) {
    kid = jose_json_string(header, "kid", &kidlen);
    if (!kid || kidlen == 0 || kidlen >= JOSE_KID_MAX)
      goto out;
    if (kid_out)
      memcpy(kid_out, kid, kidlen + 1);
  }
  why = "alg_not_allowed";
  if (!((o->algs ? o->algs : jose_keyset_algs(ks)) & JOSE_ALG_BIT(alg)))
    goto out;
  if ((npicks = pick_keys(ks, alg, kid, picks, &named)) == 0) {
    if (kid && !named)
      for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].kid)
          why = "unknown_kid";
    goto out;
  }
  why = "malformed";
  got = jose_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), buf);
  if (got < 0)
    goto out;
  why = "bad_signature";
  for (size_t i = 0;; i++) {
    if (i == npicks)
      goto out;
    if (verify_with(picks[i], alg, (const unsigned char *)token, (size_t)(d2 - token), buf, (size_t)got))
      break;
  }
  why = "malformed";
  got = jose_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf);
  if (got < 0 || !(claims = jose_json_parse((const char *)buf, (size_t)got, &jwhy)) ||
      !json_object_is_type(claims, json_type_object) || (payload && payload_cap < (size_t)got))
    goto out;
  if ((why = check_claims(claims, o, now)))
    goto out;
  if (payload)
    memcpy(payload, buf, (size_t)got);
  if (payload_len)
    *payload_len = (size_t)got;
  rc = 0;
out:
  if (rc != 0) {
    *reason = why;
    ERR_clear_error(); /* a failed EVP call queues errors: not this thread's TLS's business */
  }
  json_object_put(header);
  json_object_put(claims);
  free(buf);
  return rc;
}

size_t jose_sign_size(size_t payload_len, const char *kid)
{
  size_t hlen = HEADER_MAX + (kid ? 6 * strlen(kid) : 0); /* \u00XX at worst */
  return jose_b64url_encoded_len(hlen) + 1 + jose_b64url_encoded_len(payload_len) + 1 +
         jose_b64url_encoded_len(SIG_MAX) + 1;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

/* Signs msg with pkey into sig (SIG_MAX bytes); JWS form for ES*. */
static int sign_pkey(EVP_PKEY *pkey, int alg, const char *msg, size_t mlen, unsigned char *sig,
                     size_t *slen)
{
  EVP_MD_CTX *ctx = digest_ctx(alg, pkey, 1);
  unsigned char der[DER_MAX];
  size_t dlen = sizeof(der);
  int ec = alg == JOSE_ES256 || alg == JOSE_ES384, ok;
  *slen = SIG_MAX;
  ok = ctx && EVP_DigestSign(ctx, ec ? der : sig, ec ? &dlen : slen, (const unsigned char *)msg, mlen) == 1;
  if (ok && ec) {
    ok = ecdsa_der_to_raw(der, dlen, ec_size(alg), sig);
    *slen = 2 * ec_size(alg);
  }
  EVP_MD_CTX_free(ctx);
  return ok;
}

long jose_sign(const char *alg_name, const void *key, size_t keylen, const char *kid,
               const char *payload, size_t payload_len, char *out, size_t cap, char *err,
               size_t errlen)
{
  static const int default_alg[] = {[JOSE_KTY_OCT] = JOSE_HS256, [JOSE_KTY_RSA] = JOSE_RS256,
                                    [JOSE_KTY_P256] = JOSE_ES256, [JOSE_KTY_P384] = JOSE_ES384,
                                    [JOSE_KTY_ED25519] = JOSE_EDDSA};
  int pem = keylen >= 10 && memcmp(key, "-----BEGIN", 10) == 0, kty = JOSE_KTY_OCT, alg;
  const char *why = "out of memory", *htxt;
  struct json_object *hdr = NULL;
  EVP_PKEY *pkey = NULL;
  unsigned char sig[SIG_MAX];
  unsigned int maclen;
  size_t hlen, slen, o;
  long rc = -1;

  if (pem) {
    BIO *bio = keylen <= JOSE_JWKS_MAX ? BIO_new_mem_buf(key, (int)keylen) : NULL;
    pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    why = "key is not a PEM private key (encrypted keys are not read)";
    if (!pkey || (kty = jose_pkey_kty(pkey, &why)) < 0)
      goto out;
  }
  alg = alg_name ? jose_alg_parse(alg_name) : default_alg[kty];
  why = alg < 0 ? "unknown alg" : "alg does not fit the key";
  if (alg < 0 || jose_alg_kty(alg) != kty)
    goto out;
  why = "out of memory";
  if (!(hdr = json_object_new_object()) ||
      json_object_object_add(hdr, "alg", json_object_new_string(jose_alg_name(alg))) ||
      json_object_object_add(hdr, "typ", json_object_new_string("JWT")) ||
      (kid && json_object_object_add(hdr, "kid", json_object_new_string(kid))) ||
      !(htxt = json_object_to_json_string_length(hdr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &hlen)))
    goto out;
  why = "output buffer too small";
  if (cap < jose_b64url_encoded_len(hlen) + 1 + jose_b64url_encoded_len(payload_len) + 1 +
                jose_b64url_encoded_len(SIG_MAX) + 1)
    goto out;
  o = jose_b64url_encode((const unsigned char *)htxt, hlen, out);
  out[o++] = '.';
  o += jose_b64url_encode((const unsigned char *)payload, payload_len, out + o);
  why = "signing failed";
  if (pkey ? !sign_pkey(pkey, alg, out, o, sig, &slen)
           : !hmac(alg, key, keylen, (const unsigned char *)out, o, sig, &maclen))
    goto out;
  if (!pkey)
    slen = maclen;
  out[o++] = '.';
  o += jose_b64url_encode(sig, slen, out + o);
  out[o] = '\0';
  rc = (long)o;
out:
  if (rc < 0 && err && errlen)
    snprintf(err, errlen, "%s", why);
  ERR_clear_error();
  json_object_put(hdr);
  EVP_PKEY_free(pkey);
  return rc;
}
