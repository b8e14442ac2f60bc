/* Option parsing. Strings stay owned by argv or are strdup'd from the script
 * (config lives for the whole process, so they are never freed). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"
#include "proxyproto.h"

enum kind { K_STR, K_LIST, K_LONG, K_DOUBLE, K_FLAG };

struct option_desc {
  const char *name;
  enum kind kind;
  size_t off, count_off; /* count_off for lists */
  double min, max;
  const char *help;
};

#define F(field) offsetof(struct config, field)

static const struct option_desc options[] = {
    {"listen", K_LIST, F(listen), F(nlisten), 0, 0, "ADDR:PORT to listen on (repeatable)"},
    {"script", K_STR, F(script), 0, 0, 0, "the operator's Lua script"},
    {"endpoint", K_STR, F(endpoint), 0, 0, 0, "path of the stream (default /events)"},
    {"buffer", K_LONG, F(buffer), 0, 1, 10000000, "replay buffer size in messages"},
    {"heartbeat", K_DOUBLE, F(heartbeat), 0, 0.1, 3600, "seconds of silence before a ': ping'"},
    {"retry", K_LONG, F(retry_ms), 0, 0, 3600000, "retry: value sent to clients, in ms"},
    {"publish-key", K_STR, F(publish_key), 0, 0, 0, "bearer key for POST /publish"},
    {"cors-origin", K_LIST, F(cors_origin), F(ncors_origin), 0, 0, "allowed browser origin (repeatable, * allowed)"},
    {"max-clients", K_LONG, F(max_clients), 0, 1, 10000000, "stream connections beyond this get 503"},
    {"workers", K_LONG, F(workers), 0, 1, 256, "event-loop threads"},
    {"redis", K_STR, F(redis), 0, 0, 0, "cluster mode: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"},
    {"redis-key", K_STR, F(redis_key), 0, 0, 0, "the Redis stream the cluster shares (default tinysse)"},
    {"max-clients-per-peer", K_LONG, F(max_per_peer), 0, 1, 10000000, "streams one peer address may hold"},
    {"max-connections", K_LONG, F(max_connections), 0, 1, 10000000, "connections of any kind (streams, requests, idle keep-alive) beyond this get 503 (default --max-clients + 1024, within the open-files limit)"},
    {"max-connections-per-peer", K_LONG, F(max_conn_per_peer), 0, 1, 10000000, "HTTP connections other than streams (requests, idle keep-alive) one peer address may hold"},
    {"request-timeout", K_DOUBLE, F(request_timeout), 0, 0.1, 3600, "seconds to send a whole request, counted from accept or the previous answer (also the keep-alive idle time)"},
    {"busy-retry-min", K_LONG, F(busy_retry_min), 0, 0, 3600000, "a stream refused for capacity or readiness gets retry: drawn from MIN..MAX ms"},
    {"busy-retry-max", K_LONG, F(busy_retry_max), 0, 0, 3600000, "upper bound of that retry: in ms"},
    {"trusted-proxy", K_LIST, F(trusted_proxy), F(ntrusted_proxy), 0, 0, "CIDR of a proxy whose PROXY protocol header or X-Forwarded-For names the client (repeatable)"},
    {"idempotency-window", K_DOUBLE, F(idem_window), 0, 1, 86400, "seconds a publish's Idempotency-Key is remembered"},
    {"idempotency-keys", K_LONG, F(idem_keys), 0, 1, 10000000, "most Idempotency-Keys one node remembers (oldest forgotten first)"},
    {"max-queue", K_LONG, F(max_queue), 0, 1024, 1L << 34, "bytes queued per stream before it is closed as slow"},
    {"max-body", K_LONG, F(max_body), 0, 64, 1L << 30, "largest request body in bytes"},
    {"max-header", K_LONG, F(max_header), 0, 256, 1L << 20, "largest request line plus headers in bytes"},
    {"hook-timeout", K_DOUBLE, F(hook_timeout), 0, 0.001, 60, "seconds a Lua hook may run"},
    {"script-memory", K_LONG, F(script_memory), 0, 1L << 20, 1L << 34, "bytes a Lua state may allocate"},
    {"log-level", K_STR, F(log_level), 0, 0, 0, "debug, info, warn or error"},
    {"assets", K_STR, F(assets), 0, 0, 0, "directory of the browser client files served at /tinysse.js, /tinysse.wasm, /demo"},
    {"no-io-uring", K_FLAG, F(no_io_uring), 0, 0, 0, "write each stream with its own writev instead of one io_uring call per slice of streams"},
    {"access-log", K_FLAG, F(access_log), 0, 0, 0, "log one line per HTTP request (never the query string)"},
    {"check", K_FLAG, F(check), 0, 0, 0, "load the script, report problems, exit 0/1"},
    {"help", K_FLAG, F(help), 0, 0, 0, "this text"},
    {"version", K_FLAG, F(version), 0, 0, 0, "print the version"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* Strings copied from scripts' config tables (set from one thread). */
static char *owned[1024];
static size_t nowned;

void config_defaults(struct config *c)
{
  memset(c, 0, sizeof(*c));
  c->listen[0] = "127.0.0.1:8080";
  c->nlisten = 1;
  c->script = "scripts/default.lua";
  c->endpoint = "/events";
  c->buffer = 1000;
  c->heartbeat = 15;
  c->retry_ms = 2000;
  c->max_clients = 100000;
  c->max_per_peer = 10000;
  c->max_connections = 0; /* --max-clients + 1024, see config_fit_connections */
  c->max_conn_per_peer = 1024;
  c->request_timeout = 10;
  c->busy_retry_min = 1000;
  c->busy_retry_max = 10000;
  c->idem_window = 300;
  c->idem_keys = 100000;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = cores > 0 ? cores : 1;
  c->max_queue = 1L << 20;
  c->max_body = 1L << 20;
  c->max_header = 8192;
  c->hook_timeout = 0.25;
  c->script_memory = 64L << 20;
  c->log_level = "info";
  c->redis_key = "tinysse";
#ifdef TINYSSE_ASSETS_DIR
  c->assets = TINYSSE_ASSETS_DIR;
#else
  c->assets = "build/wasm";
#endif
}

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
  char *p = (char *)c + o->off;
  char *end;
  switch (o->kind) {
  case K_STR:
    *(const char **)p = value;
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
    ((const char **)p)[(*n)++] = value;
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
    *(long *)p = v;
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
    *(double *)p = v;
    return 0;
  }
  case K_FLAG:
    if (value && strcmp(value, "true") != 0 && strcmp(value, "1") != 0) {
      *(int *)p = 0;
      return 0;
    }
    *(int *)p = 1;
    return 0;
  }
  return -1;
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

int config_set_from_script(struct config *c, const char *name, const char *value, char *err,
                           size_t errlen)
{
  const struct option_desc *o = find_option(name, strlen(name));
  if (!o || strcmp(o->name, "script") == 0 || strcmp(o->name, "check") == 0 ||
      strcmp(o->name, "help") == 0 || strcmp(o->name, "version") == 0) {
    snprintf(err, errlen, "config.%s: not an option a script can set", name);
    return -1;
  }
  if (c->set_by_cli & (1ULL << (o - options)))
    return 0;
  if (o->kind != K_STR && o->kind != K_LIST)
    return set_value(c, o, value, &c->set_by_script, err, errlen);
  /* Strings outlive the script's state: keep a copy, freed at exit. */
  if (nowned == sizeof(owned) / sizeof(owned[0])) {
    snprintf(err, errlen, "config.%s: too many string options set over reloads", name);
    return -1;
  }
  char *copy = strdup(value);
  if (!copy || set_value(c, o, copy, &c->set_by_script, err, errlen) != 0) {
    free(copy);
    return -1;
  }
  owned[nowned++] = copy;
  return 0;
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
  return 0;
}

void config_usage(const char *argv0)
{
  printf("usage: %s [options]\n\nA Server-Sent Events gateway with Lua hooks.\n\n", argv0);
  for (size_t i = 0; i < NOPTIONS; i++) {
    char left[48];
    snprintf(left, sizeof(left), "--%s%s", options[i].name,
             options[i].kind == K_FLAG ? "" : " VALUE");
    printf("  %-32s %s\n", left, options[i].help);
  }
  printf("\nEvery option except --script can also come from the script's config table.\n"
         "The publish key can also come from the environment variable TINYSSE_PUBLISH_KEY.\n");
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
  long reserve = 32 + c->workers * (4 + c->nlisten) + CONFIG_ANSWERED_REFUSALS;
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
