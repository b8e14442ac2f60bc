/* Structured logging: one logfmt line per event on stderr.
 * Never pass a token or a publish key to these functions. */
#ifndef TINYSSE_LOG_H
#define TINYSSE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* Parses "debug" / "info" / "warn" / "error"; -1 when unknown. */
int log_parse_level(const char *name);
/* Writes `ts=... level=... event=<event> <fields>`; fields is printf-style
 * logfmt text ("k=v k2=v2"), may be NULL. Thread-safe (one write per line). */
void log_event(enum log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
/* The last warn/error lines (newest last), for the status page; returns how
 * many were copied into out. Thread-safe. */
#define LOG_RECENT_MAX 10
size_t log_recent(char (*out)[256], size_t max);
/* Quotes a value for logfmt into buf (always NUL-terminated); returns buf. */
const char *log_quote(char *buf, unsigned long cap, const char *value);

#endif
