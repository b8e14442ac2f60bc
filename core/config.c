/* The option table: parsing, SIGHUP's reload policy, and the rows --help and
 * the man page render (usage.c, through config_option_at).
 * Strings stay owned by argv or are copied from the script (config lives
 * for the whole process, so they are freed only at exit). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "alloc.h"
#include "redis_url.h"
#include "log.h"
#include "proxyproto.h"

enum kind { K_STR, K_LIST, K_LONG, K_DOUBLE, K_FLAG };

/* What SIGHUP does when the reloaded script's config table changes an
 * option. */
enum reload {
  CLI_ONLY, /* not settable from the script, so never reloaded */
  LIVE,     /* copied into the live config at once */
  RESTART,  /* the running value kept; logged as needs_restart */
  CUSTOM,   /* live through the row's apply: a check or a side effect */
};

struct option_desc;
/* A CUSTOM row's reload, run once for its group (o is its first row):
 * copies the group's fields (and no others) from next into live, 0; or
 * logs event=reload_failed and keeps the old values, -1. */
typedef int apply_fn(const struct option_desc *o, struct config *live, const struct config *next,
                     const struct config_reload_ctx *ctx);

struct option_desc {
  const char *name;
  const char *value; /* what --help calls the value; NULL for a flag */
  enum kind kind;
  size_t off, count_off; /* count_off for lists */
  double min, max;
  enum reload reload;
  apply_fn *apply; /* CUSTOM only */
  /* the name SIGHUP's log line uses, shared by the options it groups;
   * NULL: the option's own, with '_' */
  const char *group;
  /* the default, set by config_defaults and shown by --help; NULL: none,
   * or one the help text describes */
  const char *def;
  const char *help; /* NULL: hidden from --help and the man page */
};

static apply_fn apply_max_connections, apply_busy_retry, apply_log_level, apply_script_limit;

#ifndef TINYSSE_ASSETS_DIR
#define TINYSSE_ASSETS_DIR "build/wasm"
#endif

#define F(field) offsetof(struct config, field)

static const struct option_desc options[] = {
    /* name, value, kind, field, count, min, max, reload, apply, group, default, help */
    {"listen", "ADDR:PORT", K_LIST, F(listen), F(nlisten), 0, 0, RESTART, NULL, "listen/cors_origin", "127.0.0.1:8080", "where to listen (repeatable)"},
    {"script", "FILE", K_STR, F(script), 0, 0, 0, CLI_ONLY, NULL, NULL, "scripts/default.lua", "the operator's Lua script (SIGHUP reloads it)"},
    {"endpoint", "PATH", K_STR, F(endpoint), 0, 0, 0, RESTART, NULL, NULL, "/events", "path of the stream"},
    {"buffer", "N", K_LONG, F(buffer), 0, 1, 10000000, RESTART, NULL, NULL, "1000", "replay buffer size in messages"},
    {"buffer-bytes", "BYTES", K_LONG, F(buffer_bytes), 0, 0, 1L << 40, RESTART, NULL, NULL, "67108864", "bytes the replay history may hold, channel histories included (0: no bound but --buffer)"},
    {"buffer-age", "SECONDS", K_DOUBLE, F(buffer_age), 0, 0, 31536000, RESTART, NULL, NULL, "3600", "seconds a message stays in the replay history (0: no bound)"},
    {"channel-history", "N", K_LONG, F(channel_history), 0, 0, 1024, RESTART, NULL, NULL, "16", "messages each channel keeps for replay however busy the others are, within --buffer-age and --buffer-bytes (0: none)"},
    {"heartbeat", "SECONDS", K_DOUBLE, F(heartbeat), 0, 0.1, 3600, LIVE, NULL, NULL, "15", "seconds of silence before a ': ping'"},
    {"retry", "MS", K_LONG, F(retry_ms), 0, 0, 3600000, LIVE, NULL, NULL, "2000", "retry: value sent to clients, in ms"},
    {"publish-key", "KEY", K_STR, F(publish_key), 0, 0, 0, RESTART, NULL, NULL, NULL, "bearer key for POST /publish and GET /channels, 16 characters or more (also env TINYSSE_PUBLISH_KEY; by default a random one, printed once, unless the script has authorize_publish)"},
    {"cors-origin", "ORIGIN", K_LIST, F(cors_origin), F(ncors_origin), 0, 0, RESTART, NULL, "listen/cors_origin", NULL, "allowed browser origin (repeatable, * allowed; none by default)"},
    {"max-clients", "N", K_LONG, F(max_clients), 0, 1, 10000000, LIVE, NULL, NULL, "100000", "stream connections beyond this are shed"},
    {"workers", "N", K_LONG, F(workers), 0, 1, 256, RESTART, NULL, NULL, NULL, "event-loop threads (by default one per core)"},
    {"redis", "URL", K_STR, F(redis), 0, 0, 0, RESTART, NULL, "redis", NULL, "cluster mode, off by default: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"},
    {"redis-key", "NAME", K_STR, F(redis_key), 0, 0, 0, RESTART, NULL, "redis", "tinysse", "the Redis stream the cluster shares"},
    {"max-clients-per-peer", "N", K_LONG, F(max_per_peer), 0, 1, 10000000, LIVE, NULL, NULL, "10000", "streams one peer address may hold"},
    {"max-connections", "N", K_LONG, F(max_connections), 0, 1, 10000000, CUSTOM, apply_max_connections, NULL, NULL, "connections of any kind (streams, requests, idle keep-alive) beyond this get 503 (by default --max-clients + 1024, within the open-files limit; a reload must fit that limit too)"},
    {"max-connections-per-peer", "N", K_LONG, F(max_conn_per_peer), 0, 1, 10000000, LIVE, NULL, NULL, "1024", "HTTP connections other than streams (requests, idle keep-alive) one peer address may hold"},
    {"request-timeout", "SECONDS", K_DOUBLE, F(request_timeout), 0, 0.1, 3600, RESTART, NULL, NULL, "10", "seconds to send a whole request, counted from accept or the previous answer (also the keep-alive idle time)"},
    {"busy-retry-min", "MS", K_LONG, F(busy_retry_min), 0, 0, 3600000, CUSTOM, apply_busy_retry, "busy_retry", "1000", "a stream refused for capacity or readiness gets retry: drawn from MIN..MAX ms"},
    {"busy-retry-max", "MS", K_LONG, F(busy_retry_max), 0, 0, 3600000, CUSTOM, apply_busy_retry, "busy_retry", "10000", "upper bound of that retry: in ms"},
    {"tls-cert", "FILE", K_STR, F(tls_cert), 0, 0, 0, RESTART, NULL, "tls", NULL, "PEM certificate (chain) for TLS on every --listen address (SIGHUP re-reads it; off by default)"},
    {"tls-key", "FILE", K_STR, F(tls_key), 0, 0, 0, RESTART, NULL, "tls", NULL, "PEM private key of --tls-cert (SIGHUP re-reads it)"},
    {"plain-listen", "ADDR:PORT", K_LIST, F(plain_listen), F(nplain_listen), 0, 0, RESTART, NULL, NULL, NULL, "a listener without TLS beside TLS ones, e.g. loopback for publishers (repeatable; none by default)"},
    {"h2-max-streams", "N", K_LONG, F(h2_max_streams), 0, 1, 100000, LIVE, NULL, NULL, "128", "concurrent HTTP/2 streams per connection (new connections)"},
    {"no-http2", NULL, K_FLAG, F(no_http2), 0, 0, 0, RESTART, NULL, NULL, NULL, "speak HTTP/1.1 only: no h2 in ALPN, no h2c"},
    {"trusted-proxy", "CIDR", K_LIST, F(trusted_proxy), F(ntrusted_proxy), 0, 0, RESTART, NULL, NULL, NULL, "a proxy whose PROXY protocol header or X-Forwarded-For names the client (repeatable; none by default)"},
    {"idempotency-window", "SECONDS", K_DOUBLE, F(idem_window), 0, 1, 86400, RESTART, NULL, "idempotency", "300", "seconds a publish's Idempotency-Key is remembered"},
    {"idempotency-keys", "N", K_LONG, F(idem_keys), 0, 1, 10000000, RESTART, NULL, "idempotency", "100000", "most Idempotency-Keys one node remembers (oldest forgotten first)"},
    {"max-queue", "BYTES", K_LONG, F(max_queue), 0, 1024, 1L << 34, LIVE, NULL, NULL, "1048576", "bytes queued per stream before it is closed as slow"},
    {"max-body", "BYTES", K_LONG, F(max_body), 0, 64, 1L << 30, RESTART, NULL, NULL, "1048576", "largest request body in bytes"},
    {"max-header", "BYTES", K_LONG, F(max_header), 0, 256, 1L << 20, RESTART, NULL, NULL, "8192", "largest request line plus headers in bytes"},
    {"hook-timeout", "SECONDS", K_DOUBLE, F(hook_timeout), 0, 0.001, 60, CUSTOM, apply_script_limit, NULL, "0.25", "seconds a Lua hook may run"},
    {"hook-wall-timeout", "SECONDS", K_DOUBLE, F(hook_wall), 0, 0.01, 600, CUSTOM, apply_script_limit, NULL, "10", "seconds a Lua hook call may take in all, waiting for call-outs included"},
    {"callout-concurrency", "N", K_LONG, F(callout_concurrency), 0, 1, 100000, RESTART, NULL, NULL, "256", "tinysse.http requests on the wire at once per worker (more wait in a queue)"},
    {"callout-queue", "N", K_LONG, F(callout_queue), 0, 0, 10000000, RESTART, NULL, NULL, "10000", "tinysse.http requests that may wait per worker; beyond, the call fails with queue_full"},
    {"callout-max-body", "BYTES", K_LONG, F(callout_max_body), 0, 1024, 1L << 30, RESTART, NULL, NULL, "1048576", "largest tinysse.http answer body"},
    {"callout-ca-file", "FILE", K_STR, F(callout_ca_file), 0, 0, 0, RESTART, NULL, NULL, NULL, "PEM CA certificates that https:// call-outs and JWKS URLs are verified against (by default the system's)"},
    {"token-cookie", "NAME", K_STR, F(token_cookie), 0, 0, 0, RESTART, NULL, NULL, NULL, "a stream request without ?token= or a Bearer header takes its token from this cookie (none by default)"},
    {"subscription-ttl", "SECONDS", K_DOUBLE, F(subscription_ttl), 0, 1, 31536000, RESTART, NULL, NULL, "86400", "seconds a user's server-side subscriptions are kept after their last change (for streams that reconnect)"},
    {"subscription-users", "N", K_LONG, F(subscription_users), 0, 0, 10000000, RESTART, NULL, NULL, "100000", "users whose server-side subscriptions are kept at once; a change for one more is refused (503)"},
    {"subscribed-event", NULL, K_FLAG, F(subscribed_event), 0, 0, 0, LIVE, NULL, NULL, NULL, "send event: tinysse.subscribed to a stream whose channels a server-side subscription changed"},
    {"script-memory", "BYTES", K_LONG, F(script_memory), 0, 1L << 20, 1L << 34, CUSTOM, apply_script_limit, NULL, "67108864", "bytes a Lua state may allocate"},
    {"log-level", "LEVEL", K_STR, F(log_level), 0, 0, 0, CUSTOM, apply_log_level, NULL, "info", "debug, info, warn or error"},
    {"assets", "DIR", K_STR, F(assets), 0, 0, 0, RESTART, NULL, NULL, TINYSSE_ASSETS_DIR, "directory of the browser client files served at /tinysse.js, /tinysse.wasm, /demo"},
    {"no-io-uring", NULL, K_FLAG, F(no_io_uring), 0, 0, 0, RESTART, NULL, NULL, NULL, "write each stream with its own writev instead of one io_uring call per slice of streams"},
    {"access-log", NULL, K_FLAG, F(access_log), 0, 0, 0, LIVE, NULL, NULL, NULL, "log one line per HTTP request (never the query string)"},
    {"check", NULL, K_FLAG, F(check), 0, 0, 0, CLI_ONLY, NULL, NULL, NULL, "load the script, report problems, exit 0/1"},
    {"help", NULL, K_FLAG, F(help), 0, 0, 0, CLI_ONLY, NULL, NULL, NULL, "print this list of options and exit"},
    {"version", NULL, K_FLAG, F(version), 0, 0, 0, CLI_ONLY, NULL, NULL, NULL, "print the version and those of the linked libraries, and exit"},
    {"man", NULL, K_FLAG, F(man), 0, 0, 0, CLI_ONLY, NULL, NULL, NULL, NULL}, /* tinysse(1), in roff */
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))
_Static_assert(NOPTIONS <= 64, "set_by_cli and set_by_script hold one bit per option");

/* A field of c that row o describes, as type T (const when c is). */
#define FIELD(c, o, T) ((T *)((char *)(c) + (o)->off))
#define CFIELD(c, o, T) ((const T *)((const char *)(c) + (o)->off))
typedef _Atomic(const char *) atomic_str;

/* Strings copied from scripts' config tables, freed at exit: a reload that
 * sets the same value again reuses its copy. Touched by one thread (the
 * start-up thread, which then runs worker 0 and its SIGHUP). */
static char *owned[1024];
static size_t nowned;

static const struct option_desc *find_option(const char *name, size_t len)
{
  for (size_t i = 0; i < NOPTIONS; i++) {
    const char *o = options[i].name;
    if (strlen(o) != len)
      continue;
    size_t k = 0;
    /* '_' in script config names matches '-' */
    while (k < len && (o[k] == name[k] || (o[k] == '-' && name[k] == '_')))
      k++;
    if (k == len)
      return &options[i];
  }
  return NULL;
}

/* touched: the set_by_* mask of the source; a list option's first value
 * from a source replaces the values from before (the default, or the
 * script's when the command line sets it too). */
static int set_value(struct config *c, const struct option_desc *o, const char *value,
                     unsigned long long *touched, char *err, size_t errlen)
{
  unsigned long long bit = 1ULL << (o - options);
  char *end;
  switch (o->kind) {
  case K_STR:
    atomic_store(FIELD(c, o, atomic_str), value);
    return 0;
  case K_LIST: {
    int *n = (int *)((char *)c + o->count_off);
    if (!(*touched & bit))
      *n = 0;
    *touched |= bit;
    if (*n >= CONFIG_MAX_LIST) {
      snprintf(err, errlen, "--%s: at most %d values", o->name, CONFIG_MAX_LIST);
      return -1;
    }
    FIELD(c, o, const char *)[(*n)++] = value;
    return 0;
  }
  case K_LONG: {
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < (long)o->min || v > (long)o->max) {
      snprintf(err, errlen, "--%s: expected a whole number from %.0f to %.0f, got '%s'",
               o->name, o->min, o->max, value);
      return -1;
    }
    atomic_store(FIELD(c, o, _Atomic long), v);
    return 0;
  }
  case K_DOUBLE: {
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !(v >= o->min && v <= o->max)) {
      snprintf(err, errlen, "--%s: expected a number from %g to %g, got '%s'", o->name,
               o->min, o->max, value);
      return -1;
    }
    atomic_store(FIELD(c, o, _Atomic double), v);
    return 0;
  }
  case K_FLAG:
    atomic_store(FIELD(c, o, _Atomic int),
                 !value || strcmp(value, "true") == 0 || strcmp(value, "1") == 0);
    return 0;
  }
  return -1;
}

void config_defaults(struct config *c)
{
  unsigned long long touched = 0;
  char err[200];
  memset(c, 0, sizeof(*c));
  for (const struct option_desc *o = options; o < options + NOPTIONS; o++)
    if (o->def && set_value(c, o, o->def, &touched, err, sizeof(err)) != 0) {
      fprintf(stderr, "tinysse: bad default in the option table: %s\n", err);
      abort();
    }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = cores > 0 ? cores : 1;
  /* max_connections stays 0 until config_fit_connections picks it */
}

int config_parse_args(struct config *c, int argc, char **argv, char *err, size_t errlen)
{
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, errlen, "unexpected argument '%s' (options start with --; see --help)", a);
      return -1;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct option_desc *o = find_option(name, len);
    if (!o || strchr(name, '_')) {
      snprintf(err, errlen, "unknown option '%.*s' (see --help)", (int)(len + 2), a);
      return -1;
    }
    const char *value = NULL;
    if (o->kind == K_FLAG) {
      if (eq) {
        snprintf(err, errlen, "--%s takes no value", o->name);
        return -1;
      }
    } else if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      snprintf(err, errlen, "--%s needs a value", o->name);
      return -1;
    }
    if (set_value(c, o, value, &c->set_by_cli, err, errlen) != 0)
      return -1;
    c->set_by_cli |= 1ULL << (o - options);
  }
  return 0;
}

/* A copy of value that lives until config_release, shared with an equal
 * one kept before; NULL when the table is full. */
static const char *keep_string(const char *value)
{
  for (size_t i = 0; i < nowned; i++)
    if (strcmp(owned[i], value) == 0)
      return owned[i];
  if (nowned == sizeof(owned) / sizeof(owned[0]))
    return NULL;
  return owned[nowned++] = xstrdup(value);
}

int config_set_from_script(struct config *c, const char *name, const char *value, char *err,
                           size_t errlen)
{
  const struct option_desc *o = find_option(name, strlen(name));
  if (!o || o->reload == CLI_ONLY) {
    snprintf(err, errlen, "config.%s: not an option a script can set", name);
    return -1;
  }
  if (c->set_by_cli & (1ULL << (o - options)))
    return 0;
  if (o->kind != K_STR && o->kind != K_LIST)
    return set_value(c, o, value, &c->set_by_script, err, errlen);
  /* Strings outlive the script's state (and a reload's): keep a copy. */
  const char *copy = keep_string(value);
  if (!copy) {
    snprintf(err, errlen, "config.%s: too many different strings set over reloads", name);
    return -1;
  }
  return set_value(c, o, copy, &c->set_by_script, err, errlen);
}

void config_release(void)
{
  for (size_t i = 0; i < nowned; i++)
    free(owned[i]);
  nowned = 0;
}

int config_validate(struct config *c, char *err, size_t errlen)
{
  if (c->endpoint[0] != '/') {
    snprintf(err, errlen, "--endpoint must start with '/', got '%s'", c->endpoint);
    return -1;
  }
  if (log_parse_level(c->log_level) < 0) {
    snprintf(err, errlen, "--log-level: expected debug, info, warn or error, got '%s'",
             c->log_level);
    return -1;
  }
  if (c->publish_key && strlen(c->publish_key) < 16) {
    snprintf(err, errlen, "the publish key must be at least 16 characters long");
    return -1;
  }
  if (c->redis) {
    struct redis_url u;
    if (redis_url_parse(c->redis, &u, err, errlen) != 0)
      return -1;
  }
  if (!c->redis_key[0] || strlen(c->redis_key) > 200) {
    snprintf(err, errlen, "--redis-key: expected a key name of 1 to 200 bytes");
    return -1;
  }
  if (c->busy_retry_min > c->busy_retry_max) {
    snprintf(err, errlen, "--busy-retry-min (%ld) must not exceed --busy-retry-max (%ld)",
             c->busy_retry_min, c->busy_retry_max);
    return -1;
  }
  for (int i = 0; i < c->ntrusted_proxy; i++) {
    struct proxy_cidr r;
    char why[200];
    if (proxy_cidr_parse(c->trusted_proxy[i], &r, why, sizeof(why)) != 0) {
      snprintf(err, errlen, "--trusted-proxy '%s': %s", c->trusted_proxy[i], why);
      return -1;
    }
  }
  if (c->nlisten == 0) {
    snprintf(err, errlen, "--listen: at least one address is needed");
    return -1;
  }
  if (!c->tls_cert != !c->tls_key) {
    snprintf(err, errlen, "--tls-cert and --tls-key go together: give both, or neither");
    return -1;
  }
  return 0;
}

int config_option_at(size_t i, struct config_option_info *out)
{
  if (i >= NOPTIONS)
    return -1;
  const struct option_desc *o = &options[i];
  *out = (struct config_option_info){o->name, o->value, o->def, o->help, CONFIG_CLI_ONLY};
  if (o->reload == RESTART)
    out->reload = CONFIG_RELOAD_RESTART;
  else if (o->reload != CLI_ONLY)
    out->reload = CONFIG_RELOAD_LIVE; /* CUSTOM ones too: live, after their check */
  return 0;
}

/* SIGHUP */

static const char *const *list_of(const struct config *c, const struct option_desc *o, int *n)
{
  *n = *(const int *)((const char *)c + o->count_off);
  return (const char *const *)((const char *)c + o->off);
}

static void copy_value(const struct option_desc *o, struct config *live,
                       const struct config *next)
{
  switch (o->kind) {
  case K_STR:
    atomic_store(FIELD(live, o, atomic_str), *CFIELD(next, o, atomic_str));
    break;
  case K_LONG:
    atomic_store(FIELD(live, o, _Atomic long), *CFIELD(next, o, _Atomic long));
    break;
  case K_DOUBLE:
    atomic_store(FIELD(live, o, _Atomic double), *CFIELD(next, o, _Atomic double));
    break;
  case K_FLAG:
    atomic_store(FIELD(live, o, _Atomic int), *CFIELD(next, o, _Atomic int));
    break;
  case K_LIST: /* never LIVE: a list and its count are not one atomic value */
    break;
  }
}

static int differs(const struct option_desc *o, const struct config *a, const struct config *b)
{
  switch (o->kind) {
  case K_STR: {
    const char *x = *CFIELD(a, o, atomic_str), *y = *CFIELD(b, o, atomic_str);
    return x != y && (!x || !y || strcmp(x, y) != 0);
  }
  case K_LIST: {
    int n, m;
    const char *const *x = list_of(a, o, &n), *const *y = list_of(b, o, &m);
    if (n != m)
      return 1;
    for (int i = 0; i < n; i++)
      if (strcmp(x[i], y[i]) != 0)
        return 1;
    return 0;
  }
  case K_LONG:
    return *CFIELD(a, o, _Atomic long) != *CFIELD(b, o, _Atomic long);
  case K_DOUBLE:
    return *CFIELD(a, o, _Atomic double) != *CFIELD(b, o, _Atomic double);
  case K_FLAG:
    return *CFIELD(a, o, _Atomic int) != *CFIELD(b, o, _Atomic int);
  }
  return 0;
}

static int same_group(const struct option_desc *a, const struct option_desc *b)
{
  return a == b || (a->group && b->group && strcmp(a->group, b->group) == 0);
}

/* Appends o as SIGHUP names it: its group, or its own name with '_'. */
static void note(char *list, size_t cap, const struct option_desc *o)
{
  size_t n = strlen(list);
  snprintf(list + n, cap - n, "%s%s", n ? "," : "", o->group ? o->group : o->name);
  for (char *p = list + n; !o->group && *p; p++)
    if (*p == '-')
      *p = '_';
}

int config_apply_reload(struct config *live, const struct config *next,
                        const struct config_reload_ctx *ctx, char *changed, size_t changed_cap,
                        char *restart, size_t restart_cap)
{
  const struct option_desc *end = options + NOPTIONS;
  int rc = 0;
  changed[0] = restart[0] = '\0';
  for (const struct option_desc *o = options; o < end; o++) {
    const struct option_desc *g;
    int first = 1, diff = 0;
    if (o->reload == CLI_ONLY)
      continue;
    /* a group is handled once, at its first row, if any of its rows differs */
    for (g = options; g < o; g++)
      first &= !same_group(g, o);
    for (g = o; first && g < end; g++)
      diff |= same_group(g, o) && differs(g, live, next);
    if (!diff)
      continue;
    switch (o->reload) {
    case LIVE:
      for (g = o; g < end; g++)
        if (same_group(g, o))
          copy_value(g, live, next);
      note(changed, changed_cap, o);
      break;
    case CUSTOM:
      if (o->apply(o, live, next, ctx) == 0)
        note(changed, changed_cap, o);
      else
        rc = -1;
      break;
    case RESTART:
      note(restart, restart_cap, o);
      break;
    case CLI_ONLY:
      break;
    }
  }
  return rc;
}

static int apply_max_connections(const struct option_desc *o, struct config *live,
                                 const struct config *next, const struct config_reload_ctx *ctx)
{
  long want = next->max_connections, keep = live->max_connections;
  long room = config_connection_room(live, ctx->open_files);
  if (want > room) {
    log_event(LOG_ERROR, "reload_failed",
              "option=max_connections value=%ld error=\"the open-files limit %ld leaves room for "
              "%ld connections\" keeping=%ld",
              want, ctx->open_files, room, keep);
    return -1;
  }
  live->max_connections = want;
  return 0;
}

/* Readers load min and max one by one and clamp, so the two stores need no
 * lock (stream.c). */
static int apply_busy_retry(const struct option_desc *o, struct config *live,
                            const struct config *next, const struct config_reload_ctx *ctx)
{
  long lo = next->busy_retry_min, hi = next->busy_retry_max;
  if (lo > hi) {
    log_event(LOG_ERROR, "reload_failed",
              "option=busy_retry error=\"busy_retry_min %ld exceeds busy_retry_max %ld\" "
              "keeping=%ld..%ld",
              lo, hi, (long)live->busy_retry_min, (long)live->busy_retry_max);
    return -1;
  }
  live->busy_retry_min = lo;
  live->busy_retry_max = hi;
  return 0;
}

static int apply_log_level(const struct option_desc *o, struct config *live,
                           const struct config *next, const struct config_reload_ctx *ctx)
{
  const char *name = next->log_level, *keep = live->log_level;
  int level = log_parse_level(name);
  if (level < 0) {
    char q[200];
    log_event(LOG_ERROR, "reload_failed",
              "option=log_level value=%s error=\"expected debug, info, warn or error\" keeping=%s",
              log_quote(q, sizeof(q), name), keep);
    return -1;
  }
  live->log_level = name;
  if (ctx->log_level)
    ctx->log_level(ctx->arg, level);
  return 0;
}

/* hook_timeout, hook_wall, script_memory: the Lua states the workers load after the
 * reload take the new limits from the callback. */
static int apply_script_limit(const struct option_desc *o, struct config *live,
                              const struct config *next, const struct config_reload_ctx *ctx)
{
  copy_value(o, live, next);
  if (ctx->script_limits)
    ctx->script_limits(ctx->arg, live->hook_timeout, live->hook_wall, live->script_memory);
  return 0;
}

long config_open_files(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return LONG_MAX;
  /* Raising the soft limit up to the hard one needs no privilege; the
   * kernel caps the number of descriptors at fs.nr_open (2^20 by default). */
  rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    struct rlimit raised = {want, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl.rlim_cur = want;
  }
  return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX
                                                                         : (long)rl.rlim_cur;
}

long config_connection_room(const struct config *c, long open_files)
{
  /* Besides connections: stdio and the signal pipe, per worker an epoll
   * descriptor, an eventfd, a spare socket and the listeners, files opened
   * for a moment (scripts, browser assets), and the refusals answered past
   * the limit. */
  long reserve = 32 + c->workers * (4 + c->nlisten + c->nplain_listen) + CONFIG_ANSWERED_REFUSALS;
  return open_files - reserve;
}

int config_fit_connections(struct config *c, long open_files, char *err, size_t errlen)
{
  long room = config_connection_room(c, open_files);
  if (room < 16) {
    snprintf(err, errlen,
             "the open-files limit (%ld, ulimit -n) leaves no room for connections with %ld "
             "workers; raise it (LimitNOFILE= under systemd)", open_files, c->workers);
    return -1;
  }
  if (c->max_connections == 0) {
    c->max_connections = c->max_clients + 1024 < room ? c->max_clients + 1024 : room;
    return 0;
  }
  if (c->max_connections > room) {
    snprintf(err, errlen,
             "--max-connections %ld does not fit the open-files limit (%ld, ulimit -n), which "
             "leaves room for %ld connections; raise the limit (LimitNOFILE= under systemd) or "
             "lower --max-connections", c->max_connections, open_files, room);
    return -1;
  }
  return 0;
}
