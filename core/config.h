/* Gateway options: one table describes every option, used both for the
 * command line and for the script's `config` table (the command line wins). */
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
  const char *script, *endpoint, *publish_key, *redis, *redis_key, *log_level, *assets;
  const char *cors_origin[CONFIG_MAX_LIST];
  int ncors_origin;
  long buffer, retry_ms, max_clients, workers;
  double heartbeat, hook_timeout;
  long max_queue, max_body, max_header, script_memory, max_per_peer;
  /* every connection (0 until config_fit_connections picks the default),
   * and HTTP connections that are not streams, per peer address */
  long max_connections, max_conn_per_peer;
  double request_timeout;
  /* a refused stream's retry: is drawn from [min, max] ms (shedding) */
  long busy_retry_min, busy_retry_max;
  /* peers whose PROXY header / X-Forwarded-For name the real client */
  const char *trusted_proxy[CONFIG_MAX_LIST];
  int ntrusted_proxy;
  /* Idempotency-Key: how long a key is remembered, and at most how many
   * keys a single node keeps */
  double idem_window;
  long idem_keys;
  int check, help, version, access_log, no_io_uring;
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
void config_usage(const char *argv0);

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
