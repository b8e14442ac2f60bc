/* tinysse.jwt_verify, jwt_sign, jwks and jwks_info: the Lua face of the jose
 * module. A key set a script keeps lives in a "tinysse.jwks" userdata whose
 * __gc drops the reference; a reference taken for one call is dropped before
 * the next Lua call that could raise, so an error never leaks one. A URL key
 * set holds no keys itself: the gateway fetches them (jwks_fetch) and every
 * verify asks it for the newest. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "jwt_lua.h"

#include "jose.h"

#include <lauxlib.h>
#include <lua.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JWKS_META "tinysse.jwks"
#define PEM_CACHE_MAX 16 /* PEM keys given as strings, parsed once per state */
#define REQUIRED_MAX 32
#define DEFAULT_REFRESH 300.0

/* The functions' one upvalue; its user value is the PEM cache {pem = set}. */
struct jwt_host {
  void *ud;
  jwt_lua_fetch_fn fetch;
  int pem_cached;
};

struct jwks_ud {
  struct jose_keyset *set; /* NULL for a URL set: its user value is the URL */
  double refresh;
  int is_url;
};

static struct jwt_host *host_of(lua_State *L)
{
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int is_pem(const char *s, size_t len)
{
  return len >= 10 && memcmp(s, "-----BEGIN", 10) == 0;
}

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) / 1000.0;
}

/* cjson.<fn>(value at the top), replacing it with the result. With protect,
 * returns 0 and leaves nothing when it fails (memory errors still raise). */
static int cjson_call(lua_State *L, const char *fn, int protect)
{
  int rc;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_rotate(L, -2, 1);
  if (!protect) {
    lua_call(L, 1, 1);
    return 1;
  }
  if ((rc = lua_pcall(L, 1, 1, 0)) == LUA_ERRMEM)
    lua_error(L);
  if (rc != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int fail(lua_State *L, const char *reason)
{
  lua_pushnil(L);
  lua_pushstring(L, reason);
  return 2;
}

static struct jwks_ud *jwks_push(lua_State *L)
{
  struct jwks_ud *u = lua_newuserdatauv(L, sizeof(*u), 1);
  memset(u, 0, sizeof(*u));
  luaL_setmetatable(L, JWKS_META);
  return u;
}

static int jwks_gc(lua_State *L)
{
  struct jwks_ud *u = luaL_checkudata(L, 1, JWKS_META);
  jose_keyset_unref(u->set);
  u->set = NULL;
  return 0;
}

/* The string field name of the table at idx, left on the stack (which keeps
 * it alive), or NULL when absent; raises when it is another type. */
static const char *opt_string(lua_State *L, int idx, const char *name, const char *fn)
{
  size_t len;
  const char *s;
  int t = lua_getfield(L, idx, name);
  if (t == LUA_TNIL)
    return NULL;
  s = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  if (!s || strlen(s) != len)
    luaL_error(L, "%s: opts.%s must be a string without NUL", fn, name);
  return s;
}

static unsigned alg_list(lua_State *L, int idx)
{
  unsigned bits = 0;
  lua_Integer n = lua_istable(L, idx) ? (lua_Integer)lua_rawlen(L, idx) : 0;
  if (n == 0)
    luaL_error(L, "tinysse.jwt_verify: opts.algs must be a non-empty list of algorithm names");
  for (lua_Integer i = 1; i <= n; i++) {
    int alg = lua_rawgeti(L, idx, i) == LUA_TSTRING ? jose_alg_parse(lua_tostring(L, -1)) : -1;
    if (alg < 0)
      luaL_error(L, "tinysse.jwt_verify: opts.algs[%d] is not an algorithm tinysse verifies "
                    "(HS256/384/512, RS256/384/512, PS256, ES256, ES384, EdDSA)", (int)i);
    bits |= JOSE_ALG_BIT(alg);
    lua_pop(L, 1);
  }
  return bits;
}

/* Reads jwt_verify's opts at idx into o; values stay on the stack. */
static void verify_opts(lua_State *L, int idx, struct jose_opts *o, int *explicit_algs)
{
  static const char fn[] = "tinysse.jwt_verify";
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, "leeway") != LUA_TNIL) {
    if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
      luaL_error(L, "%s: opts.leeway must be a number >= 0", fn);
    o->leeway = lua_tonumber(L, -1);
  }
  if (lua_getfield(L, idx, "algs") != LUA_TNIL) {
    o->algs = alg_list(L, lua_gettop(L));
    *explicit_algs = 1;
  }
  o->iss = opt_string(L, idx, "iss", fn);
  o->aud = opt_string(L, idx, "aud", fn);
  if (lua_getfield(L, idx, "required") != LUA_TNIL) {
    int t = lua_gettop(L);
    size_t n = lua_istable(L, t) ? lua_rawlen(L, t) : 0;
    const char **names;
    if (!lua_istable(L, t) || n > REQUIRED_MAX)
      luaL_error(L, "%s: opts.required must be a list of at most %d claim names", fn, REQUIRED_MAX);
    names = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*names), 0);
    for (size_t i = 0; i < n; i++) {
      size_t len;
      /* the table holds the strings: their pointers outlive the pop */
      names[i] = lua_rawgeti(L, t, (lua_Integer)i + 1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (!names[i] || strlen(names[i]) != len)
        luaL_error(L, "%s: opts.required[%d] must be a claim name", fn, (int)i + 1);
      lua_pop(L, 1);
    }
    o->required = names;
    o->nrequired = n;
  }
}

/* The userdata for a PEM public key given as a string: parsed once, then
 * taken from the cache (dropped whole when full). Pushes nothing. */
static struct jwks_ud *pem_set(lua_State *L, int idx, const char *pem, size_t len)
{
  struct jwt_host *h = host_of(L);
  struct jwks_ud *u;
  char err[256];
  if (h->pem_cached >= PEM_CACHE_MAX) {
    lua_newtable(L);
    lua_setiuservalue(L, lua_upvalueindex(1), 1);
    h->pem_cached = 0;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    u = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return u;
  }
  lua_pop(L, 1);
  u = jwks_push(L);
  if (!(u->set = jose_keyset_from_pem(pem, len, err, sizeof(err))))
    luaL_error(L, "tinysse.jwt_verify: key: %s", err);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  h->pem_cached++;
  lua_pop(L, 2);
  return u; /* the cache keeps it */
}

/* jwt_verify(token, key [, opts]) -> claims | nil, reason. */
static int l_jwt_verify(lua_State *L)
{
  struct jwt_host *h = host_of(L);
  struct jose_opts o = {0};
  struct jose_keyset *set;
  struct jwks_ud *u = luaL_testudata(L, 2, JWKS_META);
  const char *key = NULL, *url = NULL, *tok, *reason = NULL;
  size_t klen = 0, tlen, plen = 0, cap;
  int explicit_algs = 0, rc;
  char *payload, kid[JOSE_KID_MAX];

  if (!u && !(key = lua_tolstring(L, 2, &klen)))
    return luaL_typeerror(L, 2, "string or tinysse.jwks key set");
  verify_opts(L, 3, &o, &explicit_algs);
  if (key && is_pem(key, klen))
    u = pem_set(L, 2, key, klen);
  if (u && u->is_url) {
    lua_getiuservalue(L, 2, 1);
    url = lua_tostring(L, -1);
  }
  if (lua_type(L, 1) != LUA_TSTRING)
    return fail(L, "malformed");
  tok = lua_tolstring(L, 1, &tlen);
  cap = tlen < JOSE_TOKEN_MAX ? tlen + 1 : JOSE_TOKEN_MAX;
  payload = lua_newuserdatauv(L, cap, 0);

  /* From here to the unref, set is a bare reference: no Lua call. */
  if (url)
    set = h->fetch(h->ud, url, u->refresh, 0);
  else if (u)
    set = jose_keyset_ref(u->set);
  else if ((set = jose_keyset_from_secret(key, klen)) && !explicit_algs)
    o.algs = JOSE_ALG_BIT(JOSE_HS256); /* a bare secret means HS256, as it always has */
  if (!set)
    return url ? fail(L, "jwks_unavailable") : luaL_error(L, "tinysse.jwt_verify: out of memory");
  rc = jose_verify(set, tok, tlen, &o, now_seconds(), payload, cap, &plen, kid, &reason);
  if (rc != 0 && url && strcmp(reason, "unknown_kid") == 0) {
    struct jose_keyset *newer = h->fetch(h->ud, url, u->refresh, 1);
    if (newer && newer != set) {
      jose_keyset_unref(set);
      set = newer;
      rc = jose_verify(set, tok, tlen, &o, now_seconds(), payload, cap, &plen, kid, &reason);
    } else {
      jose_keyset_unref(newer);
    }
  }
  jose_keyset_unref(set);

  if (rc != 0) /* a bare secret keeps the reasons it gave before key sets */
    return fail(L, !u && !explicit_algs && strcmp(reason, "alg_not_allowed") == 0 ? "unsupported_alg" : reason);
  lua_pushlstring(L, payload, plen);
  return cjson_call(L, "decode", 1) ? 1 : fail(L, "malformed");
}

/* jwt_sign(claims, key [, {alg =, kid =}]) -> token. */
static int l_jwt_sign(lua_State *L)
{
  static const char fn[] = "tinysse.jwt_sign";
  const char *alg = NULL, *kid = NULL, *key, *payload;
  size_t klen, plen, cap;
  char err[256], *out;
  long n;

  luaL_checktype(L, 1, LUA_TTABLE);
  key = luaL_checklstring(L, 2, &klen);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    alg = opt_string(L, 3, "alg", fn);
    kid = opt_string(L, 3, "kid", fn);
    if (kid && (kid[0] == '\0' || strlen(kid) >= JOSE_KID_MAX))
      return luaL_error(L, "%s: opts.kid must be 1..%d bytes", fn, JOSE_KID_MAX - 1);
  }
  lua_pushvalue(L, 1);
  cjson_call(L, "encode", 0);
  payload = lua_tolstring(L, -1, &plen);
  if (plen == 0 || payload[0] != '{')
    return luaL_error(L, "%s: claims must be a table with string keys", fn);
  cap = jose_sign_size(plen, kid);
  out = lua_newuserdatauv(L, cap, 0);
  if ((n = jose_sign(alg, key, klen, kid, payload, plen, out, cap, err, sizeof(err))) < 0)
    return luaL_error(L, "%s: %s", fn, err);
  lua_pushlstring(L, out, (size_t)n);
  return 1;
}

/* The key set in the file at path, or NULL with err. */
static struct jose_keyset *read_keyset_file(const char *path, char *err, size_t errlen)
{
  struct jose_keyset *ks = NULL;
  FILE *f = fopen(path, "rb");
  int open_errno = errno;
  char *buf = f ? malloc(JOSE_JWKS_MAX + 1) : NULL, why[256];
  size_t n = 0, i = 0;
  if (!f || !buf) {
    snprintf(err, errlen, "%s: %s", path, f ? "out of memory" : strerror(open_errno));
    goto out;
  }
  n = fread(buf, 1, JOSE_JWKS_MAX + 1, f);
  if (ferror(f) || n > JOSE_JWKS_MAX) {
    snprintf(err, errlen, "%s: %s", path, ferror(f) ? "read error" : "over 1 MiB");
    goto out;
  }
  while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
    i++;
  ks = is_pem(buf + i, n - i) ? jose_keyset_from_pem(buf, n, why, sizeof(why))
                              : jose_keyset_parse(buf, n, why, sizeof(why));
  if (!ks)
    snprintf(err, errlen, "%s: %s", path, why);
out:
  if (f)
    fclose(f);
  free(buf);
  return ks;
}

/* jwks(source [, {refresh = s}]) -> key set: JSON text, PEM text, a file, or a URL. */
static int l_jwks(lua_State *L)
{
  struct jwt_host *h = host_of(L);
  size_t len, i = 0;
  const char *src = luaL_checklstring(L, 1, &len);
  double refresh = DEFAULT_REFRESH;
  struct jwks_ud *u;
  char err[512];

  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "refresh") != LUA_TNIL) {
      if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0))
        return luaL_error(L, "tinysse.jwks: opts.refresh must be a number of seconds > 0");
      refresh = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  while (i < len && (src[i] == ' ' || src[i] == '\t' || src[i] == '\r' || src[i] == '\n'))
    i++;
  u = jwks_push(L);
  if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0) {
    if (!h->fetch)
      return luaL_error(L, "tinysse.jwks: URLs are fetched only inside the gateway");
    if (strlen(src) != len)
      return luaL_error(L, "tinysse.jwks: the URL holds a NUL");
    u->is_url = 1;
    u->refresh = refresh;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    jose_keyset_unref(h->fetch(h->ud, src, refresh, 0)); /* the gateway starts fetching */
    return 1;
  }
  if (i < len && src[i] == '{')
    u->set = jose_keyset_parse(src, len, err, sizeof(err));
  else if (is_pem(src + i, len - i))
    u->set = jose_keyset_from_pem(src, len, err, sizeof(err));
  else if (strlen(src) != len || len == 0)
    snprintf(err, sizeof(err), "source must be JSON, PEM, a file path or a URL");
  else
    u->set = read_keyset_file(src, err, sizeof(err));
  if (!u->set)
    return luaL_error(L, "tinysse.jwks: %s", err);
  return 1;
}

/* jwks_info(set) -> {count =, kids = {...}[, url =, refresh =]}; a URL set
 * reports the newest keys the gateway has (count 0 before the first fetch). */
static int l_jwks_info(lua_State *L)
{
  struct jwt_host *h = host_of(L);
  struct jwks_ud *u = luaL_checkudata(L, 1, JWKS_META);
  struct jwks_ud *held = u;
  size_t i, n, k = 0;
  if (u->is_url) {
    held = jwks_push(L); /* owns the fetched reference until collected */
    lua_getiuservalue(L, 1, 1);
    held->set = h->fetch ? h->fetch(h->ud, lua_tostring(L, -1), u->refresh, 0) : NULL;
    lua_pop(L, 1);
  }
  n = jose_keyset_count(held->set);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "count");
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    const char *kid = jose_keyset_kid(held->set, i);
    if (kid) {
      lua_pushstring(L, kid);
      lua_rawseti(L, -2, (lua_Integer)++k);
    }
  }
  lua_setfield(L, -2, "kids");
  if (u->is_url) {
    lua_getiuservalue(L, 1, 1);
    lua_setfield(L, -2, "url");
    lua_pushnumber(L, u->refresh);
    lua_setfield(L, -2, "refresh");
  }
  return 1;
}

static int jwks_tostring(lua_State *L)
{
  struct jwks_ud *u = luaL_checkudata(L, 1, JWKS_META);
  if (u->is_url) {
    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "tinysse.jwks (%s)", lua_tostring(L, -1));
  } else {
    lua_pushfstring(L, "tinysse.jwks (%d keys)", (int)jose_keyset_count(u->set));
  }
  return 1;
}

static const luaL_Reg jwt_functions[] = {
    {"jwt_verify", l_jwt_verify},
    {"jwt_sign", l_jwt_sign},
    {"jwks", l_jwks},
    {"jwks_info", l_jwks_info},
    {NULL, NULL},
};

void jwt_lua_register(lua_State *L, void *ud, jwt_lua_fetch_fn fetch)
{
  struct jwt_host *h = lua_newuserdatauv(L, sizeof(*h), 1);
  h->ud = ud;
  h->fetch = fetch;
  h->pem_cached = 0;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  if (luaL_newmetatable(L, JWKS_META)) {
    lua_pushcfunction(L, jwks_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, jwks_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, l_jwks_info, 1);
    lua_setfield(L, -2, "info");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, jwt_functions, 1);
}
