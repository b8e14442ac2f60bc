/* The script host: the only core C that includes Lua headers. One state per
 * worker; every hook call goes through call_hook(): lua_pcall with a
 * traceback handler, a count hook enforcing a time budget, and an allocator
 * enforcing a memory cap. */
#include "host.h"
#include "alloc.h"
#include "validate.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

const double script_latency_bounds[8] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 1.0};

const char *script_lua_version(void)
{
  return LUA_RELEASE;
}

static const char *const hook_names[HOOK_COUNT] = {
    "validate_token", "channels", "on_connect", "on_disconnect",
    "authorize_publish", "issue_token", "on_error"};

struct script {
  lua_State *L;
  size_t used, cap;
  double deadline; /* monotonic seconds; 0 when no call runs */
  int timed_out, in_on_error;
  int hooks[HOOK_COUNT]; /* registry refs, LUA_NOREF when absent */
  unsigned long long req_serial; /* the request whose table req_ref holds */
  int req_ref;
  int config_ref;
  struct script_limits limits;
  struct script_stats *stats;
  char path[];
};

static double mono_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
  struct script *s = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    s->used -= old;
    return NULL;
  }
  if (nsize > old && s->used - old + nsize > s->cap)
    return NULL; /* Lua raises a memory error */
  void *p = realloc(ptr, nsize);
  if (p)
    s->used = s->used - old + nsize;
  return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  struct script *s;
  lua_getallocf(L, (void **)&s);
  if (s->deadline > 0 && mono_now() > s->deadline) {
    s->timed_out = 1;
    luaL_error(L, "script exceeded its time budget of %d ms",
               (int)(s->limits.hook_timeout * 1000 + 0.5));
  }
}

static int traceback(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = luaL_typename(L, 1);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* First line of a Lua error message, for clients and for `why`. */
static void first_line(char *out, size_t cap, const char *msg)
{
  size_t n = strcspn(msg, "\n");
  if (n >= cap)
    n = cap - 1;
  memcpy(out, msg, n);
  out[n] = '\0';
}

static void log_script_error(struct script *s, const char *what, const char *msg)
{
  char q1[512], q2[2048];
  log_event(LOG_ERROR, "script_error", "script=%s hook=%s error=%s",
            log_quote(q1, sizeof(q1), s->path), what, log_quote(q2, sizeof(q2), msg));
}

static void record_latency(struct script *s, double dt)
{
  struct script_stats *st = s->stats;
  if (!st)
    return;
  for (int i = 0; i < 8; i++)
    if (dt <= script_latency_bounds[i])
      st->latency_buckets[i]++;
  st->latency_sum += dt;
  st->latency_count++;
}

/* Stack on entry: function, nargs arguments. On SCRIPT_OK the nres results
 * are left on the stack; otherwise nothing is, and why holds the reason. */
static int protected_call(struct script *s, const char *what, int nargs, int nres,
                          double budget, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  s->timed_out = 0;
  double start = mono_now();
  s->deadline = start + budget;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1000);
  int rc = lua_pcall(L, nargs, nres, base);
  lua_sethook(L, NULL, 0, 0);
  s->deadline = 0;
  record_latency(s, mono_now() - start);
  if (rc == LUA_OK) {
    lua_remove(L, base);
    return SCRIPT_OK;
  }
  const char *msg = lua_tostring(L, -1);
  if (!msg)
    msg = "error object is not a string";
  if (rc == LUA_ERRMEM)
    msg = "script exceeded its memory cap";
  if (s->stats) {
    if (rc == LUA_ERRMEM)
      s->stats->memory_errors++;
    else if (s->timed_out)
      s->stats->timeouts++;
    s->stats->errors++;
  }
  log_script_error(s, what, msg);
  first_line(why, whylen, msg);
  lua_settop(L, base - 1);
  lua_gc(L, LUA_GCCOLLECT);
  if (!s->in_on_error && s->hooks[HOOK_ON_ERROR] != LUA_NOREF && why != NULL) {
    char copy[512];
    first_line(copy, sizeof(copy), why);
    script_on_error(s, s->timed_out ? "timeout" : "script", copy);
  }
  return SCRIPT_ERROR;
}

static int bad_return(struct script *s, const char *hook, const char *expected, char *why,
                      size_t whylen)
{
  snprintf(why, whylen, "%s returned %s; expected %s", hook,
           luaL_typename(s->L, -1), expected);
  if (s->stats) {
    s->stats->bad_returns++;
    s->stats->errors++;
  }
  log_script_error(s, hook, why);
  return SCRIPT_ERROR;
}

struct script *script_load(const char *path, const struct script_limits *limits,
                           const struct tinysse_module_host *host, struct script_stats *stats,
                           char *err, size_t errlen)
{
  size_t plen = strlen(path) + 1;
  struct script *s = calloc(1, sizeof(*s) + plen);
  char why[512];
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(s->path, path, plen);
  s->limits.hook_timeout = limits->hook_timeout; /* one atomic load each */
  s->limits.memory_cap = limits->memory_cap;
  s->cap = limits->memory_cap;
  s->stats = stats;
  s->config_ref = LUA_NOREF;
  s->req_ref = LUA_NOREF;
  for (int i = 0; i < HOOK_COUNT; i++)
    s->hooks[i] = LUA_NOREF;
  s->L = lua_newstate(capped_alloc, s);
  if (!s->L) {
    snprintf(err, errlen, "cannot create a Lua state");
    free(s);
    return NULL;
  }
  lua_State *L = s->L;
  /* Hooks make short-lived garbage (req tables, results): the generational
   * collector handles that for less work than the incremental one. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  luaL_openlibs(L);
  tinysse_module_open(L, host);

  if (luaL_loadfile(L, path) != LUA_OK) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    goto fail;
  }
  /* The top level gets a longer budget than a hook: it may build tables. */
  if (protected_call(s, "load", 0, 1, limits->hook_timeout * 10 + 1, why, sizeof(why)) != SCRIPT_OK) {
    snprintf(err, errlen, "%s", why);
    goto fail;
  }
  if (!lua_istable(L, -1)) {
    snprintf(err, errlen, "%s: the script must return a table of hooks, not %s", path,
             luaL_typename(L, -1));
    goto fail;
  }
  for (int i = 0; i < HOOK_COUNT; i++) {
    int t = lua_getfield(L, -1, hook_names[i]);
    if (t == LUA_TFUNCTION) {
      s->hooks[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (t == LUA_TNIL) {
      lua_pop(L, 1);
    } else {
      snprintf(err, errlen, "%s: hook '%s' must be a function, not %s", path, hook_names[i],
               lua_typename(L, t));
      goto fail;
    }
  }
  int t = lua_getfield(L, -1, "config");
  if (t == LUA_TTABLE) {
    s->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (t == LUA_TNIL) {
    lua_pop(L, 1);
  } else {
    snprintf(err, errlen, "%s: 'config' must be a table, not %s", path, lua_typename(L, t));
    goto fail;
  }
  lua_settop(L, 0);
  return s;
fail:
  script_free(s);
  return NULL;
}

void script_free(struct script *s)
{
  if (!s)
    return;
  lua_close(s->L);
  free(s);
}

const char *script_path(const struct script *s) { return s->path; }
int script_has(const struct script *s, enum script_hook hook) { return s->hooks[hook] != LUA_NOREF; }
const char *script_hook_name(enum script_hook hook) { return hook_names[hook]; }

int script_config_each(struct script *s, int (*fn)(const char *key, const char *value, void *arg),
                       void *arg, char *err, size_t errlen)
{
  lua_State *L = s->L;
  int rc = 0;
  if (s->config_ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->config_ref);
  lua_pushnil(L);
  while (rc == 0 && lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "config keys must be option names");
      rc = -1;
    } else {
      const char *key = lua_tostring(L, -2);
      int vt = lua_type(L, -1);
      if (vt == LUA_TBOOLEAN) {
        rc = fn(key, lua_toboolean(L, -1) ? "true" : "false", arg);
      } else if (vt == LUA_TNUMBER || vt == LUA_TSTRING) {
        lua_pushvalue(L, -1); /* lua_tostring converts in place: work on a copy */
        rc = fn(key, lua_tostring(L, -1), arg);
        lua_pop(L, 1);
      } else if (vt == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
          lua_geti(L, -1, i);
          if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
            rc = fn(key, lua_tostring(L, -1), arg);
          else
            rc = -1;
          lua_pop(L, 1);
        }
      } else {
        rc = -1;
      }
      if (rc != 0)
        snprintf(err, errlen, "config.%s: unusable value", key);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  return rc;
}

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
  lua_createtable(L, 0, 8);
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
  if (s->stats)
    s->stats->calls[h]++;
}

static int call_hook(struct script *s, enum script_hook h, int nargs, int nres, char *why,
                     size_t whylen)
{
  return protected_call(s, hook_names[h], nargs, nres, s->limits.hook_timeout, why, whylen);
}

/* A denial reason from the second result, or a default. */
static void deny_reason(lua_State *L, int idx, const char *dflt, char *why, size_t whylen)
{
  const char *r = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : dflt;
  first_line(why, whylen, r);
}

int script_validate_token(struct script *s, const char *token, const struct script_req *req,
                          char **user_id, char **role, double *expires_at, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int rc;
  *user_id = *role = NULL;
  *expires_at = 0;
  push_hook(s, HOOK_VALIDATE_TOKEN);
  lua_pushstring(L, token);
  push_req(s, req);
  if ((rc = call_hook(s, HOOK_VALIDATE_TOKEN, 2, 3, why, whylen)) != SCRIPT_OK)
    return rc;
  int t1 = lua_type(L, -3);
  if (t1 == LUA_TNIL || (t1 == LUA_TBOOLEAN && !lua_toboolean(L, -3))) {
    deny_reason(L, -2, "token rejected", why, whylen);
    rc = SCRIPT_DENY;
  } else if (t1 != LUA_TSTRING && !lua_isinteger(L, -3)) {
    lua_pushvalue(L, -3);
    rc = bad_return(s, "validate_token", "a user id (string) or nil, reason", why, whylen);
  } else if (lua_type(L, -2) != LUA_TSTRING) {
    lua_pushvalue(L, -2);
    rc = bad_return(s, "validate_token", "a role string as its second value", why, whylen);
  } else if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER) {
    rc = bad_return(s, "validate_token", "an expiry (Unix seconds) or nothing as its third value",
                    why, whylen);
  } else {
    *user_id = xstrdup(lua_tostring(L, -3));
    *role = xstrdup(lua_tostring(L, -2));
    *expires_at = lua_isnil(L, -1) ? 0 : lua_tonumber(L, -1);
    rc = SCRIPT_OK;
  }
  lua_settop(L, 0);
  return rc;
}

void script_strv_free(char **v, size_t n)
{
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}


int script_channels(struct script *s, const char *user_id, const char *role,
                    const struct script_req *req, char ***out, size_t *n, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int rc;
  *out = NULL;
  *n = 0;
  push_hook(s, HOOK_CHANNELS);
  lua_pushstring(L, user_id);
  lua_pushstring(L, role);
  push_req(s, req);
  if ((rc = call_hook(s, HOOK_CHANNELS, 3, 1, why, whylen)) != SCRIPT_OK)
    return rc;
  if (!lua_istable(L, -1)) {
    rc = bad_return(s, "channels", "an array of channel names", why, whylen);
    goto done;
  }
  lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
  if (len < 1 || len > STREAM_MAX_CHANNELS) {
    snprintf(why, whylen, "channels returned %lld channels; expected 1 to %d",
             (long long)len, STREAM_MAX_CHANNELS);
    rc = bad_return(s, "channels", "a non-empty array of at most 256 names", why, whylen);
    goto done;
  }
  char **v = xcalloc((size_t)len, sizeof(char *));
  for (lua_Integer i = 1; i <= len; i++) {
    size_t sl;
    lua_rawgeti(L, -1, i);
    const char *str = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : NULL;
    /* the publish rule for channel names: no script joins a private one */
    if (!str || !channel_name_ok(str, sl) || strlen(str) != sl) {
      script_strv_free(v, (size_t)len);
      rc = bad_return(s, "channels",
                      "channel names as strings of 1 to 200 bytes without control characters",
                      why, whylen);
      goto done;
    }
    v[i - 1] = xstrdup(str);
    lua_pop(L, 1);
  }
  *out = v;
  *n = (size_t)len;
  rc = SCRIPT_OK;
done:
  lua_settop(L, 0);
  return rc;
}

int script_authorize_publish(struct script *s, const struct script_req *req, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int rc;
  push_hook(s, HOOK_AUTHORIZE_PUBLISH);
  push_req(s, req);
  if ((rc = call_hook(s, HOOK_AUTHORIZE_PUBLISH, 1, 2, why, whylen)) != SCRIPT_OK)
    return rc;
  if (lua_type(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -2)) {
    rc = SCRIPT_OK;
  } else if (lua_isnil(L, -2) || lua_type(L, -2) == LUA_TBOOLEAN) {
    deny_reason(L, -1, "publish not authorized", why, whylen);
    rc = SCRIPT_DENY;
  } else {
    lua_pushvalue(L, -2);
    rc = bad_return(s, "authorize_publish", "true or false, reason", why, whylen);
  }
  lua_settop(L, 0);
  return rc;
}

int script_issue_token(struct script *s, const struct script_req *req, char **token,
                       double *expires_in, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int rc;
  *token = NULL;
  *expires_in = 0;
  push_hook(s, HOOK_ISSUE_TOKEN);
  push_req(s, req);
  if ((rc = call_hook(s, HOOK_ISSUE_TOKEN, 1, 2, why, whylen)) != SCRIPT_OK)
    return rc;
  if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2))) {
    deny_reason(L, -1, "token not issued", why, whylen);
    rc = SCRIPT_DENY;
  } else if (lua_type(L, -2) != LUA_TSTRING) {
    lua_pushvalue(L, -2);
    rc = bad_return(s, "issue_token", "a token string, expires_in", why, whylen);
  } else if (lua_type(L, -1) != LUA_TNUMBER || !isfinite(lua_tonumber(L, -1)) ||
             lua_tonumber(L, -1) < 0) {
    rc = bad_return(s, "issue_token", "expires_in (seconds) as its second value", why, whylen);
  } else {
    *token = xstrdup(lua_tostring(L, -2));
    *expires_in = lua_tonumber(L, -1);
    rc = SCRIPT_OK;
  }
  lua_settop(L, 0);
  return rc;
}

void script_on_connect(struct script *s, const struct script_client *c)
{
  char why[256];
  push_hook(s, HOOK_ON_CONNECT);
  push_client(s->L, c);
  call_hook(s, HOOK_ON_CONNECT, 1, 0, why, sizeof(why));
  lua_settop(s->L, 0);
}

void script_on_disconnect(struct script *s, const struct script_client *c, const char *reason)
{
  char why[256];
  push_hook(s, HOOK_ON_DISCONNECT);
  push_client(s->L, c);
  lua_pushstring(s->L, reason);
  call_hook(s, HOOK_ON_DISCONNECT, 2, 0, why, sizeof(why));
  lua_settop(s->L, 0);
}

void script_on_error(struct script *s, const char *type, const char *message)
{
  char why[256];
  if (s->hooks[HOOK_ON_ERROR] == LUA_NOREF || s->in_on_error)
    return;
  int top = lua_gettop(s->L);
  s->in_on_error = 1;
  push_hook(s, HOOK_ON_ERROR);
  lua_createtable(s->L, 0, 2);
  lua_pushstring(s->L, type);
  lua_setfield(s->L, -2, "type");
  lua_pushstring(s->L, message);
  lua_setfield(s->L, -2, "message");
  call_hook(s, HOOK_ON_ERROR, 1, 0, why, sizeof(why));
  s->in_on_error = 0;
  lua_settop(s->L, top);
}
