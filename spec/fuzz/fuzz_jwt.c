/* libFuzzer target: key sets and JWT verification (lua/jose.c,
 * lua/jose_jws.c). The first byte picks what the rest is: a JWKS or JWK
 * (0), a PEM key (1), claims signed here with the fixed HMAC key and then
 * verified (4), or, for any other value, a token verified against a fixed
 * set (RSA, P-256, P-384, Ed25519 and oct JWKs) with options taken from the
 * byte's high bits. Nothing may crash or leak; a parsed set holds 1..64
 * keys; an accepted token's payload is a JSON object inside the token; a
 * token signed here never fails its signature. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "jose.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000.0

static const char fixed_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"RSA\",\"kid\":\"rsa-1\",\"e\":\"AQAB\",\"n\":\"uv9ZhU-IIcmeOehcyBIlU_FPSUSIfbLQCwVbP1vJ"
    "CeIfxzYv2VWPhKhPY2cJ3RzOWSKBCcpXSmda3lqcYtUG4WD03eRGOPIZdS186gHwtVDFWqqbJO433WBxbumOSOWYwOJMqEje"
    "oqRgcuoSNWX8DHFDp2iJQQmQfHroa13nuRXapfpqmtDYFDVZSYAA0CfQoCPUL9IY7mREQYoDd6tUaDHY6HlYCTOevR80VNph"
    "HzNjFUmxif7seXoN940vMzUaqhLvBJke0iF3gMkyI0Rm9DZOtiAJYuy91xd0P31abHQNGV0XVm3-FFXx6AxSQxB_hX0Xs_SR"
    "eOrcVXVdt5en4Q\"},"
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec-1\","
    "\"x\":\"HR7ScjMRbbiRu5ACyCLqjVfwe73CqdixXktnZcEYSWY\",\"y\":\"OjEXTiKZoUGIW9QOSJe7PzoRm300x59PS3ZDThLrZBY\"},"
    "{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"ec-2\","
    "\"x\":\"pn-VbAf8SN78nmgPpLSG-5AupysnT2pXbqeX-998Oa0K6-VjryZZdWEaXUAsoGLj\","
    "\"y\":\"n4KFZ0-L2-njg-DOLypjzLFIwSMX4ibMthHyd1tvpb4Rh7GrvpbeDTaXto8WieV0\"},"
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"vvCaOhhBSUsdA5GQd9X9-iINv33kMpj-cc801xY1cy0\"},"
    "{\"kty\":\"oct\",\"kid\":\"oct-1\",\"k\":\"ZnV6ei1zZWNyZXQ\"}"
    "]}";
#define SECRET "fuzz-secret"

static struct jose_keyset *fixed;

static void check_payload(size_t len, const char *payload, size_t plen)
{
  assert(plen <= len && plen > 0 && payload[0] != ' ');
  struct json_tokener *tok = json_tokener_new();
  struct json_object *o = json_tokener_parse_ex(tok, payload, (int)plen);
  assert(o && json_object_is_type(o, json_type_object));
  json_object_put(o);
  json_tokener_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const required[] = {"sub", "tenant"};
  char err[256], kid[JOSE_KID_MAX], *payload;
  const char *s = (const char *)data + 1, *why = NULL;
  size_t n = size ? size - 1 : 0, plen = 0;
  struct jose_keyset *ks;
  struct jose_opts o = {0};
  uint8_t sel;

  if (!fixed) {
    fixed = jose_keyset_parse(fixed_jwks, sizeof(fixed_jwks) - 1, err, sizeof(err));
    assert(fixed && jose_keyset_count(fixed) == 5);
  }
  if (size == 0 || size > (1 << 20))
    return 0;
  sel = data[0];
  if (sel == 0 || sel == 1) {
    ks = sel == 0 ? jose_keyset_parse(s, n, err, sizeof(err)) : jose_keyset_from_pem(s, n, err, sizeof(err));
    assert(!ks || (jose_keyset_count(ks) >= 1 && jose_keyset_count(ks) <= JOSE_KEYS_MAX));
    assert(ks || memchr(err, '\0', sizeof(err)));
    for (size_t i = 0; i < jose_keyset_count(ks); i++)
      assert(!jose_keyset_kid(ks, i) || jose_keyset_has_kid(ks, jose_keyset_kid(ks, i)));
    jose_keyset_unref(jose_keyset_ref(ks));
    jose_keyset_unref(ks);
    return 0;
  }
  if (sel == 4) { /* our own signature always holds */
    size_t cap = jose_sign_size(n, "oct-1");
    char *token = malloc(cap);
    long len = jose_sign("HS256", SECRET, strlen(SECRET), "oct-1", s, n, token, cap, err, sizeof(err));
    assert(len > 0 && (size_t)len < cap);
    payload = malloc((size_t)len);
    if (jose_verify(fixed, token, (size_t)len, NULL, NOW, payload, (size_t)len, &plen, kid, &why) == 0) {
      assert(plen == n && memcmp(payload, s, n) == 0 && strcmp(kid, "oct-1") == 0);
    } else {
      assert(len > JOSE_TOKEN_MAX || (strcmp(why, "bad_signature") != 0 && strcmp(why, "alg_not_allowed") != 0 &&
                                      strcmp(why, "unknown_kid") != 0));
    }
    free(payload);
    free(token);
    return 0;
  }
  if (sel & 8)
    o.iss = "https://idp.example";
  if (sel & 16)
    o.aud = "tinysse";
  if (sel & 32) {
    o.required = required;
    o.nrequired = 2;
  }
  if (sel & 64)
    o.algs = JOSE_ALG_BIT(JOSE_RS256) | JOSE_ALG_BIT(JOSE_ES256) | JOSE_ALG_BIT(JOSE_EDDSA);
  if (sel & 128)
    o.leeway = 60;
  payload = malloc(n + 1);
  if (jose_verify(fixed, s, n, &o, NOW, payload, n + 1, &plen, kid, &why) == 0)
    check_payload(n, payload, plen);
  else
    assert(why && why[0]);
  assert(strlen(kid) < JOSE_KID_MAX);
  free(payload);
  return 0;
}
