/* The hooks that the core calls: what each gets as arguments (the `req`
 * and client tables) and how its results become a struct script_result.
 * Each runs through host_run (host.c) as a coroutine. */
#include "alloc.h"
#include "host_impl.h"
#include "validate.h"

#include <lauxlib.h>
#include <lua.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static void push_kv_table(lua_State *L, const struct script_kv *kv, size_t n)
{
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, kv[i].value);
    lua_setfield(L, -2, kv[i].key);
  }
}

static void build_req(lua_State *L, const struct script_req *req)
{
  lua_createtable(L, 0, 9);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, req->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, req->peer);
  lua_setfield(L, -2, "peer");
  push_kv_table(L, req->query, req->nquery);
  lua_setfield(L, -2, "query");
  push_kv_table(L, req->headers, req->nheaders);
  lua_setfield(L, -2, "headers");
  push_kv_table(L, req->cookies, req->ncookies);
  lua_setfield(L, -2, "cookies");
  if (req->body) {
    lua_pushlstring(L, req->body, req->body_len);
    lua_setfield(L, -2, "body");
  }
  lua_pushboolean(L, req->publisher);
  lua_setfield(L, -2, "publisher");
}

/* Pushes the `req` table, reusing the one built for the same request by an
 * earlier hook (validate_token then channels, for a stream). */
static void push_req(struct script *s, const struct script_req *req)
{
  lua_State *L = s->L;
  if (req->serial && req->serial == s->req_serial) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->req_ref);
    return;
  }
  build_req(L, req);
  luaL_unref(L, LUA_REGISTRYINDEX, s->req_ref);
  lua_pushvalue(L, -1);
  s->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->req_serial = req->serial;
}

static void push_client(lua_State *L, const struct script_client *c)
{
  lua_createtable(L, 0, 4);
  lua_pushstring(L, c->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, c->user_id);
  lua_setfield(L, -2, "user_id");
  lua_pushstring(L, c->role);
  lua_setfield(L, -2, "role");
  lua_createtable(L, (int)c->nchannels, 0);
  for (size_t i = 0; i < c->nchannels; i++) {
    lua_pushstring(L, c->channels[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "channels");
}

static void push_hook(struct script *s, enum script_hook h)
{
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, s->hooks[h]);
}

/* A denial reason from the value at idx, or a default. */
static void deny_reason(lua_State *L, int idx, const char *dflt, char *why, size_t whylen)
{
  const char *r = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : dflt;
  host_first_line(why, whylen, r);
}

static int finish_validate_token(struct script *s, lua_State *L, struct script_result *r)
{
  int t1 = lua_type(L, -3);
  if (t1 == LUA_TNIL || (t1 == LUA_TBOOLEAN && !lua_toboolean(L, -3))) {
    deny_reason(L, -2, "token rejected", r->why, sizeof(r->why));
    return SCRIPT_DENY;
  }
  if (t1 != LUA_TSTRING && !lua_isinteger(L, -3)) {
    lua_pushvalue(L, -3);
    return host_bad_return(s, L, "validate_token", "a user id (string) or nil, reason", r->why,
                           sizeof(r->why));
  }
  if (lua_type(L, -2) != LUA_TSTRING) {
    lua_pushvalue(L, -2);
    return host_bad_return(s, L, "validate_token", "a role string as its second value", r->why,
                           sizeof(r->why));
  }
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER)
    return host_bad_return(s, L, "validate_token",
                           "an expiry (Unix seconds) or nothing as its third value", r->why,
                           sizeof(r->why));
  r->user_id = xstrdup(lua_tostring(L, -3));
  r->role = xstrdup(lua_tostring(L, -2));
  r->expires_at = lua_isnil(L, -1) ? 0 : lua_tonumber(L, -1);
  return SCRIPT_OK;
}

int script_validate_token(struct script *s, const char *token, const struct script_req *req,
                          struct script_result *res, const struct script_wait *wait)
{
  push_hook(s, HOOK_VALIDATE_TOKEN);
  lua_pushstring(s->L, token);
  push_req(s, req);
  return host_run(s, HOOK_VALIDATE_TOKEN, 2, 3, finish_validate_token, res, wait, 0);
}

void script_strv_free(char **v, size_t n)
{
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static int finish_channels(struct script *s, lua_State *L, struct script_result *r)
{
  if (!lua_istable(L, -1))
    return host_bad_return(s, L, "channels", "an array of channel names", r->why, sizeof(r->why));
  lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
  if (len < 1 || len > STREAM_MAX_CHANNELS) {
    snprintf(r->why, sizeof(r->why), "channels returned %lld channels; expected 1 to %d",
             (long long)len, STREAM_MAX_CHANNELS);
    return host_bad_return(s, L, "channels", "a non-empty array of at most 256 names", r->why,
                           sizeof(r->why));
  }
  char **v = xcalloc((size_t)len, sizeof(char *));
  for (lua_Integer i = 1; i <= len; i++) {
    size_t sl;
    lua_rawgeti(L, -1, i);
    const char *str = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : NULL;
    /* the publish rule for channel names: no script joins a private one */
    if (!str || !channel_name_ok(str, sl) || strlen(str) != sl) {
      script_strv_free(v, (size_t)len);
      return host_bad_return(s, L, "channels",
                             "channel names as strings of 1 to 200 bytes without control characters",
                             r->why, sizeof(r->why));
    }
    v[i - 1] = xstrdup(str);
    lua_pop(L, 1);
  }
  r->channels = v;
  r->nchannels = (size_t)len;
  return SCRIPT_OK;
}

int script_channels(struct script *s, const char *user_id, const char *role,
                    const struct script_req *req, struct script_result *res,
                    const struct script_wait *wait)
{
  push_hook(s, HOOK_CHANNELS);
  lua_pushstring(s->L, user_id);
  lua_pushstring(s->L, role);
  push_req(s, req);
  return host_run(s, HOOK_CHANNELS, 3, 1, finish_channels, res, wait, 0);
}

static int finish_authorize_publish(struct script *s, lua_State *L, struct script_result *r)
{
  if (lua_type(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -2))
    return SCRIPT_OK;
  if (lua_isnil(L, -2) || lua_type(L, -2) == LUA_TBOOLEAN) {
    deny_reason(L, -1, "publish not authorized", r->why, sizeof(r->why));
    return SCRIPT_DENY;
  }
  lua_pushvalue(L, -2);
  return host_bad_return(s, L, "authorize_publish", "true or false, reason", r->why,
                         sizeof(r->why));
}

int script_authorize_publish(struct script *s, const struct script_req *req,
                             struct script_result *res, const struct script_wait *wait)
{
  push_hook(s, HOOK_AUTHORIZE_PUBLISH);
  push_req(s, req);
  return host_run(s, HOOK_AUTHORIZE_PUBLISH, 1, 2, finish_authorize_publish, res, wait, 0);
}

static int finish_issue_token(struct script *s, lua_State *L, struct script_result *r)
{
  if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2))) {
    deny_reason(L, -1, "token not issued", r->why, sizeof(r->why));
    return SCRIPT_DENY;
  }
  if (lua_type(L, -2) != LUA_TSTRING) {
    lua_pushvalue(L, -2);
    return host_bad_return(s, L, "issue_token", "a token string, expires_in", r->why,
                           sizeof(r->why));
  }
  if (lua_type(L, -1) != LUA_TNUMBER || !isfinite(lua_tonumber(L, -1)) || lua_tonumber(L, -1) < 0)
    return host_bad_return(s, L, "issue_token", "expires_in (seconds) as its second value",
                           r->why, sizeof(r->why));
  r->token = xstrdup(lua_tostring(L, -2));
  r->expires_in = lua_tonumber(L, -1);
  return SCRIPT_OK;
}

int script_issue_token(struct script *s, const struct script_req *req, struct script_result *res,
                       const struct script_wait *wait)
{
  push_hook(s, HOOK_ISSUE_TOKEN);
  push_req(s, req);
  return host_run(s, HOOK_ISSUE_TOKEN, 1, 2, finish_issue_token, res, wait, 0);
}

void script_on_connect(struct script *s, const struct script_client *c)
{
  struct script_result res;
  push_hook(s, HOOK_ON_CONNECT);
  push_client(s->L, c);
  host_run(s, HOOK_ON_CONNECT, 1, 0, NULL, &res, NULL, 1);
}

void script_on_disconnect(struct script *s, const struct script_client *c, const char *reason)
{
  struct script_result res;
  push_hook(s, HOOK_ON_DISCONNECT);
  push_client(s->L, c);
  lua_pushstring(s->L, reason);
  host_run(s, HOOK_ON_DISCONNECT, 2, 0, NULL, &res, NULL, 1);
}

void script_on_error(struct script *s, const char *type, const char *message)
{
  struct script_result res;
  if (s->hooks[HOOK_ON_ERROR] == LUA_NOREF || s->in_on_error)
    return;
  s->in_on_error = 1;
  push_hook(s, HOOK_ON_ERROR);
  lua_createtable(s->L, 0, 2);
  lua_pushstring(s->L, type);
  lua_setfield(s->L, -2, "type");
  lua_pushstring(s->L, message);
  lua_setfield(s->L, -2, "message");
  host_run(s, HOOK_ON_ERROR, 1, 0, NULL, &res, NULL, 0);
  s->in_on_error = 0;
}
