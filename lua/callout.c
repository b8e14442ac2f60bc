/* tinysse.http{method=, url=, headers=, body=, timeout=}: an HTTP call-out
 * from a hook. The hook's coroutine yields while the worker's HTTP client
 * (through struct script_io) does the request, and is resumed with
 * `status, body, headers` or `nil, why` when the answer comes. */
#include "alloc.h"
#include "host_impl.h"

#include <lauxlib.h>
#include <lua.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CALLOUT_DEFAULT_TIMEOUT 5.0
#define CALLOUT_MAX_HEADERS 64

static int fail(lua_State *L, const char *why)
{
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

static void on_answer(void *arg, const struct script_http_res *res)
{
  lua_State *co = arg;
  struct script_call *c = host_call_of(co);
  if (!c)
    return;
  c->io = NULL;
  struct script *s = c->s;
  if (res->error) {
    if (s->stats)
      s->stats->callout_errors++;
    lua_pushnil(co);
    lua_pushstring(co, res->error);
    host_resume(c, 2);
    return;
  }
  lua_pushinteger(co, res->status);
  lua_pushlstring(co, res->body ? res->body : "", res->body_len);
  lua_createtable(co, 0, (int)res->nheaders);
  char name[128];
  for (size_t i = 0; i < res->nheaders; i++) {
    size_t n = strlen(res->headers[i].key);
    if (n >= sizeof(name))
      continue;
    for (size_t k = 0; k <= n; k++)
      name[k] = (char)tolower((unsigned char)res->headers[i].key[k]);
    lua_pushstring(co, res->headers[i].value);
    lua_setfield(co, -2, name);
  }
  host_resume(c, 3);
}

static const char *opt_string(lua_State *L, const char *field, const char *dflt, size_t *len)
{
  int t = lua_getfield(L, 1, field);
  const char *v = dflt;
  if (len)
    *len = dflt ? strlen(dflt) : 0;
  if (t == LUA_TSTRING)
    v = lua_tolstring(L, -1, len);
  else if (t != LUA_TNIL)
    luaL_error(L, "tinysse.http: %s must be a string", field);
  lua_pop(L, 1); /* the string stays alive: it is a field of the table at 1 */
  return v;
}

int host_l_http(lua_State *L)
{
  struct script *s;
  lua_getallocf(L, (void **)&s);
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *url = opt_string(L, "url", NULL, NULL);
  if (!url)
    return luaL_error(L, "tinysse.http: url is required");
  const char *method = opt_string(L, "method", NULL, NULL);
  size_t body_len = 0;
  const char *body = opt_string(L, "body", NULL, &body_len);
  if (!method)
    method = body ? "POST" : "GET";
  double timeout = CALLOUT_DEFAULT_TIMEOUT;
  if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
    if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0) || !isfinite(lua_tonumber(L, -1)))
      return luaL_error(L, "tinysse.http: timeout must be a number of seconds > 0");
    timeout = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  struct script_kv headers[CALLOUT_MAX_HEADERS];
  size_t nh = 0;
  int t = lua_getfield(L, 1, "headers");
  if (t == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "tinysse.http: headers must map names to strings");
      if (nh == CALLOUT_MAX_HEADERS)
        return luaL_error(L, "tinysse.http: at most %d headers", CALLOUT_MAX_HEADERS);
      headers[nh].key = lua_tostring(L, -2);
      headers[nh].value = lua_tostring(L, -1);
      nh++;
      lua_pop(L, 1); /* the strings stay alive as keys and values of the table */
    }
  } else if (t != LUA_TNIL) {
    return luaL_error(L, "tinysse.http: headers must be a table");
  }
  lua_pop(L, 1);

  struct script_call *c = host_call_of(L);
  if (!c || !c->may_wait || !s->io.http)
    return fail(L, "not_available"); /* the top level, on_error, or no client */
  if (!lua_isyieldable(L))
    return fail(L, "not_yieldable"); /* inside a metamethod or a C callback */
  double left = c->wall_deadline - host_mono_now();
  if (left <= 0)
    return fail(L, "hook_deadline");
  struct script_http_req req = {method, url, headers, nh, body, body_len,
                                timeout < left ? timeout : left};
  if (s->stats)
    s->stats->callouts++;
  void *h = s->io.http(s->io.ud, &req, on_answer, L);
  if (!h) {
    if (s->stats)
      s->stats->callout_errors++;
    return fail(L, "out_of_memory");
  }
  c->io = h;
  return lua_yield(L, 0);
}
