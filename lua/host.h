/* The script host: one Lua state per worker, loaded from the operator's
 * script. Every call into Lua goes through one protected wrapper with a
 * traceback, an instruction/time budget and a memory cap; a failing hook
 * fails only its own request. No Lua type crosses this header.
 *
 * Returns: hook calls return SCRIPT_OK, SCRIPT_DENY (the hook said no; `why`
 * holds its reason) or SCRIPT_ERROR (error, timeout, memory or wrong return
 * type; `why` holds a one-line message, already logged and counted). */
#ifndef TINYSSE_HOST_H
#define TINYSSE_HOST_H

#include <stddef.h>

#include "tinysse_module.h"

enum script_status { SCRIPT_OK = 0, SCRIPT_DENY = 1, SCRIPT_ERROR = -1 };

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
  _Atomic size_t memory_cap;   /* bytes for the whole Lua state */
};

/* Counters the host updates (one struct per worker; read racily by metrics). */
struct script_stats {
  unsigned long calls[HOOK_COUNT];
  unsigned long errors, timeouts, memory_errors, bad_returns;
  /* hook latency histogram, upper bounds in script_latency_bounds (seconds) */
  unsigned long latency_buckets[8];
  double latency_sum;
  unsigned long latency_count;
};
extern const double script_latency_bounds[8];

struct script;

/* Loads path into a new state. NULL with a one-line reason in err. */
struct script *script_load(const char *path, const struct script_limits *limits,
                           const struct tinysse_module_host *host, struct script_stats *stats,
                           char *err, size_t errlen);
void script_free(struct script *s); /* NULL is fine */
const char *script_path(const struct script *s);
int script_has(const struct script *s, enum script_hook hook);
const char *script_hook_name(enum script_hook hook);
/* The Lua release linked in, as "Lua 5.4.6" (for --version). */
const char *script_lua_version(void);

/* Calls fn for each `config` entry: numbers and booleans as text, arrays once
 * per element. 0, or -1 with err when an entry has an unusable type. */
int script_config_each(struct script *s, int (*fn)(const char *key, const char *value, void *arg),
                       void *arg, char *err, size_t errlen);

/* validate_token: fills user_id/role (malloc'd, caller frees) and expires_at
 * (0 when none). */
int script_validate_token(struct script *s, const char *token, const struct script_req *req,
                          char **user_id, char **role, double *expires_at, char *why, size_t whylen);
/* channels: *out is a malloc'd array of malloc'd strings (free with
 * script_strv_free). */
int script_channels(struct script *s, const char *user_id, const char *role,
                    const struct script_req *req, char ***out, size_t *n, char *why, size_t whylen);
void script_strv_free(char **v, size_t n);
int script_authorize_publish(struct script *s, const struct script_req *req, char *why, size_t whylen);
/* issue_token: *token malloc'd; caller frees. */
int script_issue_token(struct script *s, const struct script_req *req, char **token,
                       double *expires_in, char *why, size_t whylen);
void script_on_connect(struct script *s, const struct script_client *c);
void script_on_disconnect(struct script *s, const struct script_client *c, const char *reason);
/* Reports an error to the script's on_error hook (type: auth, parse, ...). */
void script_on_error(struct script *s, const char *type, const char *message);

#endif
