/* The script host: the only core C that includes Lua headers (with hooks.c
 * and callout.c). One state per worker. Every hook call runs as a
 * coroutine (host_run): a count hook enforces the CPU budget over its
 * running time, a wall-clock limit bounds the whole call, an allocator
 * enforces the memory cap, and errors get a traceback. A call that waits
 * for a call-out is parked on the heap and resumed when the answer comes. */
#include "host.h"
#include "alloc.h"
#include "host_impl.h"

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

double host_mono_now(void)
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
  if (s->deadline > 0 && host_mono_now() > s->deadline) {
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
void host_first_line(char *out, size_t cap, const char *msg)
{
  size_t n = strcspn(msg, "\n");
  if (n >= cap)
    n = cap - 1;
  memcpy(out, msg, n);
  out[n] = '\0';
}

void host_log_error(struct script *s, const char *what, const char *msg)
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

/* Counts, logs and reports (to on_error) a failed call; why gets the first
 * line. timed_out and mem say which limit ended it. */
static void call_failed(struct script *s, const char *what, const char *msg, int mem,
                        int timed_out, char *why, size_t whylen)
{
  if (mem)
    msg = "script exceeded its memory cap";
  if (s->stats) {
    if (mem)
      s->stats->memory_errors++;
    else if (timed_out)
      s->stats->timeouts++;
    s->stats->errors++;
  }
  host_log_error(s, what, msg);
  host_first_line(why, whylen, msg);
  if (!s->in_on_error && s->hooks[HOOK_ON_ERROR] != LUA_NOREF) {
    char copy[512];
    host_first_line(copy, sizeof(copy), why);
    script_on_error(s, timed_out ? "timeout" : "script", copy);
  }
}

/* The script's top level (synchronous, on the main thread). Stack on
 * entry: function, nargs arguments; on SCRIPT_OK nres results are left. */
static int protected_call(struct script *s, const char *what, int nargs, int nres,
                          double budget, char *why, size_t whylen)
{
  lua_State *L = s->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  s->timed_out = 0;
  s->deadline = host_mono_now() + budget;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1000);
  int rc = lua_pcall(L, nargs, nres, base);
  lua_sethook(L, NULL, 0, 0);
  s->deadline = 0;
  if (rc == LUA_OK) {
    lua_remove(L, base);
    return SCRIPT_OK;
  }
  const char *msg = lua_tostring(L, -1);
  call_failed(s, what, msg ? msg : "error object is not a string", rc == LUA_ERRMEM,
              s->timed_out, why, whylen);
  lua_settop(L, base - 1);
  lua_gc(L, LUA_GCCOLLECT);
  return SCRIPT_ERROR;
}

int host_bad_return(struct script *s, lua_State *L, const char *hook, const char *expected,
                    char *why, size_t whylen)
{
  snprintf(why, whylen, "%s returned %s; expected %s", hook, luaL_typename(L, -1), expected);
  if (s->stats) {
    s->stats->bad_returns++;
    s->stats->errors++;
  }
  host_log_error(s, hook, why);
  return SCRIPT_ERROR;
}

struct script_call *host_call_of(lua_State *co)
{
  return *(struct script_call **)lua_getextraspace(co);
}

static void set_call(lua_State *co, struct script_call *c)
{
  *(struct script_call **)lua_getextraspace(co) = c;
}

/* The call is over: its coroutine goes, and a heap call leaves the list
 * (and frees a state that was only waiting for it). */
static void call_end(struct script_call *c)
{
  struct script *s = c->s;
  set_call(c->co, NULL);
  luaL_unref(s->L, LUA_REGISTRYINDEX, c->co_ref);
  if (!c->heap)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->waiting = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (s->stats)
    s->stats->waiting--;
  if (c->wait.call)
    *c->wait.call = NULL;
  free(c);
}

/* Resumes c's coroutine with nargs values and handles how it stops:
 * finished (res filled), failed, or waiting again. Returns the status, or
 * SCRIPT_PENDING. */
static int step(struct script_call *c, int nargs)
{
  struct script *s = c->s;
  lua_State *co = c->co;
  double budget = s->limits.hook_timeout - c->cpu_used;
  double start = host_mono_now();
  s->timed_out = 0;
  s->deadline = start + (budget > 0 ? budget : 0.000001);
  int nres = 0;
  int rc = lua_resume(co, s->L, nargs, &nres);
  s->deadline = 0;
  double ran = host_mono_now() - start;
  c->cpu_used += ran;
  struct script_result *res = c->heap ? &c->own : c->res;
  if (rc == LUA_YIELD && c->io)
    return SCRIPT_PENDING;
  if (rc == LUA_YIELD) { /* coroutine.yield in a hook: not a call-out */
    lua_settop(co, 0);
    lua_pushstring(co, "a hook yielded outside a call-out (coroutine.yield is not allowed in hooks)");
    rc = LUA_ERRRUN;
  }
  res->status = SCRIPT_ERROR;
  if (rc == LUA_OK) {
    if (nres > c->nres)
      lua_pop(co, nres - c->nres);
    for (; nres < c->nres; nres++)
      lua_pushnil(co);
    res->status = c->finish ? c->finish(s, co, res) : SCRIPT_OK;
  } else {
    const char *msg = lua_tostring(co, -1);
    luaL_traceback(s->L, co, msg ? msg : "error object is not a string", 0);
    call_failed(s, hook_names[c->h], lua_tostring(s->L, -1), rc == LUA_ERRMEM, s->timed_out,
                res->why, sizeof(res->why));
    lua_pop(s->L, 1);
    lua_gc(s->L, LUA_GCCOLLECT);
  }
  lua_settop(co, 0);
  return res->status;
}

int host_run(struct script *s, enum script_hook h, int nargs, int nres, hook_finish_fn finish,
             struct script_result *res, const struct script_wait *wait, int detached)
{
  lua_State *L = s->L;
  double start = host_mono_now();
  memset(res, 0, sizeof(*res));
  if (s->stats)
    s->stats->calls[h]++;
  lua_State *co = lua_newthread(L);
  struct script_call call = {.s = s, .co = co, .h = h, .nres = nres, .finish = finish, .res = res,
                             .may_wait = wait != NULL || detached, .detached = detached};
  call.co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  call.wall_deadline = start + s->limits.hook_wall;
  if (wait)
    call.wait = *wait;
  lua_xmove(L, co, nargs + 1); /* the function and its arguments */
  lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1000);
  set_call(co, &call);
  int rc = step(&call, nargs);
  if (rc != SCRIPT_PENDING) {
    record_latency(s, host_mono_now() - start);
    call_end(&call);
    return rc;
  }
  /* It waits: it moves to the heap, where the call-out's answer finds it. */
  struct script_call *c = xmalloc(sizeof(*c));
  *c = call;
  c->heap = 1;
  c->res = NULL;
  set_call(co, c);
  c->next = s->waiting;
  c->prev = NULL;
  if (s->waiting)
    s->waiting->prev = c;
  s->waiting = c;
  if (s->stats) {
    s->stats->waits++;
    s->stats->waiting++;
  }
  if (c->wait.call)
    *c->wait.call = c;
  return SCRIPT_PENDING;
}

void host_resume(struct script_call *c, int nargs)
{
  int rc = step(c, nargs);
  if (rc == SCRIPT_PENDING)
    return;
  struct script_wait w = c->wait;
  struct script_result res = c->own;
  int detached = c->detached;
  record_latency(c->s, c->cpu_used);
  call_end(c);
  if (!detached && w.done)
    w.done(w.arg, &res);
  else
    script_result_free(&res);
}

static void drop(struct script_call *c)
{
  struct script *s = c->s;
  if (c->io && s->io.cancel)
    s->io.cancel(s->io.ud, c->io);
  c->io = NULL;
  call_end(c);
}

void script_call_cancel(struct script_call *c)
{
  if (c)
    drop(c);
}

void script_cancel_all(struct script *s)
{
  while (s && s->waiting) {
    struct script_call *c = s->waiting;
    struct script_wait w = c->wait;
    int detached = c->detached;
    drop(c);
    if (!detached && w.done) {
      struct script_result res = {.status = SCRIPT_ERROR};
      snprintf(res.why, sizeof(res.why), "the gateway is shutting down");
      w.done(w.arg, &res);
    }
  }
}

int script_busy(const struct script *s) { return s && s->waiting; }

void script_result_free(struct script_result *r)
{
  free(r->user_id);
  free(r->role);
  free(r->token);
  script_strv_free(r->channels, r->nchannels);
  r->user_id = r->role = r->token = NULL;
  r->channels = NULL;
  r->nchannels = 0;
}

void script_set_io(struct script *s, const struct script_io *io)
{
  s->io = *io;
}

/* Puts tinysse.http into the module table that require("tinysse") gives. */
static int add_http(lua_State *L)
{
  lua_getglobal(L, "require");
  lua_pushstring(L, "tinysse");
  lua_call(L, 1, 1);
  lua_pushcfunction(L, host_l_http);
  lua_setfield(L, -2, "http");
  return 0;
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
  s->limits.hook_wall = limits->hook_wall;
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
  set_call(L, NULL);
  /* Hooks make short-lived garbage (req tables, results): the generational
   * collector handles that for less work than the incremental one. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  luaL_openlibs(L);
  tinysse_module_open(L, host);
  lua_pushcfunction(L, add_http);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "cannot load the tinysse module: %s", lua_tostring(L, -1));
    goto fail;
  }

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
  script_cancel_all(s);
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
