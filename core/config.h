/* Gateway options: one table (config.c) describes every option, used for the
 * command line, the script's `config` table (the command line wins), --help
 * and the man page (usage.c, through config_option_at), and what a SIGHUP may
 * change while running.
 *
 * Threads: SIGHUP rewrites live options on worker 0's thread while the other
 * workers read them, so every single-valued option field is atomic (_Atomic
 * long/double/int, and _Atomic pointers for strings): a plain read elsewhere
 * compiles to an atomic load and sees the old or the new value, never a torn
 * one. All of them are atomic, not only today's live ones, because config.c
 * writes through the table by kind, so an option can change policy without
 * changing type. A string never changes in place and is never freed before
 * exit (config_release), so a reader may keep the pointer it loaded. Two
 * fields read together may come from different reloads (busy_retry_min/max:
 * readers clamp). Only that thread writes, so it may copy the struct
 * plainly (a reload's `next`). Lists and their counts only change before
 * the workers start. */
#ifndef TINYSSE_CONFIG_H
#define TINYSSE_CONFIG_H

#include <stddef.h>

#define CONFIG_MAX_LIST 16
/* Connections past --max-connections that may be answered 503 at the same
 * time (conn.c); descriptors are set aside for them. */
#define CONFIG_ANSWERED_REFUSALS 64

struct config {
  const char *listen[CONFIG_MAX_LIST];
  int nlisten;
  _Atomic(const char *) script, endpoint, publish_key, redis, redis_key, log_level, assets;
  const char *cors_origin[CONFIG_MAX_LIST];
  int ncors_origin;
  _Atomic long buffer, retry_ms, max_clients, workers;
  _Atomic long buffer_bytes, channel_history;
  _Atomic double buffer_age;
  _Atomic double heartbeat, hook_timeout, hook_wall;
  _Atomic long max_queue, max_body, max_header, script_memory, max_per_peer;
  /* every connection (0 until config_fit_connections picks the default),
   * and HTTP connections that are not streams, per peer address */
  _Atomic long max_connections, max_conn_per_peer;
  _Atomic double request_timeout;
  /* a refused stream's retry: is drawn from [min, max] ms (shedding) */
  _Atomic long busy_retry_min, busy_retry_max;
  /* peers whose PROXY header / X-Forwarded-For name the real client */
  const char *trusted_proxy[CONFIG_MAX_LIST];
  int ntrusted_proxy;
  /* Idempotency-Key: how long a key is remembered, and at most how many
   * keys a single node keeps */
  _Atomic double idem_window;
  _Atomic long idem_keys;
  /* TLS on every --listen address (both set, or neither), and plain
   * listeners beside them; HTTP/2 */
  _Atomic(const char *) tls_cert, tls_key;
  const char *plain_listen[CONFIG_MAX_LIST];
  int nplain_listen;
  _Atomic long h2_max_streams;
  _Atomic int no_http2;
  /* tinysse.http call-outs, per worker; the token cookie of stream requests */
  _Atomic long callout_concurrency, callout_queue, callout_max_body;
  _Atomic(const char *) callout_ca_file, token_cookie;
  /* server-side subscriptions: how long and how many users' added
   * channels are kept; whether streams are told of a change */
  _Atomic double subscription_ttl;
  _Atomic long subscription_users;
  _Atomic int subscribed_event;
  _Atomic int check, help, version, access_log, no_io_uring;
  _Atomic int man; /* --man: the man page, in roff (hidden from --help) */
  int publish_key_generated;
  /* which options the command line set (bit per option index) */
  unsigned long long set_by_cli, set_by_script;
};

void config_defaults(struct config *c);
/* Parses argv. 0, or -1 with a one-line message in err. */
int config_parse_args(struct config *c, int argc, char **argv, char *err, size_t errlen);
/* Sets an option from the script's config table (name with '_' or '-');
 * ignored when the command line set it. 0, or -1 with err. */
int config_set_from_script(struct config *c, const char *name, const char *value, char *err,
                           size_t errlen);
/* Frees the strings config_set_from_script copied (at exit). */
void config_release(void);
/* Checks cross-option constraints after everything is set. 0/-1. */
int config_validate(struct config *c, char *err, size_t errlen);

/* An option as --help and the man page show it (usage.c). */
enum config_reload_policy {
  CONFIG_CLI_ONLY,       /* command line only: the script cannot set it */
  CONFIG_RELOAD_LIVE,    /* SIGHUP applies the script's value at once */
  CONFIG_RELOAD_RESTART, /* SIGHUP keeps the running value (needs_restart) */
};
struct config_option_info {
  const char *name;  /* without the leading -- */
  const char *value; /* what the value is called (ADDR:PORT, N, ...); NULL for a flag */
  const char *def;   /* the default; NULL: none, or one the help text describes */
  const char *help;  /* NULL for a hidden option (--man) */
  enum config_reload_policy reload;
};
/* Row i of the option table, in --help's order: fills out and returns 0, or
 * -1 past the last row. */
int config_option_at(size_t i, struct config_option_info *out);

/* What a reload needs from outside config: the open-files limit that bounds
 * max_connections, and callbacks (each may be NULL) run after log_level or a
 * script limit (hook_timeout, script_memory) changed in the live config. */
struct config_reload_ctx {
  long open_files;
  void *arg;
  void (*log_level)(void *arg, int level);
  void (*script_limits)(void *arg, double hook_timeout, double hook_wall, long script_memory);
};
/* SIGHUP: copies what may change while running from next (the live config
 * with the reloaded script's config table applied) into live, as the option
 * table's reload policy says; call it on the one thread that writes live.
 * Fills changed and restart with comma-separated names ("" when none): the
 * options now in effect, and those that differ but need a restart. A value
 * refused by its check is logged as event=reload_failed and the old one
 * kept. 0, or -1 when a value was refused. */
int config_apply_reload(struct config *live, const struct config *next,
                        const struct config_reload_ctx *ctx, char *changed, size_t changed_cap,
                        char *restart, size_t restart_cap);

/* The open-files limit (RLIMIT_NOFILE), after raising the soft limit to the
 * hard one where allowed; LONG_MAX when there is none or it cannot be read. */
long config_open_files(void);
/* Connections the open-files limit leaves room for, once the descriptors
 * the gateway needs for itself are set aside. */
long config_connection_room(const struct config *c, long open_files);
/* Sets the --max-connections default (--max-clients + 1024, within the
 * room) or checks an explicit value against the room. 0, or -1 with err. */
int config_fit_connections(struct config *c, long open_files, char *err, size_t errlen);

#endif
