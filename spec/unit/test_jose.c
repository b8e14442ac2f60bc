/* Unit tests for lua/jose.c and lua/jose_jws.c: keys made with EVP at run
 * time (RSA 2048, P-256, P-384, Ed25519); every algorithm signed and
 * verified; the refusals (wrong key, alg swap, none, bad signatures, claims,
 * kids, JWK alg, small RSA); JWKS parsing. */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <time.h>

#include "check.h"
#include "jose.h"
#include "jose_impl.h"

static double now;

static char *pem_of(EVP_PKEY *pkey, int private)
{
  BIO *bio = BIO_new(BIO_s_mem());
  char *data, *out;
  long n;
  if (private)
    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
  else
    PEM_write_bio_PUBKEY(bio, pkey);
  n = BIO_get_mem_data(bio, &data);
  out = malloc((size_t)n + 1);
  memcpy(out, data, (size_t)n);
  out[n] = '\0';
  BIO_free(bio);
  return out;
}

static void b64(char *out, const unsigned char *s, size_t n)
{
  out[jose_b64url_encode(s, n, out)] = '\0';
}

/* A JWK (no closing brace) for pkey's public half, with kid. */
static void jwk_of(char *out, size_t cap, EVP_PKEY *pkey, const char *kid)
{
  char a[700], b[700]; /* RSA 2048 at most: 342 characters */
  unsigned char buf[512];
  size_t n;
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    BIGNUM *bn = NULL, *be = NULL;
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &bn);
    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &be);
    b64(a, buf, (size_t)BN_bn2bin(bn, buf));
    b64(b, buf, (size_t)BN_bn2bin(be, buf));
    snprintf(out, cap, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"", kid, a, b);
    BN_free(bn);
    BN_free(be);
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf), &n);
    b64(a, buf + 1, (n - 1) / 2);
    b64(b, buf + 1 + (n - 1) / 2, (n - 1) / 2);
    snprintf(out, cap, "{\"kty\":\"EC\",\"crv\":\"%s\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"",
             n == 65 ? "P-256" : "P-384", kid, a, b);
  } else {
    n = sizeof(buf);
    EVP_PKEY_get_raw_public_key(pkey, buf, &n);
    b64(a, buf, n);
    snprintf(out, cap, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"%s\",\"x\":\"%s\"", kid, a);
  }
}

/* A token from raw header and payload JSON and signature bytes. */
static char *raw_token(const char *header, const char *payload, const unsigned char *sig, size_t slen)
{
  char *t = malloc(jose_sign_size(strlen(header) + strlen(payload), NULL) + 2 * slen + 64), *p = t;
  p += jose_b64url_encode((const unsigned char *)header, strlen(header), p);
  *p++ = '.';
  p += jose_b64url_encode((const unsigned char *)payload, strlen(payload), p);
  *p++ = '.';
  p += jose_b64url_encode(sig, slen, p);
  *p = '\0';
  return t;
}

static char *sign(const char *alg, const char *key, size_t keylen, const char *kid, const char *payload)
{
  size_t cap = jose_sign_size(strlen(payload), kid);
  char *out = malloc(cap), err[128];
  long n = jose_sign(alg, key, keylen, kid, payload, strlen(payload), out, cap, err, sizeof(err));
  if (n < 0)
    fprintf(stderr, "jose_sign %s: %s\n", alg ? alg : "default", err);
  CHECK(n > 0 && (size_t)n == strlen(out));
  return out;
}

/* "ok" or the reason the token is refused. */
static const char *verify(const struct jose_keyset *ks, const char *tok, const struct jose_opts *o)
{
  char payload[JOSE_TOKEN_MAX], kid[JOSE_KID_MAX];
  size_t plen = 0;
  const char *why = NULL;
  if (jose_verify(ks, tok, strlen(tok), o, now, payload, sizeof(payload), &plen, kid, &why) == 0)
    return plen > 0 && payload[0] == '{' ? "ok" : "bad payload";
  return why;
}

static struct jose_keyset *pem_set(EVP_PKEY *pkey)
{
  char *pem = pem_of(pkey, 0), err[128] = "";
  struct jose_keyset *ks = jose_keyset_from_pem(pem, strlen(pem), err, sizeof(err));
  if (!ks)
    fprintf(stderr, "from_pem: %s\n", err);
  free(pem);
  return ks;
}

static void test_every_alg(EVP_PKEY *keys[4], EVP_PKEY *others[4])
{
  static const struct { const char *alg; int key; } cases[] = {
      {"RS256", 0}, {"RS384", 0}, {"RS512", 0}, {"PS256", 0},
      {"ES256", 1}, {"ES384", 2}, {"EdDSA", 3},
  };
  const char *payload = "{\"sub\":\"42\"}";
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *priv = pem_of(keys[cases[i].key], 1);
    struct jose_keyset *good = pem_set(keys[cases[i].key]), *bad = pem_set(others[cases[i].key]);
    char *tok = sign(cases[i].alg, priv, strlen(priv), NULL, payload);
    CHECK(good && bad);
    CHECK_STR(verify(good, tok, NULL), "ok");
    CHECK_STR(verify(bad, tok, NULL), "bad_signature");
    /* every other key type refuses it without trying a signature */
    for (int k = 0; k < 4; k++) {
      if (k == cases[i].key)
        continue;
      struct jose_keyset *other = pem_set(keys[k]);
      CHECK_STR(verify(other, tok, NULL), "alg_not_allowed");
      jose_keyset_unref(other);
    }
    /* a cut or garbage signature */
    unsigned char sig[1100];
    char *s = strrchr(tok, '.') + 1;
    long n = jose_b64url_decode(s, strlen(s), sig);
    CHECK(n > 1);
    s[jose_b64url_encode(sig, (size_t)n - 1, s)] = '\0';
    CHECK_STR(verify(good, tok, NULL), "bad_signature");
    strcpy(strrchr(tok, '.') + 1, "AAAA");
    CHECK_STR(verify(good, tok, NULL), "bad_signature");
    strcpy(strrchr(tok, '.') + 1, "AA!A");
    CHECK_STR(verify(good, tok, NULL), "malformed");
    free(tok);
    free(priv);
    jose_keyset_unref(good);
    jose_keyset_unref(bad);
  }
  /* the default alg follows the key */
  char *priv = pem_of(keys[3], 1);
  char *tok = sign(NULL, priv, strlen(priv), NULL, payload);
  CHECK(strncmp(tok, "eyJhbGciOiJFZERTQSIs", 20) == 0); /* {"alg":"EdDSA", */
  free(tok);
  free(priv);
}

static void test_hmac(void)
{
  static const char *const algs[] = {"HS256", "HS384", "HS512"};
  struct jose_keyset *ks = jose_keyset_from_secret("k3y", 3), *other = jose_keyset_from_secret("k3Y", 3);
  for (int i = 0; i < 3; i++) {
    char *tok = sign(algs[i], "k3y", 3, NULL, "{}");
    CHECK_STR(verify(ks, tok, NULL), "ok");
    CHECK_STR(verify(other, tok, NULL), "bad_signature");
    struct jose_opts o = {.algs = JOSE_ALG_BIT(JOSE_HS256)};
    CHECK_STR(verify(ks, tok, &o), i == 0 ? "ok" : "alg_not_allowed");
    free(tok);
  }
  /* the jwt.io example */
  jose_keyset_unref(ks);
  ks = jose_keyset_from_secret("your-256-bit-secret", 19);
  CHECK_STR(verify(ks, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpva"
                       "G4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", NULL),
            "ok");
  jose_keyset_unref(ks);
  jose_keyset_unref(other);
}

/* The classic confusion: the RSA public key's PEM text as an HS256 secret. */
static void test_alg_swap_and_none(EVP_PKEY *rsa)
{
  char *pub = pem_of(rsa, 0), jwk[2048], doc[2200];
  unsigned char mac[32];
  unsigned int maclen;
  struct jose_keyset *ks = pem_set(rsa), *jwks;
  char *input = raw_token("{\"alg\":\"HS256\"}", "{\"sub\":\"1\"}", NULL, 0);
  input[strlen(input) - 1] = '\0';
  HMAC(EVP_sha256(), pub, (int)strlen(pub), (unsigned char *)input, strlen(input), mac, &maclen);
  char *tok = raw_token("{\"alg\":\"HS256\"}", "{\"sub\":\"1\"}", mac, maclen);
  struct jose_opts hs = {.algs = JOSE_ALG_BIT(JOSE_HS256) | JOSE_ALG_BIT(JOSE_RS256)};
  CHECK_STR(verify(ks, tok, NULL), "alg_not_allowed");
  CHECK_STR(verify(ks, tok, &hs), "alg_not_allowed");
  jwk_of(jwk, sizeof(jwk), rsa, "r");
  snprintf(doc, sizeof(doc), "{\"keys\":[%s}]}", jwk);
  CHECK((jwks = jose_keyset_parse(doc, strlen(doc), NULL, 0)) != NULL);
  CHECK_STR(verify(jwks, tok, &hs), "alg_not_allowed");
  free(tok);
  free(input);

  for (int i = 0; i < 3; i++) {
    static const char *const hdr[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"typ\":\"JWT\"}"};
    tok = raw_token(hdr[i], "{\"sub\":\"1\"}", NULL, 0);
    CHECK_STR(verify(ks, tok, NULL), "unsupported_alg");
    CHECK_STR(verify(ks, tok, &hs), "unsupported_alg");
    free(tok);
  }
  free(pub);
  jose_keyset_unref(ks);
  jose_keyset_unref(jwks);
}

static void test_es256_lengths(EVP_PKEY *p256)
{
  char *priv = pem_of(p256, 1), *tok = sign("ES256", priv, strlen(priv), NULL, "{}");
  struct jose_keyset *ks = pem_set(p256);
  unsigned char sig[80];
  char *dot = strrchr(tok, '.');
  long n = jose_b64url_decode(dot + 1, strlen(dot + 1), sig);
  CHECK_EQ(n, 64);
  sig[64] = 0;
  char *longer = malloc(strlen(tok) + 8);
  memcpy(longer, tok, (size_t)(dot + 1 - tok));
  longer[dot + 1 - tok + jose_b64url_encode(sig, 65, longer + (dot + 1 - tok))] = '\0';
  CHECK_STR(verify(ks, longer, NULL), "bad_signature");
  longer[dot + 1 - tok + jose_b64url_encode(sig, 63, longer + (dot + 1 - tok))] = '\0';
  CHECK_STR(verify(ks, longer, NULL), "bad_signature");
  free(longer);
  free(tok);
  free(priv);
  jose_keyset_unref(ks);
}

static void test_claims(void)
{
  struct jose_keyset *ks = jose_keyset_from_secret("s", 1);
  char payload[256], *tok;
  const char *req[] = {"sub", "tenant"};
  struct jose_opts lee = {.leeway = 30}, iss = {.iss = "https://idp"}, aud = {.aud = "tinysse"},
                   need = {.required = req, .nrequired = 2};
  snprintf(payload, sizeof(payload), "{\"exp\":%.0f}", now - 10);
  tok = sign("HS256", "s", 1, NULL, payload);
  CHECK_STR(verify(ks, tok, NULL), "expired");
  CHECK_STR(verify(ks, tok, &lee), "ok");
  free(tok);
  snprintf(payload, sizeof(payload), "{\"nbf\":%.0f}", now + 10);
  tok = sign("HS256", "s", 1, NULL, payload);
  CHECK_STR(verify(ks, tok, NULL), "not_yet_valid");
  CHECK_STR(verify(ks, tok, &lee), "ok");
  free(tok);
  const struct { const char *payload; struct jose_opts *o; const char *want; } cases[] = {
      {"{\"exp\":\"tomorrow\"}", NULL, "malformed"},
      {"{\"nbf\":null}", NULL, "malformed"},
      {"[1]", NULL, "malformed"},
      {"{\"iss\":\"https://idp\"}", &iss, "ok"},
      {"{\"iss\":\"https://idp/\"}", &iss, "bad_issuer"},
      {"{\"iss\":[\"https://idp\"]}", &iss, "bad_issuer"},
      {"{}", &iss, "bad_issuer"},
      {"{\"aud\":\"tinysse\"}", &aud, "ok"},
      {"{\"aud\":[\"a\",\"tinysse\"]}", &aud, "ok"},
      {"{\"aud\":[\"a\",\"b\"]}", &aud, "bad_audience"},
      {"{\"aud\":\"tinysse2\"}", &aud, "bad_audience"},
      {"{}", &aud, "bad_audience"},
      {"{\"sub\":\"1\",\"tenant\":\"a\"}", &need, "ok"},
      {"{\"sub\":\"1\"}", &need, "missing_claim"},
      {"{\"sub\":\"1\",\"tenant\":null}", &need, "missing_claim"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tok = sign("HS256", "s", 1, NULL, cases[i].payload);
    const char *got = verify(ks, tok, cases[i].o);
    if (strcmp(got, cases[i].want) != 0)
      fprintf(stderr, "claims case %zu: %s\n", i, cases[i].payload);
    CHECK_STR(got, cases[i].want);
    free(tok);
  }
  /* header oddities and size */
  static const char *const bad[] = {"{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{\"alg\":\"HS256\",\"kid\":7}",
                                    "{\"alg\":\"HS256\",\"kid\":\"\"}", "[\"HS256\"]", "{\"alg\":\"HS256\"} x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tok = raw_token(bad[i], "{}", (const unsigned char *)"x", 1);
    CHECK_STR(verify(ks, tok, NULL), "malformed");
    free(tok);
  }
  char *big = malloc(JOSE_TOKEN_MAX + 2);
  memset(big, 'a', JOSE_TOKEN_MAX + 1);
  big[10] = big[20] = '.';
  big[JOSE_TOKEN_MAX + 1] = '\0';
  CHECK_STR(verify(ks, big, NULL), "malformed");
  free(big);
  jose_keyset_unref(ks);
}

static void test_jwks(EVP_PKEY *keys[4], EVP_PKEY *others[4], EVP_PKEY *rsa1024)
{
  char jwk[5][2048], doc[12000], err[200], *privs[2], *tok;
  struct jose_keyset *ks;
  jwk_of(jwk[0], sizeof(jwk[0]), keys[0], "rsa-a");
  jwk_of(jwk[1], sizeof(jwk[1]), others[0], "rsa-b");
  jwk_of(jwk[2], sizeof(jwk[2]), keys[1], "p256");
  jwk_of(jwk[3], sizeof(jwk[3]), keys[2], "p384");
  jwk_of(jwk[4], sizeof(jwk[4]), keys[3], "ed");
  snprintf(doc, sizeof(doc),
           "{\"keys\":[%s},%s,\"alg\":\"RS384\"},%s},%s},%s},"
           "{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"c2VjcmV0\"},"
           "{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"},"
           "{\"kty\":\"EC\",\"crv\":\"P-521\",\"kid\":\"y\",\"x\":\"AA\",\"y\":\"AA\"},"
           "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"z\",\"x\":\"%s\",\"y\":\"%s\"},"
           "{\"kty\":\"XYZ\"}]}",
           jwk[0], jwk[1], jwk[2], jwk[3], jwk[4],
           "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  ks = jose_keyset_parse(doc, strlen(doc), err, sizeof(err));
  CHECK(ks != NULL);
  CHECK_EQ(jose_keyset_count(ks), 6); /* enc, P-521, off-curve and XYZ skipped */
  CHECK(jose_keyset_has_kid(ks, "rsa-a") && jose_keyset_has_kid(ks, "rsa-b") && jose_keyset_has_kid(ks, "p256") &&
        jose_keyset_has_kid(ks, "p384") && jose_keyset_has_kid(ks, "ed") && jose_keyset_has_kid(ks, "hs"));
  CHECK(!jose_keyset_has_kid(ks, "x") && !jose_keyset_has_kid(ks, "z"));
  CHECK_STR(jose_keyset_kid(ks, 0), "rsa-a");
  CHECK(jose_keyset_ref(ks) == ks);
  jose_keyset_unref(ks);

  privs[0] = pem_of(keys[0], 1);
  privs[1] = pem_of(others[0], 1);
  tok = sign("RS256", privs[0], strlen(privs[0]), "rsa-a", "{}");
  CHECK_STR(verify(ks, tok, NULL), "ok");
  free(tok);
  tok = sign("RS256", privs[0], strlen(privs[0]), "nope", "{}");
  CHECK_STR(verify(ks, tok, NULL), "unknown_kid");
  free(tok);
  tok = sign("RS256", privs[1], strlen(privs[1]), "rsa-a", "{}"); /* kid names the other key */
  CHECK_STR(verify(ks, tok, NULL), "bad_signature");
  free(tok);
  tok = sign("RS256", privs[0], strlen(privs[0]), NULL, "{}"); /* no kid: every RSA key is tried */
  CHECK_STR(verify(ks, tok, NULL), "ok");
  free(tok);
  tok = sign("RS256", privs[1], strlen(privs[1]), "rsa-b", "{}"); /* rsa-b says "alg":"RS384" */
  CHECK_STR(verify(ks, tok, NULL), "alg_not_allowed");
  free(tok);
  tok = sign("RS384", privs[1], strlen(privs[1]), "rsa-b", "{}");
  CHECK_STR(verify(ks, tok, NULL), "ok");
  free(tok);
  tok = sign("HS256", "secret", 6, "hs", "{}");
  CHECK_STR(verify(ks, tok, NULL), "ok");
  struct jose_opts only_rs = {.algs = JOSE_ALG_BIT(JOSE_RS256)};
  CHECK_STR(verify(ks, tok, &only_rs), "alg_not_allowed");
  free(tok);
  free(privs[0]);
  free(privs[1]);
  jose_keyset_unref(ks);

  /* one JWK alone; refusals */
  snprintf(doc, sizeof(doc), "%s}", jwk[4]);
  CHECK((ks = jose_keyset_parse(doc, strlen(doc), err, sizeof(err))) && jose_keyset_count(ks) == 1);
  jose_keyset_unref(ks);
  jwk_of(jwk[0], sizeof(jwk[0]), rsa1024, "small");
  snprintf(doc, sizeof(doc), "{\"keys\":[%s}]}", jwk[0]);
  CHECK(jose_keyset_parse(doc, strlen(doc), err, sizeof(err)) == NULL && strstr(err, "2048"));
  char *pem = pem_of(rsa1024, 0);
  CHECK(jose_keyset_from_pem(pem, strlen(pem), err, sizeof(err)) == NULL && strstr(err, "2048"));
  free(pem);
  pem = pem_of(keys[0], 1);
  CHECK(jose_keyset_from_pem(pem, strlen(pem), err, sizeof(err)) == NULL && strstr(err, "private"));
  free(pem);
  static const char *const bad[] = {"", "{", "{\"keys\":{}}", "{\"keys\":[]}", "{\"keys\":[1]}",
                                    "{\"a\":1}", "[]", "{\"kty\":\"oct\",\"k\":\"\"}", "{\"keys\":[]} x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK(jose_keyset_parse(bad[i], strlen(bad[i]), err, sizeof(err)) == NULL);
  char *many = malloc(65 * 40 + 32), *p = many;
  p += sprintf(p, "{\"keys\":[");
  for (int i = 0; i < 65; i++)
    p += sprintf(p, "%s{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}", i ? "," : "");
  strcpy(p, "]}");
  CHECK(jose_keyset_parse(many, strlen(many), err, sizeof(err)) == NULL && strstr(err, "64"));
  free(many);
}

int main(void)
{
  EVP_PKEY *keys[4], *others[4], *rsa1024;
  now = (double)time(NULL);
  keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
  keys[3] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  others[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  others[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  others[2] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
  others[3] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
  for (int i = 0; i < 4; i++)
    CHECK(keys[i] && others[i]);
  CHECK(rsa1024 != NULL);

  test_every_alg(keys, others);
  test_hmac();
  test_alg_swap_and_none(keys[0]);
  test_es256_lengths(keys[1]);
  test_claims();
  test_jwks(keys, others, rsa1024);
  CHECK_EQ(jose_alg_parse("none"), -1);
  CHECK_STR(jose_alg_name(JOSE_EDDSA), "EdDSA");

  for (int i = 0; i < 4; i++) {
    EVP_PKEY_free(keys[i]);
    EVP_PKEY_free(others[i]);
  }
  EVP_PKEY_free(rsa1024);
  return check_done();
}
