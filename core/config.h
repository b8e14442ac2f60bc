/* Gateway options: one table describes every option, used both for the
 * command line and for the script's `config` table (the command line wins). */
#ifndef TINYSSE_CONFIG_H
#define TINYSSE_CONFIG_H

#include <stddef.h>

#define CONFIG_MAX_LIST 16

struct config {
  const char *listen[CONFIG_MAX_LIST];
  int nlisten;
  const char *script, *endpoint, *publish_key, *redis, *redis_key, *log_level, *assets;
  const char *cors_origin[CONFIG_MAX_LIST];
  int ncors_origin;
  long buffer, retry_ms, max_clients, workers;
  double heartbeat, hook_timeout;
  long max_queue, max_body, max_header, script_memory, max_per_peer;
  double request_timeout;
  int check, help, version, access_log;
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

#endif
