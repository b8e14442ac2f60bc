/* The `tinysse` Lua module: the crypto, clock, logging and publish helpers
 * operator scripts call. Hashing, HMAC and randomness come from OpenSSL
 * libcrypto. Temporary buffers live in Lua memory (luaL_Buffer, userdata), so
 * a Lua error raised halfway never leaks them and the script's memory cap
 * counts them. JWTs and key sets are jwt_lua.c's. The same code builds into
 * the gateway and, with TINYSSE_STANDALONE_MODULE, into tinysse.so for the
 * specs: there nobody calls tinysse_module_open, so luaopen_tinysse finds no
 * host and works without one. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "tinysse_module.h"

#include "jose.h"
#include "jwt_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HOST_KEY "tinysse.host" /* registry field holding the module_state */
#define SECRET_LEN 32
#define SHA256_LEN 32
#define RANDOM_MAX 1024

/* The host as the module's functions see it: their one upvalue. */
struct module_state {
  struct tinysse_module_host host;
  unsigned char own_secret[SECRET_LEN]; /* when the host gives none */
  int have_own_secret;
};

static struct module_state *state_of(lua_State *L)
{
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* Pushes a new module_state copying host (NULL: none). Never raises but for
 * lack of memory: tinysse_module_open runs outside any protected call. */
static struct module_state *state_new(lua_State *L, const struct tinysse_module_host *host)
{
  struct module_state *st = lua_newuserdatauv(L, sizeof(*st), 0);
  memset(st, 0, sizeof(*st));
  if (host)
    st->host = *host;
  if (!st->host.instance_secret)
    st->have_own_secret = RAND_bytes(st->own_secret, SECRET_LEN) == 1;
  return st;
}

/* Calls cjson.<fn> on the value at the top of the stack, replacing it with
 * the result. Errors propagate unless protect is set; then returns 0 and
 * leaves nothing on failure (memory errors are always re-raised). */
static int cjson_call(lua_State *L, const char *fn, int protect)
{
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_rotate(L, -2, 1); /* fn, value */
  if (!protect) {
    lua_call(L, 1, 1);
    return 1;
  }
  int rc = lua_pcall(L, 1, 1, 0);
  if (rc == LUA_ERRMEM)
    lua_error(L);
  if (rc != LUA_OK) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static void hmac_sha256(lua_State *L, const char *key, size_t klen, const char *msg, size_t mlen,
                        unsigned char out[SHA256_LEN])
{
  unsigned int n = SHA256_LEN;
  if (klen > INT_MAX || !HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &n))
    luaL_error(L, "tinysse: HMAC-SHA256 failed");
}

/* Decodes s into out (room for n / 4 * 3 + 2 bytes) with jose's decoder.
 * Padding is optional but, when present, must be right. Leftover bits must
 * be zero, so every value has one encoding (a JWT signature cannot be
 * varied). Returns the decoded length, or -1 with *why set. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, const char **why)
{
  size_t pad = 0;
  while (pad < 2 && n > 0 && s[n - 1] == '=') {
    n--;
    pad++;
  }
  if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < n) {
    *why = "invalid character";
    return -1;
  }
  if ((pad && (n + pad) % 4 != 0) || n % 4 == 1) {
    *why = "invalid length";
    return -1;
  }
  long len = jose_b64url_decode(s, n, out);
  if (len < 0)
    *why = "non-zero trailing bits";
  return len;
}

/* Pushes the decoded string, or returns 0 with nothing pushed. */
static int push_b64url_decoded(lua_State *L, const char *s, size_t n, const char **why)
{
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 2);
  long len = b64url_decode(s, n, out, why);
  luaL_pushresultsize(&b, len < 0 ? 0 : (size_t)len);
  if (len < 0) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int l_hmac_sha256(lua_State *L)
{
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  unsigned char mac[SHA256_LEN];
  hmac_sha256(L, key, klen, msg, mlen, mac);
  lua_pushlstring(L, (const char *)mac, sizeof(mac));
  return 1;
}

static int l_hex(lua_State *L)
{
  static const char digits[] = "0123456789abcdef";
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    luaL_addchar(&b, digits[s[i] >> 4]);
    luaL_addchar(&b, digits[s[i] & 15]);
  }
  luaL_pushresult(&b);
  return 1;
}

static int l_base64url_encode(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, jose_b64url_encoded_len(n) + 1);
  luaL_pushresultsize(&b, jose_b64url_encode((const unsigned char *)s, n, out));
  return 1;
}

static int l_base64url_decode(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *why = NULL;
  if (push_b64url_decoded(L, s, n, &why))
    return 1;
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) / 1000.0;
}

static int l_now(lua_State *L)
{
  lua_pushnumber(L, now_seconds());
  return 1;
}

static int l_time(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)time(NULL));
  return 1;
}

static int l_random_bytes(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[RANDOM_MAX];
  luaL_argcheck(L, n >= 1 && n <= RANDOM_MAX, 1, "must be 1..1024");
  if (RAND_bytes(buf, (int)n) != 1)
    return luaL_error(L, "tinysse.random_bytes: the random generator failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  OPENSSL_cleanse(buf, (size_t)n);
  return 1;
}

/* Unequal lengths answer at once: the length is not what is secret. */
static int l_constant_time_eq(lua_State *L)
{
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
  return 1;
}

static int l_secret(lua_State *L)
{
  struct module_state *st = state_of(L);
  if (st->host.instance_secret)
    lua_pushlstring(L, (const char *)st->host.instance_secret, SECRET_LEN);
  else if (st->have_own_secret)
    lua_pushlstring(L, (const char *)st->own_secret, SECRET_LEN);
  else
    return luaL_error(L, "tinysse.secret: no secret (the random generator failed)");
  return 1;
}

static int l_log(lua_State *L)
{
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  struct module_state *st = state_of(L);
  int level = luaL_checkoption(L, 1, NULL, levels);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  if (st->host.log) {
    st->host.log(st->host.ud, level, msg, len);
  } else {
    fprintf(stderr, "level=%s script: ", levels[level]);
    fwrite(msg, 1, len, stderr);
    fputc('\n', stderr);
  }
  return 0;
}

/* Checks that the string at idx is a usable C string naming what. */
static const char *check_cstring(lua_State *L, int idx, const char *what)
{
  size_t len = 0;
  const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
  if (!s || len == 0 || strlen(s) != len)
    luaL_error(L, "tinysse.publish: %s must be a non-empty string without NUL", what);
  return s;
}

/* A target as a C string for the gateway's check: a string holding a NUL
 * becomes "", which the check refuses as it would any bad name. */
static const char *target_string(lua_State *L, int idx)
{
  size_t len = 0;
  const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
  if (!s)
    luaL_error(L, "tinysse.publish: targets must be a string or a non-empty array of strings");
  return strlen(s) == len ? s : "";
}

/* publish(targets, data [, handler_id [, event [, key]]]) -> id. Targets are read
 * raw from their table, which keeps the strings alive through the call. */
static int l_publish(lua_State *L)
{
  struct module_state *st = state_of(L);
  const char **targets;
  size_t ntargets, i, dlen;
  const char *event = NULL, *data, *key = NULL;
  lua_Integer handler_id = luaL_optinteger(L, 3, 0);
  char id[128], err[256];

  /* Values are checked by the gateway, by the rules POST /publish uses
   * (the same messages); only the Lua types are checked here. */
  if (handler_id < 0 || handler_id > 255)
    handler_id = -1;
  if (!lua_isnoneornil(L, 4))
    event = check_cstring(L, 4, "event");
  if (!lua_isnoneornil(L, 5))
    key = check_cstring(L, 5, "key");
  if (lua_type(L, 1) == LUA_TSTRING) {
    targets = lua_newuserdatauv(L, sizeof(*targets), 0);
    targets[0] = target_string(L, 1);
    ntargets = 1;
  } else if (lua_type(L, 1) == LUA_TTABLE && (ntargets = lua_rawlen(L, 1)) > 0) {
    targets = lua_newuserdatauv(L, ntargets * sizeof(*targets), 0);
    for (i = 0; i < ntargets; i++) {
      lua_rawgeti(L, 1, (lua_Integer)i + 1);
      targets[i] = target_string(L, -1);
      lua_pop(L, 1);
    }
  } else {
    return luaL_error(L, "tinysse.publish: targets must be a string or a non-empty array of strings");
  }
  lua_pushvalue(L, 2);
  cjson_call(L, "encode", 0);
  data = lua_tolstring(L, -1, &dlen);

  if (!st->host.publish)
    return luaL_error(L, "tinysse.publish is only available inside the gateway");
  err[0] = '\0';
  if (st->host.publish(st->host.ud, targets, ntargets, data, dlen, (int)handler_id, event, key,
                       id, sizeof(id), err, sizeof(err)) != 0)
    return luaL_error(L, "tinysse.publish: %s", err[0] ? err : "failed");
  id[sizeof(id) - 1] = '\0';
  if (id[0])
    lua_pushstring(L, id);
  else
    lua_pushnil(L); /* cluster mode: Redis assigns the id later */
  return 1;
}

static int l_count(lua_State *L)
{
  struct module_state *st = state_of(L);
  const char *channel = luaL_checkstring(L, 1);
  if (!st->host.count)
    return luaL_error(L, "tinysse.count is only available inside the gateway");
  lua_pushinteger(L, (lua_Integer)st->host.count(st->host.ud, channel));
  return 1;
}

/* Channel names from a string or an array of strings, as a userdata-held
 * array (alive while it is on the stack); raises on other types. */
static const char **channel_list(lua_State *L, int idx, size_t *n, const char *fn)
{
  const char **v;
  if (lua_type(L, idx) == LUA_TSTRING) {
    v = lua_newuserdatauv(L, sizeof(*v), 0);
    v[0] = lua_tostring(L, idx);
    *n = 1;
    return v;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "tinysse.%s: channels must be a string or an array of strings", fn);
  *n = lua_rawlen(L, idx);
  v = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof(*v), 0);
  for (size_t i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "tinysse.%s: channels must be a string or an array of strings", fn);
    v[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  return v;
}

/* subscribe|unsubscribe(target, channels [, data]): target is a user id, or
 * {user = id} or {client = connection id}. Returns the streams changed on
 * this node, or nil in cluster mode (Redis answers later; a failure is
 * logged). */
static int subscription(lua_State *L, int leave)
{
  struct module_state *st = state_of(L);
  const char *fn = leave ? "unsubscribe" : "subscribe", *user = NULL, *client = NULL;
  const char *data = NULL;
  size_t n = 0, dlen = 0;
  char err[300];
  lua_settop(L, 3); /* what is pushed below comes after the arguments */
  if (lua_type(L, 1) == LUA_TSTRING) {
    user = lua_tostring(L, 1);
  } else if (lua_type(L, 1) == LUA_TTABLE) {
    lua_getfield(L, 1, "user");
    lua_getfield(L, 1, "client");
    user = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    client = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  }
  if (!user == !client)
    return luaL_error(L, "tinysse.%s: the target is a user id, {user = id} or {client = connection id}", fn);
  const char **names = channel_list(L, 2, &n, fn);
  if (!lua_isnoneornil(L, 3)) {
    lua_pushvalue(L, 3);
    cjson_call(L, "encode", 0);
    data = lua_tolstring(L, -1, &dlen);
  }
  if (!st->host.subscribe)
    return luaL_error(L, "tinysse.%s is only available inside the gateway", fn);
  err[0] = '\0';
  long r = st->host.subscribe(st->host.ud, user, client, leave ? NULL : names, leave ? 0 : n,
                              leave ? names : NULL, leave ? n : 0, data, dlen, err, sizeof(err));
  if (r == -1)
    return luaL_error(L, "tinysse.%s: %s", fn, err[0] ? err : "failed");
  if (r < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

static int l_subscribe(lua_State *L) { return subscription(L, 0); }
static int l_unsubscribe(lua_State *L) { return subscription(L, 1); }

static const luaL_Reg module_functions[] = {
    {"hmac_sha256", l_hmac_sha256},
    {"hex", l_hex},
    {"base64url_encode", l_base64url_encode},
    {"base64url_decode", l_base64url_decode},
    {"now", l_now},
    {"time", l_time},
    {"random_bytes", l_random_bytes},
    {"constant_time_eq", l_constant_time_eq},
    {"secret", l_secret},
    {"log", l_log},
    {"publish", l_publish},
    {"count", l_count},
    {"subscribe", l_subscribe},
    {"unsubscribe", l_unsubscribe},
    {NULL, NULL},
};

void tinysse_module_open(lua_State *L, const struct tinysse_module_host *host)
{
  state_new(L, host);
  lua_setfield(L, LUA_REGISTRYINDEX, HOST_KEY);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_tinysse);
  lua_setfield(L, -2, "tinysse");
  lua_pop(L, 1);
}

int luaopen_tinysse(lua_State *L)
{
  struct module_state *st;
  luaL_newlibtable(L, module_functions);
  if (lua_getfield(L, LUA_REGISTRYINDEX, HOST_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    state_new(L, NULL);
  }
  st = lua_touserdata(L, -1);
  luaL_setfuncs(L, module_functions, 1); /* the closures keep st alive */
  jwt_lua_register(L, st->host.ud, st->host.jwks_fetch);
  return 1;
}
