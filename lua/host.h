/* The script host: one Lua state per worker, loaded from the operator's
 * script. Every hook call runs as a coroutine under one protected runner
 * with a traceback, a CPU budget, a wall-clock limit and a memory cap; a
 * failing hook fails only its own request. No Lua type crosses this header.
 *
 * Returns: hook calls return SCRIPT_OK, SCRIPT_DENY (the hook said no; `why`
 * holds its reason) or SCRIPT_ERROR (error, timeout, memory or wrong return
 * type; `why` holds a one-line message, already logged and counted) in
 * res->status, or SCRIPT_PENDING: the hook waits for a call-out
 * (tinysse.http); the caller's wait->done gets the result later, on the
 * same thread, unless the call is cancelled first. */
#ifndef TINYSSE_HOST_H
#define TINYSSE_HOST_H

#include <stddef.h>

#include "tinysse_module.h"

enum script_status { SCRIPT_OK = 0, SCRIPT_DENY = 1, SCRIPT_ERROR = -1, SCRIPT_PENDING = 2 };

enum script_hook {
  HOOK_VALIDATE_TOKEN, HOOK_CHANNELS, HOOK_ON_CONNECT, HOOK_ON_DISCONNECT,
  HOOK_AUTHORIZE_PUBLISH, HOOK_ISSUE_TOKEN, HOOK_ON_ERROR, HOOK_COUNT
};

struct script_kv {
  const char *key, *value;
};

/* What hooks see as `req`. */
struct script_req {
  const char *method, *path, *peer;
  const struct script_kv *query, *headers; /* header names lower-case */
  size_t nquery, nheaders;
  const struct script_kv *cookies; /* from the Cookie headers */
  size_t ncookies;
  const char *body; /* NULL when none */
  size_t body_len;
  int publisher; /* the request carried the gateway's publish key */
  /* Unique per request (never 0): hooks called for the same request share
   * one Lua `req` table, built once. */
  unsigned long long serial;
};

struct script_client {
  const char *id, *user_id, *role;
  const char *const *channels;
  size_t nchannels;
};

/* Atomic: SIGHUP changes them on one thread while workers load scripts
 * with them on others. */
struct script_limits {
  _Atomic double hook_timeout; /* seconds of CPU-bound work per hook call */
  _Atomic double hook_wall;    /* seconds a hook call may take in all, call-outs included */
  _Atomic size_t memory_cap;   /* bytes for the whole Lua state */
};

/* Counters the host updates (one struct per worker; read racily by metrics). */
struct script_stats {
  unsigned long calls[HOOK_COUNT];
  unsigned long errors, timeouts, memory_errors, bad_returns;
  unsigned long waits;      /* hook calls that waited for a call-out */
  unsigned long waiting;    /* hook calls waiting now */
  unsigned long callouts, callout_errors; /* tinysse.http calls; failed (no HTTP answer) */
  /* hook latency histogram, upper bounds in script_latency_bounds (seconds) */
  unsigned long latency_buckets[8];
  double latency_sum;
  unsigned long latency_count;
};
extern const double script_latency_bounds[8];

struct script;
struct script_call;

/* What a hook call produced (the fields its hook sets; strings malloc'd,
 * owned by whoever holds the result: free with script_result_free). */
struct script_result {
  int status;
  char why[512];
  char *user_id, *role;   /* validate_token */
  double expires_at;      /* validate_token: 0 when none */
  char **channels;        /* channels */
  size_t nchannels;
  char *token;            /* issue_token */
  double expires_in;
};
void script_result_free(struct script_result *r);

/* Where a waiting hook call reports: done(arg, res) once, on the thread
 * that started it (res is the caller's to keep or free); *call is set to a
 * handle for script_call_cancel while it waits. */
struct script_wait {
  void (*done)(void *arg, struct script_result *res);
  void *arg;
  struct script_call **call;
};
/* Forgets a waiting call: its call-out is cancelled, done never called. */
void script_call_cancel(struct script_call *c);

/* Call-outs: how tinysse.http reaches the network (the worker's HTTP
 * client). http() starts a request and returns a handle (NULL: refused,
 * done will not be called); done(arg, res) is called later, once. */
struct script_http_req {
  const char *method, *url;
  const struct script_kv *headers;
  size_t nheaders;
  const char *body;
  size_t body_len;
  double timeout;
};
struct script_http_res {
  int status;          /* 0 when error is set */
  const char *error;   /* NULL, or "timeout", "connect_failed", ... */
  const char *detail;  /* for logs */
  const char *body;
  size_t body_len;
  const struct script_kv *headers;
  size_t nheaders;
};
struct script_io {
  void *ud;
  void *(*http)(void *ud, const struct script_http_req *req,
                void (*done)(void *arg, const struct script_http_res *res), void *arg);
  void (*cancel)(void *ud, void *handle);
};
void script_set_io(struct script *s, const struct script_io *io);

/* Loads path into a new state. NULL with a one-line reason in err. */
struct script *script_load(const char *path, const struct script_limits *limits,
                           const struct tinysse_module_host *host, struct script_stats *stats,
                           char *err, size_t errlen);
/* NULL is fine. Calls still waiting are ended first (script_cancel_all):
 * a reload keeps a busy state until it is not (script_busy). */
void script_free(struct script *s);
/* Ends every waiting call now: each caller's done gets SCRIPT_ERROR
 * ("the gateway is shutting down"); fire-and-forget calls are dropped. */
void script_cancel_all(struct script *s);
/* Has hook calls waiting for call-outs. */
int script_busy(const struct script *s);
const char *script_path(const struct script *s);
int script_has(const struct script *s, enum script_hook hook);
const char *script_hook_name(enum script_hook hook);
/* The Lua release linked in, as "Lua 5.4.6" (for --version). */
const char *script_lua_version(void);

/* Calls fn for each `config` entry: numbers and booleans as text, arrays once
 * per element. 0, or -1 with err when an entry has an unusable type. */
int script_config_each(struct script *s, int (*fn)(const char *key, const char *value, void *arg),
                       void *arg, char *err, size_t errlen);

/* The hooks that answer a request. Each fills res (res->status is the
 * return value) or returns SCRIPT_PENDING (only with a wait; without one a
 * call-out in the hook fails with "not_available"). */
/* validate_token: user_id, role, expires_at. */
int script_validate_token(struct script *s, const char *token, const struct script_req *req,
                          struct script_result *res, const struct script_wait *wait);
/* channels: channels (free with script_strv_free, or script_result_free). */
int script_channels(struct script *s, const char *user_id, const char *role,
                    const struct script_req *req, struct script_result *res,
                    const struct script_wait *wait);
void script_strv_free(char **v, size_t n);
int script_authorize_publish(struct script *s, const struct script_req *req,
                             struct script_result *res, const struct script_wait *wait);
/* issue_token: token, expires_in. */
int script_issue_token(struct script *s, const struct script_req *req, struct script_result *res,
                       const struct script_wait *wait);
/* on_connect and on_disconnect may wait too: nobody waits for them. */
void script_on_connect(struct script *s, const struct script_client *c);
void script_on_disconnect(struct script *s, const struct script_client *c, const char *reason);
/* Reports an error to the script's on_error hook (type: auth, parse, ...). */
void script_on_error(struct script *s, const char *type, const char *message);

#endif
